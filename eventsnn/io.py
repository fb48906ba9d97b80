"""HDF5 storage: spike trains and atomic file writes.

Spike trains are stored as one HDF5 group with the datasets ``times``
(float64), ``neurons`` (int64), ``amplitudes`` (float64), ``offsets`` (int64)
and the attributes ``n_neurons`` and ``format`` ("eventsnn.spiketrains/1").
Reading back gives bit-identical arrays.

Every file is written atomically: to a temporary file in the target directory,
flushed, then renamed over the target (``os.replace``), so an interrupted
write never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import h5py

from .spikes import SpikeTrains

SPIKES_FORMAT = "eventsnn.spiketrains/1"


class FileFormatError(ValueError):
    """A file exists but is not a valid eventsnn file (corrupt, truncated or foreign)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path):
    """Open a temporary file next to ``path``; on success move it onto ``path``.

    The temporary file lives in the same folder (so :func:`os.replace` is
    atomic), gets the usual mode (``0o666`` less the umask), is flushed and
    fsynced, then renamed. If the body raises, the temporary file is deleted
    and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Final file name. Its folder is created if needed.

    Yields
    ------
    file object
        Binary file opened for writing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_h5(path):
    """A new HDF5 file that replaces ``path`` only when the block succeeds (see :func:`atomic_write`).

    Yields
    ------
    h5py.File
        Open for writing.
    """
    with atomic_write(path) as fh, h5py.File(fh, "w") as f:
        yield f


def write_spike_trains(group: h5py.Group, trains: SpikeTrains) -> None:
    """Write ``trains`` into an open HDF5 group (datasets + attributes)."""
    group.attrs["format"] = SPIKES_FORMAT
    group.attrs["n_neurons"] = int(trains.n_neurons)
    group.create_dataset("times", data=trains.times)
    group.create_dataset("neurons", data=trains.neurons)
    group.create_dataset("amplitudes", data=trains.amplitudes)
    group.create_dataset("offsets", data=trains.offsets)


def read_spike_trains(group: h5py.Group) -> SpikeTrains:
    """Read spike trains written by :func:`write_spike_trains` from an open group.

    Raises
    ------
    FileFormatError
        If the group is not an eventsnn spike-train group or its arrays are inconsistent.
    """
    if group.attrs.get("format") != SPIKES_FORMAT:
        raise FileFormatError(f"{group.file.filename}:{group.name} is not an eventsnn spike-train group")
    try:
        return SpikeTrains(
            group["times"][()], group["neurons"][()], group["amplitudes"][()],
            group["offsets"][()], int(group.attrs["n_neurons"]),
        )
    except (KeyError, ValueError) as exc:
        raise FileFormatError(f"{group.file.filename}:{group.name}: corrupt spike trains ({exc})") from None


def save_spike_trains(path, trains: SpikeTrains, name: str = "spikes") -> None:
    """Save one :class:`SpikeTrains` to a new HDF5 file (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (replaced if it exists).
    trains : SpikeTrains
    name : str
        Name of the HDF5 group.
    """
    with atomic_h5(path) as f:
        write_spike_trains(f.create_group(name), trains)


def open_h5(path) -> h5py.File:
    """Open an HDF5 file for reading.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If it is not readable HDF5.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path}: not a readable HDF5 file ({exc})") from None


def load_spike_trains(path, name: str = "spikes") -> SpikeTrains:
    """Load a :class:`SpikeTrains` saved by :func:`save_spike_trains`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If the file is not readable HDF5 or holds no such group.
    """
    path = Path(path)
    with open_h5(path) as f:
        if name not in f:
            raise FileFormatError(f"{path}: no spike-train group {name!r}")
        return read_spike_trains(f[name])

