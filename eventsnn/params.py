"""Validated parameter records of the neuron model and of its backward rule.

All times are dimensionless, in the paper's units (one unit = one step of the
official discrete-time code). Every record is a frozen dataclass that checks
its fields in ``__post_init__`` and raises :class:`ValueError` naming the bad
parameter, so that no kernel ever sees an invalid value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Names of the backward kernels h(t) of Eq. 12 and their integer codes in the
#: compiled kernels.
GRAD_KERNELS = {"exp": 0, "depsilon": 1}


def check_finite_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not a finite positive number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def kernel_code(kernel: str) -> int:
    """Integer code of a backward kernel name ("exp" or "depsilon")."""
    try:
        return GRAD_KERNELS[kernel]
    except (KeyError, TypeError):
        raise ValueError(
            f"kernel must be one of {sorted(GRAD_KERNELS)}, got {kernel!r}"
        ) from None


@dataclass(frozen=True)
class NeuronParams:
    """Parameters of the SRM neuron of Eqs. 1-3.

    Parameters
    ----------
    tau_m : float
        Membrane time constant (model time units), > 0.
    tau_s : float
        Synaptic time constant (model time units), > 0 and != tau_m.
    threshold : float
        Firing threshold theta, > 0.
    """

    tau_m: float = 5.0
    tau_s: float = 3.0
    threshold: float = 1.0

    def __post_init__(self):
        tm = check_finite_positive("tau_m", self.tau_m)
        ts = check_finite_positive("tau_s", self.tau_s)
        th = check_finite_positive("threshold", self.threshold)
        if tm == ts:
            raise ValueError(
                f"tau_m and tau_s must differ (got tau_m = tau_s = {tm}); the kernel "
                "eps = tau_m/(tau_m - tau_s)(exp(-t/tau_m) - exp(-t/tau_s)) is undefined there"
            )
        object.__setattr__(self, "tau_m", tm)
        object.__setattr__(self, "tau_s", ts)
        object.__setattr__(self, "threshold", th)

    @property
    def amplitude(self) -> float:
        """The kernel prefactor A = tau_m / (tau_m - tau_s)."""
        return self.tau_m / (self.tau_m - self.tau_s)


@dataclass(frozen=True)
class GradParams:
    """The backward rule of Eqs. 12-14 and the official code's stabilisers.

    Parameters
    ----------
    kernel : {"exp", "depsilon"}
        h(t) of Eq. 12: ``exp(-t/tau_grad)`` (the paper's proposal) or
        ``d eps/dt`` (the classical rule; exact derivative of the spike time).
    tau_grad : float
        Time constant of the "exp" kernel, > 0.
    max_dt_du : float or None
        Cap on |dt/du| = 1/u'(t_k) in the weight path (official code: 4).
        ``None`` (default): no cap.
    input_grad_scale : float
        Factor applied to the gradient passed to the input events (official
        code: 0.85). Default 1 (none).
    drop_nonpositive : bool
        Drop the input-path gradient of windows whose h-weighted denominator
        of Eq. 12 is <= 0 (official code). Default False. A denominator that
        is exactly 0 is always dropped (the shares are undefined) and counted.
    """

    kernel: str = "exp"
    tau_grad: float = 2.5
    max_dt_du: float | None = None
    input_grad_scale: float = 1.0
    drop_nonpositive: bool = False

    def __post_init__(self):
        kernel_code(self.kernel)
        object.__setattr__(self, "tau_grad", check_finite_positive("tau_grad", self.tau_grad))
        if self.max_dt_du is not None:
            object.__setattr__(
                self, "max_dt_du", check_finite_positive("max_dt_du", self.max_dt_du)
            )
        object.__setattr__(
            self, "input_grad_scale", check_finite_positive("input_grad_scale", self.input_grad_scale)
        )
        object.__setattr__(self, "drop_nonpositive", bool(self.drop_nonpositive))

    @property
    def code(self) -> int:
        """Integer code of :attr:`kernel` for the compiled kernels."""
        return GRAD_KERNELS[self.kernel]
