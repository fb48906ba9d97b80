"""Where the layers run: the CPU engine or the GPU engine (:mod:`eventsnn.engine.cuda`).

``resolve_device(request)`` maps a request to a backend:

* ``"cpu"``  -> ``"cpu"``;
* ``"cuda"`` -> ``"cuda"`` when numba-cuda is installed and a GPU is usable (or,
  on explicit request only, when the CUDA simulator is on:
  ``NUMBA_ENABLE_CUDASIM=1``, slow, for tests); otherwise
  :class:`DeviceUnavailableError` (a ``ValueError``) saying why;
* ``"auto"`` -> ``"cuda"`` only for a real, usable GPU, else ``"cpu"`` (never
  the simulator).

The device is a runtime choice, not part of a training configuration: both
backends give the same spikes and gradients (to 1e-12), so a run may resume
on another machine. :func:`set_device` sets it on every layer of a network.
Nothing here imports ``numba.cuda`` before a request needs it.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

DEVICES = ("auto", "cuda", "cpu")
#: pip requirement that brings the GPU engine.
GPU_EXTRA = "pip install 'eventsnn[gpu]'"


class DeviceUnavailableError(ValueError):
    """``device="cuda"`` was requested and no usable GPU (or numba-cuda) is there."""


@dataclass(frozen=True)
class DeviceChoice:
    """A resolved device: ``device`` ("cpu" | "cuda") and a one-line ``detail``."""

    device: str
    detail: str

    @property
    def notice(self) -> str:
        """One line for the user, e.g. ``device: cuda (NVIDIA H100 80GB HBM3)``."""
        return f"device: {self.device} ({self.detail})"


def _simulator_on() -> bool:
    """Whether the imported ``numba.cuda`` is the simulator (numba-cuda's own setting,
    read from NUMBA_ENABLE_CUDASIM when numba.cuda is first imported)."""
    try:
        from numba.cuda.core import config
    except ImportError:  # numba-cuda versions that read numba's own configuration
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


@functools.lru_cache(maxsize=None)
def cuda_status() -> tuple:
    """(usable, simulator, description) of the CUDA backend, probed once per process.

    ``description`` is the GPU's name, "CUDA simulator", or why CUDA is not usable.
    """
    if importlib.util.find_spec("numba_cuda") is None:
        return False, False, f"numba-cuda is not installed ({GPU_EXTRA})"
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - broken installations
        return False, False, f"numba.cuda cannot be imported: {_first_line(exc)}"
    if _simulator_on():
        return True, True, "CUDA simulator"
    try:
        if not cuda.is_available():
            try:
                cuda.get_current_device()  # for the driver's reason
            except Exception as exc:
                return False, False, _first_line(exc)
            return False, False, "no CUDA driver or GPU found"
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        cc = dev.compute_capability
        if tuple(cc) < (6, 0):
            return False, False, (f"{name} has compute capability {cc[0]}.{cc[1]} "
                                  "(float64 atomics need >= 6.0)")
        return True, False, name
    except Exception as exc:
        return False, False, f"CUDA error: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace collapsed)."""
    text = " ".join(str(exc).split()).rstrip(" :")
    return text or type(exc).__name__


def select_device(request: str = "auto") -> DeviceChoice:
    """Resolve a device request ("auto", "cuda", "cpu") with a one-line explanation.

    Raises
    ------
    DeviceUnavailableError
        For ``"cuda"`` when numba-cuda is missing or no GPU is usable.
    ValueError
        For an unknown request.
    """
    if request not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {request!r}")
    if request == "cpu":
        return DeviceChoice("cpu", "requested")
    usable, simulator, what = cuda_status()
    if request == "cuda":
        if not usable:
            raise DeviceUnavailableError(f"device 'cuda' is not usable: {what}")
        return DeviceChoice("cuda", what)
    if usable and not simulator:
        return DeviceChoice("cuda", what)
    reason = "the CUDA simulator is not a GPU" if simulator else what
    return DeviceChoice("cpu", f"no usable GPU: {reason}")


def resolve_device(request: str = "auto") -> str:
    """``"cpu"`` or ``"cuda"`` for a request (see the module docstring)."""
    return select_device(request).device


def _all_layers(layers):
    for layer in layers:
        yield layer
        yield from _all_layers(getattr(layer, "sublayers", ()))


def set_device(net, device: str = "auto") -> str:
    """Run every layer of ``net`` (sublayers of composite layers included) on ``device``
    ("auto", "cuda" or "cpu"); returns the resolved device."""
    dev = resolve_device(device)
    for layer in _all_layers(net.layers):
        layer.device = dev
    return dev
