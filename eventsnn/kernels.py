"""The spike response kernel and the backward kernels (pure math, no state).

Forward kernel (Eq. 3), for s >= 0 and 0 otherwise::

    eps(s) = A (exp(-s/tau_m) - exp(-s/tau_s)),   A = tau_m / (tau_m - tau_s)

Its time derivative::

    deps(s) = A (exp(-s/tau_s)/tau_s - exp(-s/tau_m)/tau_m)

Backward kernels h(s) of Eq. 12:

* ``"exp"``: ``h(s) = exp(-s/tau_grad)`` (the paper's proposal, Section 3.3);
* ``"depsilon"``: ``h(s) = deps(s)`` (the classical rule, Eqs. 4-5), with which
  Eq. 12 is the exact derivative d t_k / d t_m.

The ``_name`` functions are scalar ``numba.njit`` routines used inside the
compiled engines; :func:`eps`, :func:`deps` and :func:`h` are their vectorised
public twins for numpy arrays. All arithmetic is float64. ``eps`` is evaluated
as follows so that it keeps full
relative precision for small s and for close time constants:
with tau_slow = max(tau_m, tau_s), tau_fast = min(tau_m, tau_s) and
delta = (tau_slow - tau_fast)/(tau_slow tau_fast)::

    eps(s)  = -|A| exp(-s/tau_slow) expm1(-s delta)
    deps(s) = exp(-s/tau_slow) (1/tau_s + |A|/tau_fast expm1(-s delta))
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .params import GradParams, NeuronParams, kernel_code

KERNEL_EXP = 0
KERNEL_DEPSILON = 1


@njit(cache=True)
def _eps(s, tau_m, tau_s):
    """eps(s) for one float s (0 for s < 0)."""
    if s < 0.0:
        return 0.0
    slow = max(tau_m, tau_s)
    fast = min(tau_m, tau_s)
    delta = (slow - fast) / (slow * fast)
    abs_a = tau_m / abs(tau_m - tau_s)
    return -abs_a * math.exp(-s / slow) * math.expm1(-s * delta)


@njit(cache=True)
def _deps(s, tau_m, tau_s):
    """d eps / ds for one float s (0 for s < 0; the right derivative at s = 0)."""
    if s < 0.0:
        return 0.0
    slow = max(tau_m, tau_s)
    fast = min(tau_m, tau_s)
    delta = (slow - fast) / (slow * fast)
    abs_a = tau_m / abs(tau_m - tau_s)
    return math.exp(-s / slow) * (1.0 / tau_s + abs_a / fast * math.expm1(-s * delta))


@njit(cache=True)
def _h(s, code, tau_m, tau_s, tau_grad):
    """Backward kernel h(s) of Eq. 12 for one float s; ``code`` 0 = exp, 1 = depsilon."""
    if s < 0.0:
        return 0.0
    if code == KERNEL_EXP:
        return math.exp(-s / tau_grad)
    return _deps(s, tau_m, tau_s)


@njit(cache=True)
def _eps_array(s, tau_m, tau_s, out):
    for i in range(s.size):
        out.flat[i] = _eps(s.flat[i], tau_m, tau_s)


@njit(cache=True)
def _deps_array(s, tau_m, tau_s, out):
    for i in range(s.size):
        out.flat[i] = _deps(s.flat[i], tau_m, tau_s)


@njit(cache=True)
def _h_array(s, code, tau_m, tau_s, tau_grad, out):
    for i in range(s.size):
        out.flat[i] = _h(s.flat[i], code, tau_m, tau_s, tau_grad)


def _as_times(s) -> np.ndarray:
    arr = np.ascontiguousarray(s, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError("s contains NaN")
    return arr


def eps(s, tau_m: float = 5.0, tau_s: float = 3.0) -> np.ndarray:
    """Spike response kernel eps(s) of Eq. 3 (0 for s < 0).

    Parameters
    ----------
    s : array_like of float
        Time since the input event (model time units), any shape.
    tau_m, tau_s : float
        Membrane and synaptic time constants (validated as in :class:`NeuronParams`).

    Returns
    -------
    numpy.ndarray of float64, shape of ``s``.
    """
    p = NeuronParams(tau_m, tau_s, 1.0)
    arr = _as_times(s)
    out = np.empty_like(arr)
    _eps_array(arr, p.tau_m, p.tau_s, out)
    return out.reshape(np.shape(s))


def eps_peak(tau_m: float = 5.0, tau_s: float = 3.0) -> tuple[float, float]:
    """Where eps peaks and its value there: (s*, eps(s*)), s* = ln(tau_m/tau_s) tau_m tau_s / (tau_m - tau_s).

    (deps(s*) = 0: exp(-s/tau_s)/tau_s = exp(-s/tau_m)/tau_m.) eps rises on [0, s*] and
    falls after it. Used by the sparse convolution's block screening to bound the effect
    of any input over a stretch of time.
    """
    tau_m, tau_s = float(tau_m), float(tau_s)
    if not (tau_m > 0 and tau_s > 0 and tau_m != tau_s):
        raise ValueError(f"need tau_m, tau_s > 0 and tau_m != tau_s, got {tau_m}, {tau_s}")
    s_star = math.log(tau_m / tau_s) * tau_m * tau_s / (tau_m - tau_s)
    return s_star, float(_eps(s_star, tau_m, tau_s))


def deps(s, tau_m: float = 5.0, tau_s: float = 3.0) -> np.ndarray:
    """Time derivative d eps/ds of the kernel (0 for s < 0, right derivative at 0).

    Parameters and returns as for :func:`eps`.
    """
    p = NeuronParams(tau_m, tau_s, 1.0)
    arr = _as_times(s)
    out = np.empty_like(arr)
    _deps_array(arr, p.tau_m, p.tau_s, out)
    return out.reshape(np.shape(s))


def h(s, kernel: str = "exp", *, tau_m: float = 5.0, tau_s: float = 3.0, tau_grad: float = 2.5):
    """Backward kernel h(s) of Eq. 12: ``"exp"`` = exp(-s/tau_grad), ``"depsilon"`` = d eps/ds.

    Parameters
    ----------
    s : array_like of float
        Time from the input event to the output spike, t_k - t_m (model units).
    kernel : {"exp", "depsilon"}
    tau_m, tau_s, tau_grad : float

    Returns
    -------
    numpy.ndarray of float64, shape of ``s`` (0 where s < 0).
    """
    p = NeuronParams(tau_m, tau_s, 1.0)
    g = GradParams(kernel=kernel, tau_grad=tau_grad)
    arr = _as_times(s)
    out = np.empty_like(arr)
    _h_array(arr, kernel_code(kernel), p.tau_m, p.tau_s, g.tau_grad, out)
    return out.reshape(np.shape(s))
