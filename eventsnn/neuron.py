"""One neuron, exactly: output spike times and per-spike gradients.

* :func:`neuron_spike_times` — the spikes in (0, t_end] of one SRM neuron
  (Eqs. 1-3) driven by input events, with the paper's reset rule: after a spike
  at t_k every input with t_m <= t_k is forgotten (no reset kernel).
* :func:`neuron_time_gradients` — for every output spike k, the Eq. 12 shares
  d t_k / d t_m over its window (t_{k-1}, t_k] (with h = exp or h = d eps/dt,
  Eq. 6: each row sums to 1), and d t_k / d c_m = -eps(t_k - t_m) / u'(t_k)
  with the true slope u'(t_k) (Eq. 14 without the loss factor).

Both run on the same compiled routines as the layer engines.
"""

from __future__ import annotations

import math

import numpy as np

from .engine.sweep import dense_forward
from .kernels import deps, eps, h
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains


def _check_inputs(in_times, in_weights):
    t = np.asarray(in_times, dtype=np.float64).reshape(-1)
    w = np.asarray(in_weights, dtype=np.float64).reshape(-1)
    if t.size != w.size:
        raise ValueError(f"in_times and in_weights must have the same length, got {t.size} and {w.size}")
    if not np.all(np.isfinite(t)):
        raise ValueError("in_times must be finite (no NaN or inf)")
    if not np.all(np.isfinite(w)):
        raise ValueError("in_weights must be finite (no NaN or inf)")
    if t.size and t.min() < 0:
        raise ValueError("in_times must be >= 0 (the simulation window starts at 0)")
    return t, w


def neuron_spike_times(in_times, in_weights, *, tau_m: float, tau_s: float,
                       threshold: float, t_end: float) -> np.ndarray:
    """Output spike times of one SRM neuron, found by exact root-finding.

    Parameters
    ----------
    in_times : array_like of float, shape (n_in,)
        Input event times (model units), >= 0, in any order; equal times allowed.
    in_weights : array_like of float, shape (n_in,)
        Efficacy of each event (weight x amplitude), either sign.
    tau_m, tau_s : float
        Membrane and synaptic time constants (> 0, different).
    threshold : float
        Firing threshold (> 0).
    t_end : float
        End of the window; spikes are searched in (0, t_end].

    Returns
    -------
    numpy.ndarray of float64, shape (n_out,)
        Increasing spike times in (0, t_end].

    Raises
    ------
    ValueError
        On invalid parameters, NaN/inf inputs or negative times.

    Examples
    --------
    >>> neuron_spike_times([0.0], [3.0], tau_m=5.0, tau_s=3.0, threshold=1.0, t_end=10.0)
    array([1.48244149])
    """
    params = NeuronParams(tau_m, tau_s, threshold)
    t, w = _check_inputs(in_times, in_weights)
    t_end = float(t_end)
    if not math.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"t_end must be a finite positive number, got {t_end}")
    order = np.argsort(t, kind="stable")
    n = t.size
    trains = SpikeTrains(t[order], np.arange(n), np.ones(n), [0, n], n)
    out, _ = dense_forward(trains, w[order][None, :], params, t_end)
    return out.times.copy()


def neuron_time_gradients(in_times, in_weights, out_times, *, tau_m: float, tau_s: float,
                          kernel: str = "exp", tau_grad: float = 2.5):
    """Per-spike gradients of one neuron's output spike times (Eqs. 12 and 14).

    Parameters
    ----------
    in_times, in_weights : array_like of float, shape (n_in,)
        As for :func:`neuron_spike_times`.
    out_times : array_like of float, shape (n_out,)
        The neuron's output spike times (increasing), e.g. from
        :func:`neuron_spike_times`.
    tau_m, tau_s : float
    kernel : {"exp", "depsilon"}
        h(t) of Eq. 12.
    tau_grad : float
        Time constant of the "exp" kernel.

    Returns
    -------
    dt_dtin : numpy.ndarray of float64, shape (n_out, n_in)
        d t_k / d t_m (Eq. 12); 0 outside spike k's window (t_{k-1}, t_k]. Each
        row sums to 1 (Eq. 6). A row whose denominator is exactly 0 is NaN.
    dt_dw : numpy.ndarray of float64, shape (n_out, n_in)
        d t_k / d c_m = -eps(t_k - t_m) / u'(t_k), c_m the efficacy (in_weights[m]);
        0 outside the window.
    """
    params = NeuronParams(tau_m, tau_s, 1.0)
    GradParams(kernel=kernel, tau_grad=tau_grad)
    t, w = _check_inputs(in_times, in_weights)
    out = np.asarray(out_times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(out)):
        raise ValueError("out_times must be finite (no NaN or inf)")
    if out.size > 1 and np.any(np.diff(out) <= 0):
        raise ValueError("out_times must be strictly increasing")
    dt_dtin = np.zeros((out.size, t.size))
    dt_dw = np.zeros((out.size, t.size))
    prev = -np.inf
    for k, tk in enumerate(out):
        win = np.flatnonzero((t > prev) & (t <= tk))
        prev = tk
        if win.size == 0:
            continue
        s = tk - t[win]
        c = w[win]
        hv = h(s, kernel, tau_m=params.tau_m, tau_s=params.tau_s, tau_grad=tau_grad)
        denom = np.sum(c * hv)
        dt_dtin[k, win] = c * hv / denom if denom != 0.0 else np.nan
        slope = np.sum(c * deps(s, params.tau_m, params.tau_s))
        dt_dw[k, win] = -eps(s, params.tau_m, params.tau_s) / slope if slope != 0.0 else np.nan
    return dt_dtin, dt_dw
