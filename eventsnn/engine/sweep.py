"""Layer sweep: exact forward and reverse-time backward of a dense layer over a batch.

Forward (Eqs. 1-3). The input events of each sample are sorted once and grouped
by *distinct* time (events at identical times, e.g. the T current impulses of
an image, form one group). For group g the input current of neuron i is::

    I[g, i] = sum_{m in g} W[i, j_m] a_m

computed either by one BLAS product (dense groups) or by a compiled gather
(sparse groups, e.g. hidden-layer spikes). Each neuron then runs through the
groups of its sample: the interval (t_g, t_{g+1}] after group g is searched for
the first threshold crossing with the exact solver of :mod:`eventsnn.crossing`
(decay factors exp(-L/tau) computed once per interval and shared by all
neurons). A spike at t_k resets the neuron: every input at or before t_k is
forgotten (inputs exactly at t_k included). At most one spike per interval.

Backward (Eqs. 12-14). For output spike k of neuron i with window groups
W_k = {g : t_{k-1} < t_g <= t_k} and G_k = dL/dt_k::

    dt_k/dt_m = W[i, j_m] a_m h(t_k - t_g) / D_k,  D_k = sum_{g in W_k} I[g, i] h(t_k - t_g)  (Eq. 12)
    dL/dt_m   = a_m sum_i W[i, j_m] beta[g_m, i],  beta[g, i] = G_k h(t_k - t_g) / D_k      (Eq. 13)
    dL/dW[i, j] = sum_g gamma[g, i] X[g, j],  gamma[g, i] = G_k (-1/u'(t_k)) eps(t_k - t_g)  (Eq. 14)
    dL/da_m   = sum_i W[i, j_m] gamma[g_m, i]

with X[g, j] = sum of the amplitudes of the events of group g from source j.
Windows of one neuron are disjoint, so beta and gamma are written without
races. Without stabilisers sum_m dt_k/dt_m = 1 (Eq. 6) and the total gradient
is conserved (Eq. 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..crossing import CROSSING_MAX_ITER, CROSSING_RTOL, _du, _first_crossing
from ..kernels import _eps, _h
from ..params import GradParams, NeuronParams
from ..spikes import SpikeTrains

#: Above this share of non-zero entries in the (groups x inputs) matrix the
#: currents are computed with one dense BLAS product, below it by a gather.
DENSE_INPUT_DENSITY = 0.05


# ----------------------------------------------------------------------------------
# compiled kernels
# ----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _scan_groups(group_times, group_offsets, interval_len, em, es, currents, amp,
                 tau_m, tau_s, theta, t_end, rtol, max_iter, spike_time, slope, wstart):
    """Exact forward of every (sample, neuron) over its groups.

    Writes, for the interval after group g, ``spike_time[g, i]`` (NaN if none),
    ``slope[g, i]`` = u'(t_k) and ``wstart[g, i]`` = first group of the window.
    """
    n_samples = group_offsets.size - 1
    n_out = currents.shape[1]
    for q in prange(n_samples * n_out):
        s = q // n_out
        i = q % n_out
        g0 = group_offsets[s]
        g1 = group_offsets[s + 1]
        P = 0.0
        Q = 0.0
        ws = g0
        skip = False
        for g in range(g0, g1):
            if skip:
                skip = False
            else:
                c = amp * currents[g, i]
                P += c
                Q += c
            L = interval_len[g]
            d = _first_crossing(P, Q, L, em[g], es[g], tau_m, tau_s, theta,
                                group_times[g], rtol, max_iter)
            if d >= 0.0:
                if d >= L:
                    d = L
                    if g + 1 < g1:
                        tk = group_times[g + 1]
                        skip = True  # inputs at exactly t_k are forgotten
                    else:
                        tk = t_end
                else:
                    tk = group_times[g] + d
                spike_time[g, i] = tk
                slope[g, i] = _du(P, Q, d, tau_m, tau_s)
                wstart[g, i] = ws
                ws = g + 2 if skip else g + 1
                P = 0.0
                Q = 0.0
            else:
                P *= em[g]
                Q *= es[g]


@njit(cache=True)
def _dense_group_inputs(event_group, event_neuron, event_amp, X):
    """X[g, j] += a_m for every event m (X zero-initialised by the caller)."""
    for m in range(event_group.size):
        X[event_group[m], event_neuron[m]] += event_amp[m]


@njit(cache=True, parallel=True)
def _gather_currents(group_event_offsets, event_neuron, event_amp, WT, out):
    """out[g, :] = sum over events m of group g of a_m W[:, j_m] (W passed transposed)."""
    n_out = WT.shape[1]
    for g in prange(group_event_offsets.size - 1):
        for m in range(group_event_offsets[g], group_event_offsets[g + 1]):
            a = event_amp[m]
            j = event_neuron[m]
            for i in range(n_out):
                out[g, i] += a * WT[j, i]


@njit(cache=True, parallel=True)
def _backward_spikes(group_times, group_offsets, currents, out_sample, out_row, out_neuron,
                     out_time, out_slope, out_wstart, grad, code, tau_m, tau_s, tau_grad,
                     max_dt_du, drop_nonpositive, beta, gamma, flags):
    """Eq. 12 shares and Eq. 14 weights of every output spike, written into the
    (groups x neurons) arrays ``beta`` and ``gamma`` (zero-initialised).

    ``flags[k]``: bit 0 = window dropped (denominator <= 0 and dropped, or == 0),
    bit 1 = denominator <= 0, bit 2 = |dt/du| clamped. ``max_dt_du <= 0`` means no cap.
    """
    for k in prange(out_time.size):
        G = grad[k]
        s = out_sample[k]
        g = out_row[k]
        i = out_neuron[k]
        tk = out_time[k]
        ws = out_wstart[k]
        we = g + 1
        if we < group_offsets[s + 1] and group_times[we] == tk:
            we += 1
        denom = 0.0
        for gg in range(ws, we):
            denom += currents[gg, i] * _h(tk - group_times[gg], code, tau_m, tau_s, tau_grad)
        f = 0
        if denom <= 0.0:
            f |= 2
            if drop_nonpositive or denom == 0.0:
                f |= 1
        dtdu = -1.0 / out_slope[k]
        if max_dt_du > 0.0 and dtdu < -max_dt_du:
            dtdu = -max_dt_du
            f |= 4
        flags[k] = f
        if G == 0.0:
            continue
        for gg in range(ws, we):
            dt = tk - group_times[gg]
            if (f & 1) == 0:
                beta[gg, i] = G * _h(dt, code, tau_m, tau_s, tau_grad) / denom
            gamma[gg, i] = G * dtdu * _eps(dt, tau_m, tau_s)


@njit(cache=True, parallel=True)
def _event_dots(event_group, event_neuron, rows, WT, out):
    """out[m] = sum_i rows[g_m, i] W[i, j_m] for every event m."""
    n_out = WT.shape[1]
    for m in prange(event_group.size):
        g = event_group[m]
        j = event_neuron[m]
        acc = 0.0
        for i in range(n_out):
            acc += rows[g, i] * WT[j, i]
        out[m] = acc


@njit(cache=True)
def _scatter_weight_grad(event_group, event_neuron, event_amp, gamma, dWT):
    """dWT[j_m, :] += a_m gamma[g_m, :] for every event m."""
    n_out = gamma.shape[1]
    for m in range(event_group.size):
        g = event_group[m]
        j = event_neuron[m]
        a = event_amp[m]
        if a == 0.0:
            continue
        for i in range(n_out):
            dWT[j, i] += a * gamma[g, i]


# ----------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EventGroups:
    """Input events of a batch grouped by distinct time (events after ``t_end`` dropped).

    Attributes
    ----------
    keep : ndarray of int64, shape (n_kept,)
        Indices of the kept events in the original :class:`SpikeTrains`.
    event_group : ndarray of int64, shape (n_kept,)
        Group of each kept event.
    event_neuron : ndarray of int64, event_amp : ndarray of float64, shape (n_kept,)
    group_times : ndarray of float64, shape (n_groups,)
    group_offsets : ndarray of int64, shape (n_samples + 1,)
        Sample s owns groups ``group_offsets[s]:group_offsets[s+1]``.
    group_event_offsets : ndarray of int64, shape (n_groups + 1,)
        Group g owns kept events ``group_event_offsets[g]:group_event_offsets[g+1]``.
    interval_len : ndarray of float64, shape (n_groups,)
        Length of the interval after each group (to the next group or to t_end).
    """

    keep: np.ndarray
    event_group: np.ndarray
    event_neuron: np.ndarray
    event_amp: np.ndarray
    group_times: np.ndarray
    group_offsets: np.ndarray
    group_event_offsets: np.ndarray
    interval_len: np.ndarray

    @property
    def n_groups(self) -> int:
        return self.group_times.size

    @property
    def group_sample(self) -> np.ndarray:
        return np.repeat(np.arange(self.group_offsets.size - 1), np.diff(self.group_offsets))


def group_events(inputs: SpikeTrains, t_end: float) -> EventGroups:
    """Group the events of each sample by distinct time; drop events after ``t_end``."""
    if inputs.n_events and inputs.times.min() < 0.0:
        raise ValueError("input event times must be >= 0 (the simulation window starts at 0)")
    samples = inputs.samples
    keep = np.flatnonzero(inputs.times <= t_end)
    times = inputs.times[keep]
    smp = samples[keep]
    n = times.size
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (times[1:] != times[:-1]) | (smp[1:] != smp[:-1])
    event_group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    group_times = times[starts]
    group_sample = smp[starts]
    n_samples = inputs.n_samples
    group_offsets = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(group_sample, minlength=n_samples), out=group_offsets[1:])
    group_event_offsets = np.append(starts, n).astype(np.int64)
    interval_len = np.empty(group_times.size)
    if group_times.size:
        interval_len[:-1] = group_times[1:] - group_times[:-1]
        last = group_offsets[1:][np.diff(group_offsets) > 0] - 1
        interval_len[last] = t_end - group_times[last]
    return EventGroups(
        keep=keep.astype(np.int64),
        event_group=event_group.astype(np.int64),
        event_neuron=inputs.neurons[keep],
        event_amp=inputs.amplitudes[keep],
        group_times=group_times,
        group_offsets=group_offsets,
        group_event_offsets=group_event_offsets,
        interval_len=interval_len,
    )


def group_currents(groups: EventGroups, weight: np.ndarray, n_in: int):
    """Input currents I (n_groups, n_out) = X W^T, and X when it is kept dense.

    Returns
    -------
    currents : ndarray of float64, shape (n_groups, n_out)
    X : ndarray of float64, shape (n_groups, n_in), or None (sparse path)
    """
    n_groups = groups.n_groups
    n_out = weight.shape[0]
    n_ev = groups.event_group.size
    if n_groups and n_ev / (n_groups * max(n_in, 1)) > DENSE_INPUT_DENSITY:
        X = np.zeros((n_groups, n_in))
        _dense_group_inputs(groups.event_group, groups.event_neuron, groups.event_amp, X)
        return X @ weight.T, X
    currents = np.zeros((n_groups, n_out))
    if n_groups:
        _gather_currents(groups.group_event_offsets, groups.event_neuron, groups.event_amp,
                         np.ascontiguousarray(weight.T), currents)
    return currents, None


@dataclass(frozen=True, eq=False)
class DenseRecord:
    """What the reverse sweep of a dense layer needs from its forward pass.

    Memory grows with the number of events and groups, never with a time grid.

    Attributes
    ----------
    groups : EventGroups
    currents : ndarray (n_groups, n_out) — I[g, i] of the module docstring.
    X : ndarray (n_groups, n_in) or None — dense group inputs (dense path only).
    weight : ndarray (n_out, n_in) — the effective weights used.
    n_in_events : int — number of events of the layer's input SpikeTrains.
    out_sample, out_row, out_wstart : int64 arrays (n_spikes,) aligned with the
        output SpikeTrains: sample, interval (group) and first window group of each spike.
    out_slope : float64 (n_spikes,) — u'(t_k) of each spike.
    """

    params: NeuronParams
    t_end: float
    groups: EventGroups
    currents: np.ndarray
    X: np.ndarray | None
    weight: np.ndarray
    n_in_events: int
    outputs: SpikeTrains
    out_sample: np.ndarray
    out_row: np.ndarray
    out_wstart: np.ndarray
    out_slope: np.ndarray


@dataclass(frozen=True, eq=False)
class DenseGrads:
    """Result of :func:`dense_backward`.

    Attributes
    ----------
    d_times : ndarray float64 (n_in_events,) — dL/dt of every input event (Eq. 13),
        times ``input_grad_scale``; 0 for events after t_end.
    d_amplitudes : ndarray float64 (n_in_events,) — dL/da of every input event.
    d_weight : ndarray float64 (n_out, n_in) — dL/dW (Eq. 14), W the effective weight.
    flags : ndarray int8 (n_spikes,) — per output spike: 1 dropped window,
        2 denominator <= 0, 4 |dt/du| clamped.
    """

    d_times: np.ndarray
    d_amplitudes: np.ndarray
    d_weight: np.ndarray
    flags: np.ndarray

    @property
    def n_dropped(self) -> int:
        return int(np.count_nonzero(self.flags & 1))

    @property
    def n_nonpositive(self) -> int:
        return int(np.count_nonzero(self.flags & 2))

    @property
    def n_clamped(self) -> int:
        return int(np.count_nonzero(self.flags & 4))


def _check_weight(weight, n_in: int) -> np.ndarray:
    w = np.ascontiguousarray(weight, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != n_in:
        raise ValueError(f"weight must have shape (n_out, {n_in}), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight contains NaN or inf")
    return w


def dense_forward(inputs: SpikeTrains, weight, params: NeuronParams, t_end: float, *,
                  rtol: float = CROSSING_RTOL, max_iter: int = CROSSING_MAX_ITER):
    """Exact forward of a dense layer of SRM neurons over a batch.

    Parameters
    ----------
    inputs : SpikeTrains
        Input events, ``inputs.n_neurons`` sources, times in [0, inf).
    weight : array_like float64, shape (n_out, inputs.n_neurons)
        Effective weights W[i, j] (efficacy of an event = W[i, j] a_m).
    params : NeuronParams
    t_end : float
        End of the simulation window (0, t_end].
    rtol, max_iter : crossing-solver tolerance and iteration limit.

    Returns
    -------
    outputs : SpikeTrains
        Output spikes (amplitude 1), ``n_neurons = n_out``.
    record : DenseRecord
        State for :func:`dense_backward`.
    """
    t_end = float(t_end)
    if not math.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"t_end must be a finite positive number, got {t_end}")
    w = _check_weight(weight, inputs.n_neurons)
    n_out = w.shape[0]
    groups = group_events(inputs, t_end)
    currents, X = group_currents(groups, w, inputs.n_neurons)
    em = np.exp(-groups.interval_len / params.tau_m)
    es = np.exp(-groups.interval_len / params.tau_s)
    G = groups.n_groups
    spike_time = np.full((G, n_out), np.nan)
    slope = np.zeros((G, n_out))
    wstart = np.zeros((G, n_out), dtype=np.int64)
    if G and n_out:
        _scan_groups(groups.group_times, groups.group_offsets, groups.interval_len, em, es,
                     currents, params.amplitude, params.tau_m, params.tau_s, params.threshold,
                     t_end, float(rtol), int(max_iter), spike_time, slope, wstart)
    rows, neurons = np.nonzero(~np.isnan(spike_time))
    times = spike_time[rows, neurons]
    gs = groups.group_sample
    samples = gs[rows] if rows.size else np.zeros(0, np.int64)
    order = np.lexsort((neurons, times, samples))
    rows, neurons, times, samples = rows[order], neurons[order], times[order], samples[order]
    offsets = np.zeros(inputs.n_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(samples, minlength=inputs.n_samples), out=offsets[1:])
    outputs = SpikeTrains(times, neurons, np.ones(times.size), offsets, n_out)
    record = DenseRecord(
        params=params, t_end=t_end, groups=groups, currents=currents, X=X, weight=w,
        n_in_events=inputs.n_events, outputs=outputs,
        out_sample=samples.astype(np.int64), out_row=rows.astype(np.int64),
        out_wstart=wstart[rows, neurons].astype(np.int64), out_slope=slope[rows, neurons],
    )
    return outputs, record


def dense_backward(record: DenseRecord, grad_out, grad_params: GradParams | None = None, *,
                   need_input_grad: bool = True) -> DenseGrads:
    """Reverse-time backward of a dense layer (Eqs. 12-14).

    Parameters
    ----------
    record : DenseRecord
        From :func:`dense_forward`.
    grad_out : array_like float64, shape (n_spikes,)
        G_k = dL/dt_k for every output spike, aligned with ``record.outputs``.
    grad_params : GradParams, optional
        Kernel h and stabilisers (default: "exp", tau_grad 2.5, no stabiliser).
    need_input_grad : bool
        Compute ``d_times`` / ``d_amplitudes`` (skip for the first layer).

    Returns
    -------
    DenseGrads
    """
    gp = grad_params if grad_params is not None else GradParams()
    p = record.params
    grad = np.ascontiguousarray(grad_out, dtype=np.float64).reshape(-1)
    if grad.size != record.outputs.n_events:
        raise ValueError(
            f"grad_out must have one entry per output spike ({record.outputs.n_events}), got {grad.size}"
        )
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_out contains NaN or inf")
    groups = record.groups
    n_out, n_in = record.weight.shape
    G = groups.n_groups
    beta = np.zeros((G, n_out))
    gamma = np.zeros((G, n_out))
    flags = np.zeros(grad.size, dtype=np.int8)
    if grad.size:
        _backward_spikes(groups.group_times, groups.group_offsets, record.currents,
                         record.out_sample, record.out_row, record.outputs.neurons,
                         record.outputs.times, record.out_slope, record.out_wstart, grad,
                         gp.code, p.tau_m, p.tau_s, gp.tau_grad,
                         gp.max_dt_du if gp.max_dt_du is not None else -1.0,
                         gp.drop_nonpositive, beta, gamma, flags)
    if record.X is not None:
        d_weight = gamma.T @ record.X
    else:
        dWT = np.zeros((n_in, n_out))
        _scatter_weight_grad(groups.event_group, groups.event_neuron, groups.event_amp, gamma, dWT)
        d_weight = dWT.T.copy()
    d_times = np.zeros(record.n_in_events)
    d_amps = np.zeros(record.n_in_events)
    if need_input_grad and groups.keep.size:
        WT = np.ascontiguousarray(record.weight.T)
        dt_kept = np.empty(groups.keep.size)
        _event_dots(groups.event_group, groups.event_neuron, beta, WT, dt_kept)
        da_kept = np.empty(groups.keep.size)
        _event_dots(groups.event_group, groups.event_neuron, gamma, WT, da_kept)
        d_times[groups.keep] = gp.input_grad_scale * groups.event_amp * dt_kept
        d_amps[groups.keep] = da_kept
    return DenseGrads(d_times=d_times, d_amplitudes=d_amps, d_weight=d_weight, flags=flags)
