"""Layer sweep: exact forward and reverse-time backward of a dense layer over a batch.

Forward (Eqs. 1-3). The input events of each sample are sorted once and grouped
by *distinct* time (events at identical times, e.g. the T current impulses of
an image, form one group). Each sample is swept through its groups in time
order, all neurons of the layer side by side:

1. the group's input is added to every neuron's synaptic trace R (state
   (V, R) of :mod:`eventsnn.crossing`) -- on the *dense* path (many events per group, e.g.
   an image) from input currents I = X W^T computed by one BLAS product per
   distinct group content; on the *sparse* path (hidden-layer spikes) event by
   event, each event adding A a_m W[:, j_m] to the states (a contiguous,
   vectorised "neuron-event update");
2. the interval after the group, (t_g, t_{g+1}], is screened for all neurons at
   once (u at the end, slopes at both ends: a vectorisable test); the few
   candidates get the exact bracketed crossing of
   :func:`eventsnn.crossing._first_crossing`; decay factors exp(-L/tau) are
   computed once per interval and shared by all neurons;
3. a spike at t_k resets its neuron: every input at or before t_k is forgotten
   (inputs exactly at t_k included). At most one spike per interval.

Spikes are written compactly, per sample into a region of a buffer sized by
the host; a sample that emits more spikes than planned is counted, and the
host re-runs the batch with exact sizes (never truncates).

Backward (Eqs. 12-14). For output spike k of neuron i with window groups
W_k = {g : t_{k-1} < t_g <= t_k} and G_k = dL/dt_k, with I[g, i] the input
current of group g to neuron i::

    dt_k/dt_m = W[i, j_m] a_m h(t_k - t_g) / D_k,  D_k = sum_{g in W_k} I[g, i] h(t_k - t_g)  (Eq. 12)
    dL/dt_m   = sum_k G_k dt_k/dt_m                                                          (Eq. 13)
    dL/dW[i, j] = sum_k G_k (-1/u'(t_k)) sum_{m in W_k, j_m = j} a_m eps(t_k - t_m)          (Eq. 14)
    dL/da_m   = sum_k G_k (-1/u'(t_k)) W[i, j_m] eps(t_k - t_m)

On the dense path the per-group factors beta[g, i] = G_k h / D_k and
gamma[g, i] = G_k (-1/u') eps are formed (windows of one neuron are disjoint)
and contracted with BLAS; on the sparse path each spike walks the events of
its window (dL/dW in parallel over neurons, dL/dt in parallel over samples, so
that no two threads write the same entry). Kernel values along a window come
from the shared interval decay factors by products (one exp per spike and time
constant). Without stabilisers sum_m dt_k/dt_m = 1 (Eq. 6) and the total
gradient is conserved (Eq. 8).

The scalar routines (per-neuron interval step, per-spike window walks; the
accumulations go through ``_acc1`` / ``_acc2``) are compiled a second time,
from the same source, as device functions of the GPU engine
(:mod:`eventsnn.engine.cuda`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..crossing import (
    CROSSING_MAX_ITER,
    CROSSING_RTOL,
    _advance,
    _critical_point,
    _du,
    _interval_factors,
    _interval_spike,
    _screen,
)
from ..kernels import KERNEL_EXP, deps, eps, eps_peak
from ..params import GradParams, NeuronParams
from ..spikes import SpikeTrains, csr_offsets, offsets_of

#: Above this share of non-zero entries in the (groups x inputs) matrix the
#: currents are computed with one dense BLAS product, below it event by event.
DENSE_INPUT_DENSITY = 0.05
#: Groups per block of the blocked forward of event inputs (:func:`_scan_units_blocked`).
SCAN_BLOCK = 16
#: The blocked forward refers input times to t = 0 through e^{t/tau}; above this
#: t_end / tau it falls back to the group-by-group scan.
MAX_REFERENCED_EXPONENT = 200.0
#: Planned spikes per neuron and sample (at most the number of groups); a
#: sample that emits more is re-run with an exact buffer.
PLANNED_SPIKES_PER_NEURON = 4


# ----------------------------------------------------------------------------------
# forward kernels
# ----------------------------------------------------------------------------------
@njit(cache=True)
def _sweep_interval(V, R, skip, wstart, cand, g, g_end, group_times, interval_len, em, es,
                    eps_l, deps_l, tau_m, tau_s, theta, t_end, rtol, max_iter,
                    o_row, o_neuron, o_time, o_slope, o_wstart, base, cap, n):
    """Interval (t_g, t_g + L_g] for all neurons of one sample: screen, solve, reset, decay.

    V, R : 1-D state rows of the sample (n_out,): potential and synaptic trace
        (see :mod:`eventsnn.crossing`).
    wstart, cand : 1-D workspace rows: first window group, candidate flag.
    skip : 1-D bool row; set for neurons whose spike falls exactly on the next
        group time (that group's inputs are forgotten).
    Returns the updated spike count ``n`` of the sample (writes only below ``cap``).
    """
    n_out = V.size
    L = interval_len[g]
    emg = em[g]
    esg = es[g]
    epsg = eps_l[g]
    depsg = deps_l[g]
    rm = 1.0 / tau_m
    rs = 1.0 / tau_s
    n_cand = 0
    for i in range(n_out):
        c = _screen(V[i], R[i], emg, epsg, depsg, rm, rs, theta)
        cand[i] = c
        n_cand += c
    if n_cand:
        t0 = group_times[g]
        has_next = g + 1 < g_end
        t_next = group_times[g + 1] if has_next else t_end
        for i in range(n_out):
            if not cand[i]:
                continue
            # a crossing that lands on the end of the interval is placed exactly on the
            # next input time (and forgets that input) or on t_end
            d, tk, nxt = _interval_spike(V[i], R[i], L, emg, epsg, depsg, tau_m, tau_s, theta, t0,
                                         t_next, has_next, rtol, max_iter)
            if d < 0.0:
                continue
            if n < cap:
                k = base + n
                o_row[k] = g
                o_neuron[k] = i
                o_time[k] = tk
                o_slope[k] = _du(V[i], R[i], d, tau_m, tau_s)
                o_wstart[k] = wstart[i]
            n += 1
            wstart[i] = g + 2 if nxt else g + 1
            skip[i] = nxt
            V[i] = 0.0
            R[i] = 0.0
    for i in range(n_out):
        V[i], R[i] = _advance(V[i], R[i], emg, esg, epsg)
    return n


@njit(cache=True, inline="always")
def _group_step(v, r, skip, ws, n, row, t0, t_next, has_next, L, emg, esg, epsg, depsg, tau_m,
                tau_s, theta, rtol, max_iter, base, cap, o_row, o_time, o_slope, o_wstart):
    """One neuron after the input of group ``row`` was added to its trace r: forget it if
    the neuron spiked exactly at this group's time, screen the interval (t0, t0 + L],
    solve and record a spike (below ``cap``), reset, decay. Returns (v, r, skip, ws, n).
    Shared by the GPU engine's per-neuron threads and the CPU's blocked sparse conv scan."""
    if skip:
        v = 0.0
        r = 0.0
        skip = False
    if _screen(v, r, emg, epsg, depsg, 1.0 / tau_m, 1.0 / tau_s, theta):
        d, tk, nxt = _interval_spike(v, r, L, emg, epsg, depsg, tau_m, tau_s, theta, t0, t_next,
                                     has_next, rtol, max_iter)
        if not d < 0.0:
            if n < cap:
                k = base + n
                o_row[k] = row
                o_time[k] = tk
                o_slope[k] = _du(v, r, d, tau_m, tau_s)
                o_wstart[k] = ws
            n += 1
            ws = row + 2 if nxt else row + 1
            skip = nxt
            v = 0.0
            r = 0.0
    v, r = _advance(v, r, emg, esg, epsg)
    return v, r, skip, ws, n


@njit(cache=True)
def _forget_skipped(V, R, skip):
    """Zero the state of neurons that spiked exactly at the current group time."""
    for i in range(V.size):
        if skip[i]:
            V[i] = 0.0
            R[i] = 0.0
            skip[i] = False


@njit(cache=True, parallel=True)
def _scan(items, dense, group_times, group_offsets, interval_len, em, es, eps_l, deps_l,
          currents, group_run, group_event_offsets, event_neuron, event_amp, WT, tau_m, tau_s,
          theta, t_end, rtol, max_iter, V, R, skip, wstart, cand, cap_offsets, counts,
          o_row, o_neuron, o_time, o_slope, o_wstart):
    """Forward of the samples ``items`` (int64 sample indices; parallel over them).

    The input of group g is added to the traces either as the row
    ``currents[group_run[g]]`` of the (n_runs, n_out) currents (``dense``), or
    event by event, each event adding ``a_m W[:, j_m]`` (rows of ``WT``).
    The arrays of the unused path may be empty placeholders.
    """
    n_out = V.shape[1]
    for q in prange(items.size):
        s = items[q]
        g0 = group_offsets[s]
        g1 = group_offsets[s + 1]
        Vs, Rs, Ks, Ws, Cs = V[s], R[s], skip[s], wstart[s], cand[s]
        for i in range(n_out):
            Vs[i] = 0.0
            Rs[i] = 0.0
            Ks[i] = False
            Ws[i] = g0
        n = 0
        base = cap_offsets[s]
        cap = cap_offsets[s + 1] - base
        for g in range(g0, g1):
            if dense:
                cur = currents[group_run[g]]
                for i in range(n_out):
                    Rs[i] += cur[i]
            else:
                for m in range(group_event_offsets[g], group_event_offsets[g + 1]):
                    a = event_amp[m]
                    row = WT[event_neuron[m]]
                    for i in range(n_out):
                        Rs[i] += a * row[i]
            _forget_skipped(Vs, Rs, Ks)
            n = _sweep_interval(Vs, Rs, Ks, Ws, Cs, g, g1, group_times, interval_len, em, es,
                                eps_l, deps_l, tau_m, tau_s, theta, t_end, rtol, max_iter,
                                o_row, o_neuron, o_time, o_slope, o_wstart, base, cap, n)
        counts[s] = n


@njit(cache=True)
def _unit_intervals(group_times, g0, g1, t_end, tau_m, tau_s, ilen, em, es, eps_l, deps_l):
    """Interval lengths L and exp(-L/tau_m), exp(-L/tau_s), eps(L), eps'(L) of the groups
    g0..g1-1 of one unit (workspace rows), from two transcendental calls per interval
    (:func:`eventsnn.crossing._interval_factors`)."""
    for j in range(g1 - g0):
        nxt = group_times[g0 + j + 1] if g0 + j + 1 < g1 else t_end
        L = nxt - group_times[g0 + j]
        ilen[j] = L
        em[j], es[j], eps_l[j], deps_l[j] = _interval_factors(L, tau_m, tau_s)


@njit(cache=True, parallel=True)
def _scan_units_blocked(units, chunk_units, unit_group_offsets, group_times, group_entry_offsets,
                        ent_event, ent_tap, amps, ev_m, ev_s, KT, tau_m, tau_s, theta, t_end,
                        rtol, max_iter, block, s_peak, eps_max, V, R, skip, wstart, pos, acc_m, acc_s,
                        ilen, em, es, eps_l, deps_l, cap_offsets, counts, o_row, o_neuron, o_time,
                        o_slope, o_wstart):
    """Forward of the units ``units`` (int64 unit indices), ``block`` groups at a time
    (same results as :func:`_scan_units` up to rounding; parallel over chunks: chunk c
    sweeps units[chunk_units[c]:chunk_units[c + 1]]).

    For a block of groups [A, B) of a unit (times t_A .. t_B, t_B the next group's
    time or t_end) every channel i first accumulates, over the block's entries
    (r_e = a_e K[i, tap_e]), the sum of its positive parts P_i and the time-referenced
    sums M_i = sum r_e e^{t_e/tau_m}, S_i = sum r_e e^{t_e/tau_s} (``ev_m``, ``ev_s``
    hold a_e e^{t_e/tau} per input event). Since e^{-s/tau_m} <= 1 and eps >= 0 rises up
    to its peak eps_max at s_peak, its potential in [t_A, t_B] is at most max(V, 0) +
    eps(min(L, s_peak)) (max(R, 0) + P_i), L = t_B - t_A: every lag is in [0, L]. A channel
    whose bound is below theta cannot spike in the block: its state jumps to t_B in
    closed form, V <- V e^{-L/tau_m} + R eps(L) + c (M e^{-t_B/tau_m} - S e^{-t_B/tau_s}),
    R <- R e^{-L/tau_s} + S e^{-t_B/tau_s}, c = tau_m / (tau_m - tau_s). Every other
    channel (and one that spiked exactly on t_A) is swept group by group with the
    exact per-neuron routine :func:`_group_step`. Chunk c owns
    row c of the workspaces V, R, skip, wstart, pos, acc_m, acc_s (C_out) and ilen, em,
    es, eps_l, deps_l (``block``)."""
    c_out = KT.shape[1]
    coef = tau_m / (tau_m - tau_s)
    for c in prange(chunk_units.size - 1):
        Vc, Rc, Kc, Wc = V[c], R[c], skip[c], wstart[c]
        Pc, Mc, Sc = pos[c], acc_m[c], acc_s[c]
        Lc, EMc, ESc, EPc, DPc = ilen[c], em[c], es[c], eps_l[c], deps_l[c]
        for q in range(chunk_units[c], chunk_units[c + 1]):
            u = units[q]
            g0 = unit_group_offsets[u]
            n_g = unit_group_offsets[u + 1] - g0
            base = cap_offsets[u]
            cap = cap_offsets[u + 1] - base
            n = 0
            for i in range(c_out):
                Vc[i] = 0.0
                Rc[i] = 0.0
                Kc[i] = False
                Wc[i] = 0
            for jA in range(0, n_g, block):
                jB = min(jA + block, n_g)
                for i in range(c_out):
                    Pc[i] = 0.0
                    Mc[i] = 0.0
                    Sc[i] = 0.0
                for e in range(group_entry_offsets[g0 + jA], group_entry_offsets[g0 + jB]):
                    m = ent_event[e]
                    a = amps[m]
                    fm = ev_m[m]
                    fs = ev_s[m]
                    row = KT[ent_tap[e]]
                    for i in range(c_out):
                        k = row[i]
                        Pc[i] += max(a * k, 0.0)
                        Mc[i] += fm * k
                        Sc[i] += fs * k
                tA = group_times[g0 + jA]
                tB = group_times[g0 + jB] if jB < n_g else t_end
                emL, esL, epsL, _ = _interval_factors(tB - tA, tau_m, tau_s)
                lim = epsL if tB - tA < s_peak else eps_max
                xm = math.exp(-tB / tau_m)
                xs = math.exp(-tB / tau_s)
                ready = False
                for i in range(c_out):
                    v = Vc[i]
                    r = Rc[i]
                    if not Kc[i] and max(v, 0.0) + lim * (max(r, 0.0) + Pc[i]) < theta:
                        Vc[i] = v * emL + r * epsL + coef * (Mc[i] * xm - Sc[i] * xs)
                        Rc[i] = r * esL + Sc[i] * xs
                        continue
                    if not ready:  # the block's interval factors, once for all its swept channels
                        _unit_intervals(group_times, g0 + jA, g0 + jB, tB, tau_m, tau_s, Lc, EMc,
                                        ESc, EPc, DPc)
                        ready = True
                    sk = Kc[i]
                    ws = Wc[i]
                    for j in range(jA, jB):
                        for e in range(group_entry_offsets[g0 + j], group_entry_offsets[g0 + j + 1]):
                            r += amps[ent_event[e]] * KT[ent_tap[e], i]
                        has_next = j + 1 < n_g
                        t_next = group_times[g0 + j + 1] if has_next else t_end
                        n0 = n
                        jj = j - jA
                        v, r, sk, ws, n = _group_step(v, r, sk, ws, n, j, group_times[g0 + j], t_next,
                                                      has_next, Lc[jj], EMc[jj], ESc[jj], EPc[jj],
                                                      DPc[jj], tau_m, tau_s, theta, rtol, max_iter,
                                                      base, cap, o_row, o_time, o_slope, o_wstart)
                        if n > n0 and n0 < cap:
                            o_neuron[base + n0] = i
                    Vc[i] = v
                    Rc[i] = r
                    Kc[i] = sk
                    Wc[i] = ws
            counts[u] = n


@dataclass(frozen=True, eq=False)
class BlockedScan:
    """Arguments of :func:`_scan_units_blocked` beyond the lists: per-event factors
    a_m e^{t_m/tau_m}, a_m e^{t_m/tau_s}, the peak of eps, and per-chunk workspaces.
    Built by :meth:`plan`; shared by the sparse convolution and the dense layer's
    event path (units = samples, entries = events, taps = input neurons)."""

    amps: np.ndarray
    ev_m: np.ndarray
    ev_s: np.ndarray
    block: int
    s_peak: float
    eps_max: float
    work: tuple

    @classmethod
    def plan(cls, n_chunks: int, n_out: int, block: int, amplitudes, event_times, params, t_end):
        """The arguments, or None when ``block`` is 0 or e^{t_end/tau} could overflow."""
        if block <= 0 or t_end / min(params.tau_m, params.tau_s) > MAX_REFERENCED_EXPONENT:
            return None
        kept = np.minimum(event_times, t_end)  # later events have no entries
        s_peak, eps_max = eps_peak(params.tau_m, params.tau_s)
        work = (np.zeros((n_chunks, n_out)), np.zeros((n_chunks, n_out)),
                np.zeros((n_chunks, n_out), dtype=np.bool_), np.zeros((n_chunks, n_out), dtype=np.int64),
                *(np.empty((n_chunks, n_out)) for _ in range(3)),
                *(np.empty((n_chunks, int(block))) for _ in range(5)))
        amps = np.ascontiguousarray(amplitudes, dtype=np.float64)
        return cls(amps, amps * np.exp(kept / params.tau_m), amps * np.exp(kept / params.tau_s),
                   int(block), s_peak, eps_max, work)

    def run(self, units, chunk_units, unit_group_offsets, group_times, group_entry_offsets,
            ent_event, ent_tap, KT, params, t_end, rtol, max_iter, cap_offsets, counts, o_row,
            o_neuron, o_time, o_slope, o_wstart):
        """Call the kernel on ``units`` (rows and window starts of the spikes come out
        unit-relative)."""
        _scan_units_blocked(units, chunk_units, unit_group_offsets, group_times, group_entry_offsets,
                            ent_event, ent_tap, self.amps, self.ev_m, self.ev_s, KT, params.tau_m, params.tau_s, params.threshold,
                            float(t_end), float(rtol), int(max_iter), self.block, self.s_peak,
                            self.eps_max, *self.work, cap_offsets, counts, o_row, o_neuron, o_time,
                            o_slope, o_wstart)


@njit(cache=True)
def _dense_group_inputs(event_group, event_neuron, event_amp, X):
    """X[g, j] += a_m for every event m (X zero-initialised by the caller)."""
    for m in range(event_group.size):
        X[event_group[m], event_neuron[m]] += event_amp[m]


# ----------------------------------------------------------------------------------
# backward kernels
# ----------------------------------------------------------------------------------
@njit(cache=True)
def _window_end(group_times, group_offsets, s, row, tk):
    """One past the last group of the window of a spike at tk in interval ``row``."""
    we = row + 1
    if we < group_offsets[s + 1] and group_times[we] == tk:
        we += 1
    return we


@njit(cache=True, inline="always")
def _window_open(group_times, group_offsets, s, row, tk, tau_m, tau_s, tau_grad):
    """(we, e^{-lag/tau_m}, e^{-lag/tau_s}, e^{-lag/tau_grad}) of a spike at tk in interval
    ``row`` of sample (or unit) s: one past its window's last group, and the decays over
    the lag from that group to tk (the window is walked backwards from there)."""
    we = _window_end(group_times, group_offsets, s, row, tk)
    lag = tk - group_times[we - 1]
    return we, math.exp(-lag / tau_m), math.exp(-lag / tau_s), math.exp(-lag / tau_grad)


@njit(cache=True, inline="always")
def _spike_window(k, s, out_row, out_time, out_wstart, group_times, group_offsets, tau_m, tau_s,
                  tau_grad):
    """Spike k of sample (or unit) s: (t_k, window start ws, we, decays) as in
    :func:`_window_open`; the window is empty when we <= ws."""
    tk = out_time[k]
    we, e_m, e_s, e_g = _window_open(group_times, group_offsets, s, out_row[k], tk, tau_m, tau_s,
                                     tau_grad)
    return tk, out_wstart[k], we, e_m, e_s, e_g


@njit(cache=True, inline="always")
def _step_back(gg, ws, e_m, e_s, e_g, em, es, eg, off):
    """Decays at group gg - 1 from those at group gg (window start ws): times the
    interval factors of group gg - 1, stored at index gg - 1 - ``off``."""
    if gg > ws:
        return e_m * em[gg - 1 - off], e_s * es[gg - 1 - off], e_g * eg[gg - 1 - off]
    return e_m, e_s, e_g


@njit(cache=True)
def _hval(code, e_m, e_s, e_g, a, tau_m, tau_s):
    """h(lag) from exp(-lag/tau_m), exp(-lag/tau_s), exp(-lag/tau_grad)."""
    if code == KERNEL_EXP:
        return e_g
    return a * (e_s / tau_s - e_m / tau_m)


@njit(cache=True)
def _spike_factors(denom, slope, G, max_dt_du, drop_nonpositive):
    """(flags, share = G/D or 0 if dropped, weight factor G dt/du) of one spike."""
    f = 0
    if denom <= 0.0:
        f |= 2
        if drop_nonpositive or denom == 0.0:
            f |= 1
    dtdu = -1.0 / slope
    if max_dt_du > 0.0 and dtdu < -max_dt_du:
        dtdu = -max_dt_du
        f |= 4
    share = 0.0 if (f & 1) else G / denom
    return f, share, G * dtdu


@njit(cache=True, inline="always")
def _acc1(a, i, v):
    """a[i] += v (the GPU engine compiles the callers with an atomic add instead)."""
    a[i] += v


@njit(cache=True, inline="always")
def _acc2(a, i, j, v):
    """a[i, j] += v (the GPU engine compiles the callers with an atomic add instead)."""
    a[i, j] += v


@njit(cache=True, inline="always")
def _dense_spike(k, i, cur, group_times, group_offsets, em, es, eg, group_run, out_sample,
                 out_row, out_time, out_slope, out_wstart, grad, code, tau_m, tau_s, tau_grad,
                 max_dt_du, drop_nonpositive, recompute_slope, min_slope, need_groups, gamma_run,
                 beta_g, gamma_g, flags):
    """Dense path, spike k of neuron i (``cur`` = its row of the transposed currents):
    the Eq. 12 denominator and u' over the window, then G (-1/u') eps into
    ``gamma_run[i, run]`` and, with ``need_groups``, G h / D into ``beta_g[i, g]`` and
    the Eq. 14 factor into ``gamma_g[i, g]``. Sets ``flags[k]``."""
    a = tau_m / (tau_m - tau_s)
    tk, ws, we, e_m0, e_s0, e_g0 = _spike_window(k, out_sample[k], out_row, out_time, out_wstart,
                                                 group_times, group_offsets, tau_m, tau_s, tau_grad)
    if we <= ws:
        flags[k] = 3
        return
    denom = 0.0
    du = 0.0
    e_m, e_s, e_g = e_m0, e_s0, e_g0
    for gg in range(we - 1, ws - 1, -1):
        c = cur[group_run[gg]]
        denom += c * _hval(code, e_m, e_s, e_g, a, tau_m, tau_s)
        du += c * a * (e_s / tau_s - e_m / tau_m)
        e_m, e_s, e_g = _step_back(gg, ws, e_m, e_s, e_g, em, es, eg, 0)
    slope = max(du, min_slope) if recompute_slope else out_slope[k]
    f, share, wgt = _spike_factors(denom, slope, grad[k], max_dt_du, drop_nonpositive)
    flags[k] = f
    e_m, e_s, e_g = e_m0, e_s0, e_g0
    for gg in range(we - 1, ws - 1, -1):
        ge = wgt * a * (e_m - e_s)
        _acc2(gamma_run, i, group_run[gg], ge)
        if need_groups:
            _acc2(beta_g, i, gg, share * _hval(code, e_m, e_s, e_g, a, tau_m, tau_s))
            _acc2(gamma_g, i, gg, ge)
        e_m, e_s, e_g = _step_back(gg, ws, e_m, e_s, e_g, em, es, eg, 0)


@njit(cache=True, parallel=True)
def _backward_dense(group_times, group_offsets, em, es, eg, currents_t, group_run,
                    neuron_offsets, by_neuron, out_sample, out_row, out_time, out_slope,
                    out_wstart, grad, code, tau_m, tau_s, tau_grad, max_dt_du, drop_nonpositive,
                    recompute_slope, min_slope, need_groups, gamma_run, beta_g, gamma_g, flags):
    """Dense path (parallel over neurons): each spike's Eq. 14 factors G (-1/u') eps summed
    per run of identical groups into ``gamma_run`` (n_out, n_runs); with ``need_groups``
    also Eq. 12 shares G h / D into ``beta_g`` and the Eq. 14 factors into ``gamma_g``
    (n_out, n_groups). ``currents_t`` is (n_out, n_runs). With ``recompute_slope``
    (forced spikes) u'(t) is summed over the window and raised to at least
    ``min_slope``. ``flags``: 1 dropped window, 2 denominator <= 0, 4 |dt/du| clamped."""
    for i in prange(neuron_offsets.size - 1):
        cur = currents_t[i]
        for q in range(neuron_offsets[i], neuron_offsets[i + 1]):
            _dense_spike(by_neuron[q], i, cur, group_times, group_offsets, em, es, eg, group_run,
                         out_sample, out_row, out_time, out_slope, out_wstart, grad, code, tau_m,
                         tau_s, tau_grad, max_dt_du, drop_nonpositive, recompute_slope, min_slope,
                         need_groups, gamma_run, beta_g, gamma_g, flags)


@njit(cache=True, inline="always")
def _sparse_spike_factors(k, Wi, group_times, group_offsets, group_event_offsets, event_neuron,
                          event_amp, em, es, eg, out_sample, out_row, out_time, out_slope,
                          out_wstart, grad, code, tau_m, tau_s, tau_grad, max_dt_du,
                          drop_nonpositive, recompute_slope, min_slope, flags):
    """Sparse path, spike k of a neuron with weight row ``Wi``: the Eq. 12 denominator
    and u' over its window (event by event). Sets ``flags[k]``; returns
    (share = G/D, wgt = G dt/du), both 0 for an empty window."""
    a = tau_m / (tau_m - tau_s)
    tk, ws, we, e_m, e_s, e_g = _spike_window(k, out_sample[k], out_row, out_time, out_wstart,
                                              group_times, group_offsets, tau_m, tau_s, tau_grad)
    if we <= ws:
        flags[k] = 3
        return 0.0, 0.0
    denom = 0.0
    du = 0.0
    for gg in range(we - 1, ws - 1, -1):
        cur = 0.0
        for m in range(group_event_offsets[gg], group_event_offsets[gg + 1]):
            cur += Wi[event_neuron[m]] * event_amp[m]
        denom += cur * _hval(code, e_m, e_s, e_g, a, tau_m, tau_s)
        du += cur * a * (e_s / tau_s - e_m / tau_m)
        e_m, e_s, e_g = _step_back(gg, ws, e_m, e_s, e_g, em, es, eg, 0)
    slope = max(du, min_slope) if recompute_slope else out_slope[k]
    f, share, wgt = _spike_factors(denom, slope, grad[k], max_dt_du, drop_nonpositive)
    flags[k] = f
    return share, wgt


@njit(cache=True, inline="always")
def _sparse_spike_scatter(s, i, Wi, tk, row, ws, share, wgt, do_weight, do_input, group_times,
                          group_offsets, group_event_offsets, event_neuron, event_amp, em, es, eg,
                          code, tau_m, tau_s, tau_grad, dW, d_times, d_amps):
    """Sparse path, one spike of neuron i in sample s at tk (interval ``row``, window
    start ``ws``): with ``do_weight`` Eq. 14 into dW[i, :], with ``do_input`` Eq. 13
    into dL/dt and dL/da of the window's input events."""
    a = tau_m / (tau_m - tau_s)
    we, e_m, e_s, e_g = _window_open(group_times, group_offsets, s, row, tk, tau_m, tau_s, tau_grad)
    if we <= ws:
        return
    for gg in range(we - 1, ws - 1, -1):
        fe = wgt * a * (e_m - e_s)
        if do_weight:
            for m in range(group_event_offsets[gg], group_event_offsets[gg + 1]):
                _acc2(dW, i, event_neuron[m], fe * event_amp[m])
        if do_input:
            fh = share * _hval(code, e_m, e_s, e_g, a, tau_m, tau_s)
            for m in range(group_event_offsets[gg], group_event_offsets[gg + 1]):
                w = Wi[event_neuron[m]]
                _acc1(d_times, m, fh * w * event_amp[m])
                _acc1(d_amps, m, fe * w)
        e_m, e_s, e_g = _step_back(gg, ws, e_m, e_s, e_g, em, es, eg, 0)


@njit(cache=True, parallel=True)
def _backward_sparse_weights(group_times, group_offsets, group_event_offsets, event_neuron,
                             event_amp, em, es, eg, W, neuron_offsets, by_neuron, out_sample,
                             out_row, out_neuron, out_time, out_slope, out_wstart, grad, code,
                             tau_m, tau_s, tau_grad, max_dt_du, drop_nonpositive,
                             recompute_slope, min_slope, share_out, wgt_out, flags, dW):
    """Sparse path, pass 1 (parallel over neurons): denominators, Eq. 14 into dW[i, :],
    and each spike's ``share_out`` = G/D and ``wgt_out`` = G dt/du for pass 2."""
    for i in prange(neuron_offsets.size - 1):
        Wi = W[i]
        for q in range(neuron_offsets[i], neuron_offsets[i + 1]):
            k = by_neuron[q]
            share, wgt = _sparse_spike_factors(k, Wi, group_times, group_offsets,
                                               group_event_offsets, event_neuron, event_amp, em,
                                               es, eg, out_sample, out_row, out_time, out_slope,
                                               out_wstart, grad, code, tau_m, tau_s, tau_grad,
                                               max_dt_du, drop_nonpositive, recompute_slope,
                                               min_slope, flags)
            share_out[k] = share
            wgt_out[k] = wgt
            if wgt == 0.0:
                continue
            _sparse_spike_scatter(out_sample[k], i, Wi, out_time[k], out_row[k], out_wstart[k],
                                  share, wgt, True, False, group_times, group_offsets,
                                  group_event_offsets, event_neuron, event_amp, em, es, eg, code,
                                  tau_m, tau_s, tau_grad, dW, dW[0], dW[0])


@njit(cache=True, parallel=True)
def _backward_sparse_events(group_times, group_offsets, group_event_offsets, event_neuron,
                            event_amp, em, es, eg, W, spike_offsets, out_row, out_neuron,
                            out_time, out_wstart, share_in, wgt_in, code, tau_m, tau_s,
                            tau_grad, d_times, d_amps):
    """Sparse path, pass 2 (parallel over samples): Eq. 13 into dL/dt and dL/da of the
    input events (events of a sample are written only by that sample's spikes)."""
    for s in prange(spike_offsets.size - 1):
        for k in range(spike_offsets[s], spike_offsets[s + 1]):
            share = share_in[k]
            wgt = wgt_in[k]
            if share == 0.0 and wgt == 0.0:
                continue
            i = out_neuron[k]
            _sparse_spike_scatter(s, i, W[i], out_time[k], out_row[k], out_wstart[k], share, wgt,
                                  False, True, group_times, group_offsets, group_event_offsets,
                                  event_neuron, event_amp, em, es, eg, code, tau_m, tau_s,
                                  tau_grad, W, d_times, d_amps)


@njit(cache=True, parallel=True)
def _sort_spikes(cap_offsets, counts, o_row, o_time, take):
    """Compact index of every sample's spikes, ordered by time; ties keep the kernel's
    order (neuron index). Spikes of one sample come in interval order, so only the
    spikes of one interval need sorting."""
    out_offsets = np.zeros(counts.size + 1, dtype=np.int64)
    for s in range(counts.size):
        out_offsets[s + 1] = out_offsets[s] + counts[s]
    for s in prange(counts.size):
        base = cap_offsets[s]
        n = counts[s]
        a = 0
        while a < n:
            b = a + 1
            while b < n and o_row[base + b] == o_row[base + a]:
                b += 1
            order = np.argsort(o_time[base + a:base + b], kind="mergesort")
            for q in range(b - a):
                take[out_offsets[s] + a + q] = base + a + order[q]
            a = b


@njit(cache=True)
def _forced_windows_kernel(group_times, group_offsets, out_offsets, out_times, out_neurons,
                           f_samples, f_neurons, f_times, rows, wstart):
    """Interval row and window start of each forced spike (row -1: empty window)."""
    for q in range(f_times.size):
        s = f_samples[q]
        i = f_neurons[q]
        t = f_times[q]
        g0 = group_offsets[s]
        g1 = group_offsets[s + 1]
        row = g0 + np.searchsorted(group_times[g0:g1], t) - 1  # last group with t_g < t
        rows[q] = -1
        if row < g0:
            continue
        t_prev = -np.inf
        for e in range(out_offsets[s], out_offsets[s + 1]):
            if out_neurons[e] == i and out_times[e] < t and out_times[e] > t_prev:
                t_prev = out_times[e]
        ws = g0
        while ws < g1 and group_times[ws] <= t_prev:
            ws += 1
        if ws >= _window_end(group_times, group_offsets, s, row, t):
            continue
        rows[q] = row
        wstart[q] = ws


@njit(cache=True)
def _last_rise_kernel(dense, group_times, group_offsets, interval_len, em, es, eps_l, deps_l,
                      currents, group_run, group_event_offsets, event_neuron, event_amp, W,
                      out_offsets, out_times, out_neurons, samples, neurons, t_end,
                      tau_m, tau_s, result):
    """Latest time after its last spike at which each (sample, neuron)'s potential rises.

    Walks the neuron's groups after its last spike: in the interval after group g
    the potential is rising at the end if u'(L) > 0 (candidate: the interval end),
    else it peaks inside if u'(0) > 0 (candidate: the maximum d*). t_end when the
    potential never rises there.
    """
    for q in range(samples.size):
        s = samples[q]
        i = neurons[q]
        g0 = group_offsets[s]
        g1 = group_offsets[s + 1]
        t_prev = -np.inf
        for e in range(out_offsets[s], out_offsets[s + 1]):
            if out_neurons[e] == i and out_times[e] > t_prev:
                t_prev = out_times[e]
        last = t_end
        found = False
        V = 0.0
        R = 0.0
        for g in range(g0, g1):
            if group_times[g] <= t_prev:
                continue
            if dense:
                R += currents[group_run[g], i]
            else:
                for m in range(group_event_offsets[g], group_event_offsets[g + 1]):
                    R += W[i, event_neuron[m]] * event_amp[m]
            L = interval_len[g]
            du0 = R / tau_s - V / tau_m
            duL = R * deps_l[g] - V / tau_m * em[g]
            if L > 0.0 and duL > 0.0:
                last = group_times[g] + L
                found = True
            elif L > 0.0 and du0 > 0.0:
                last = group_times[g] + min(max(_critical_point(V, R, tau_m, tau_s), 0.0), L)
                found = True
            V = V * em[g] + R * eps_l[g]
            R *= es[g]
        result[q] = last if found else t_end


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


@njit(cache=True)
def _count_groups(times, offsets, t_end, counts):
    """counts[s] = (kept events, distinct kept times) of every sample."""
    for s in range(offsets.size - 1):
        ne = 0
        ng = 0
        last = -1.0
        for m in range(offsets[s], offsets[s + 1]):
            t = times[m]
            if t > t_end:
                continue
            if ne == 0 or t != last:
                ng += 1
                last = t
            ne += 1
        counts[s, 0] = ne
        counts[s, 1] = ng


@njit(cache=True)
def _fill_groups(times, neurons, amps, offsets, t_end, group_offsets, keep, event_group,
                 event_neuron, event_amp, group_times, group_event_offsets, interval_len):
    e = 0
    for s in range(offsets.size - 1):
        g = group_offsets[s] - 1
        for m in range(offsets[s], offsets[s + 1]):
            t = times[m]
            if t > t_end:
                continue
            if g < group_offsets[s] or t != group_times[g]:
                g += 1
                group_times[g] = t
                group_event_offsets[g] = e
            keep[e] = m
            event_group[e] = g
            event_neuron[e] = neurons[m]
            event_amp[e] = amps[m]
            e += 1
        for gg in range(group_offsets[s], group_offsets[s + 1]):
            nxt = group_times[gg + 1] if gg + 1 < group_offsets[s + 1] else t_end
            interval_len[gg] = nxt - group_times[gg]
    group_event_offsets[group_event_offsets.size - 1] = e


def group_events(inputs: SpikeTrains, t_end: float) -> EventGroups:
    """Group the events of each sample by distinct time; drop events after ``t_end``."""
    if inputs.n_events and inputs.times.min() < 0.0:
        raise ValueError("input event times must be >= 0 (the simulation window starts at 0)")
    S = inputs.n_samples
    counts = np.zeros((S, 2), dtype=np.int64)
    _count_groups(inputs.times, inputs.offsets, float(t_end), counts)
    n_kept = int(counts[:, 0].sum())
    group_offsets = csr_offsets(counts[:, 1])
    G = int(group_offsets[-1])
    groups = EventGroups(
        keep=np.empty(n_kept, dtype=np.int64), event_group=np.empty(n_kept, dtype=np.int64),
        event_neuron=np.empty(n_kept, dtype=np.int64), event_amp=np.empty(n_kept),
        group_times=np.empty(G), group_offsets=group_offsets,
        group_event_offsets=np.empty(G + 1, dtype=np.int64), interval_len=np.empty(G),
    )
    _fill_groups(inputs.times, inputs.neurons, inputs.amplitudes, inputs.offsets, float(t_end),
                 group_offsets, groups.keep, groups.event_group, groups.event_neuron,
                 groups.event_amp, groups.group_times, groups.group_event_offsets,
                 groups.interval_len)
    return groups


def group_inputs(groups: EventGroups, n_in: int):
    """Dense group inputs: the distinct rows of X (X[g, j] = summed amplitude of the
    events of group g from source j) and the run of each group.

    Consecutive groups with identical inputs (e.g. the T impulses of a static
    image) form a run and share one row.

    Returns
    -------
    X : ndarray of float64, shape (n_runs, n_in)
    group_run : ndarray of int64, shape (n_groups,)
    """
    n_groups = groups.n_groups
    X = np.zeros((n_groups, n_in))
    _dense_group_inputs(groups.event_group, groups.event_neuron, groups.event_amp, X)
    new_run = np.ones(n_groups, dtype=bool)
    new_run[1:] = np.any(X[1:] != X[:-1], axis=1)
    return np.ascontiguousarray(X[new_run]), np.cumsum(new_run) - 1


def group_currents(groups: EventGroups, weight: np.ndarray, n_in: int):
    """Dense path: input currents X W^T by BLAS, once per distinct group content.

    Returns
    -------
    currents : ndarray of float64, shape (n_runs, n_out) — input current of each run.
    X : ndarray of float64, shape (n_runs, n_in) — the distinct rows of the group inputs.
    group_run : ndarray of int64, shape (n_groups,) — run of each group.
    """
    Xu, group_run = group_inputs(groups, n_in)
    return Xu @ weight.T, Xu, group_run


def uses_dense_path(groups: EventGroups, n_in: int) -> bool:
    """True when the group inputs are dense enough for the BLAS path."""
    n_groups = groups.n_groups
    return bool(n_groups) and groups.event_group.size / (n_groups * max(n_in, 1)) > DENSE_INPUT_DENSITY


@dataclass(frozen=True, eq=False)
class DenseRecord:
    """What the reverse sweep of a dense layer needs from its forward pass.

    Memory grows with the number of events and spikes, never with a time grid.

    Attributes
    ----------
    params : NeuronParams
    t_end : float
    groups : EventGroups
    weight : ndarray (n_out, n_in) — the effective weights used.
    currents : ndarray (n_runs, n_out) or None — input current of each run of identical
        groups (dense path only).
    X : ndarray (n_runs, n_in) or None — distinct dense group inputs (dense path only).
    group_run : ndarray (n_groups,) or None — run of each group (dense path only).
    n_in_events : int — number of events of the layer's input SpikeTrains.
    outputs : SpikeTrains — the layer's output spikes.
    out_sample, out_row, out_wstart : int64 arrays (n_spikes,) aligned with ``outputs``:
        sample, interval (group after which the spike falls) and first window group.
    out_slope : float64 (n_spikes,) — u'(t_k) of each spike.
    em, es : float64 (n_groups,) — exp(-L_g/tau_m), exp(-L_g/tau_s) of each interval.
    eps_l, deps_l : float64 (n_groups,) — eps(L_g), eps'(L_g) of each interval.
    """

    params: NeuronParams
    t_end: float
    groups: EventGroups
    weight: np.ndarray
    currents: np.ndarray | None
    X: np.ndarray | None
    group_run: np.ndarray | None
    n_in_events: int
    outputs: SpikeTrains
    out_sample: np.ndarray
    out_row: np.ndarray
    out_wstart: np.ndarray
    out_slope: np.ndarray
    em: np.ndarray
    es: np.ndarray
    eps_l: np.ndarray
    deps_l: np.ndarray

    @property
    def dense(self) -> bool:
        return self.currents is not None


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
        2 denominator <= 0, 4 |dt/du| clamped, 8 not walked (:data:`FLAG_NO_GRADIENT`:
        no spike of its sample carries a gradient).
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


@dataclass(frozen=True, eq=False)
class Sweep:
    """Output of :func:`scan_groups`: the spikes and what the backward needs of them."""

    outputs: SpikeTrains
    out_sample: np.ndarray
    out_row: np.ndarray
    out_wstart: np.ndarray
    out_slope: np.ndarray
    em: np.ndarray
    es: np.ndarray
    eps_l: np.ndarray
    deps_l: np.ndarray


def interval_decays(groups: EventGroups, params: NeuronParams):
    """exp(-L/tau_m), exp(-L/tau_s), eps(L), eps'(L) of every group's interval L
    (float64 arrays (n_groups,)), shared by all neurons of a layer."""
    em = np.exp(-groups.interval_len / params.tau_m)
    es = np.exp(-groups.interval_len / params.tau_s)
    eps_l = eps(groups.interval_len, params.tau_m, params.tau_s)
    deps_l = deps(groups.interval_len, params.tau_m, params.tau_s)
    return em, es, eps_l, deps_l


@njit(cache=True, parallel=True)
def _take(src, idx, out):
    for q in prange(idx.size):
        out[q] = src[idx[q]]


def take(arrays, idx) -> tuple:
    """``tuple(np.asarray(a)[idx] for a in arrays)``, contiguous, gathered in parallel.

    Parameters
    ----------
    arrays : sequence of 1-D arrays (numeric)
    idx : int64 (m,) — indices, each in range of every array.
    """
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        r = np.empty(idx.size, dtype=a.dtype)
        _take(a, idx, r)
        out.append(r)
    return tuple(out)


def collect_slots(counts, cap_offsets):
    """(item, slot) of every collected spike, items in order: item i's spikes are the first
    counts[i] slots from cap_offsets[i]."""
    item = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return item, cap_offsets[item] + (np.arange(int(counts.sum()), dtype=np.int64) - first[item])


def spike_buffers(total: int):
    """Spike buffers of ``total`` slots: row (int64), neuron or channel (int64), time,
    slope (float64), window start (int64)."""
    return (np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64), np.empty(total),
            np.empty(total), np.empty(total, dtype=np.int64))


def run_planned(run, caps, make_buffers=spike_buffers):
    """Fill spike buffers planned per item (a sample, a unit, or a GPU thread).

    ``run(items, cap_offsets, counts, buffers)`` sweeps the items ``items`` (int64
    indices): the first spikes of item i, up to its capacity cap_offsets[i + 1] -
    cap_offsets[i], go to that region of every buffer, and its spike count (all of them,
    also those beyond the capacity) to ``counts[i]``. Items that emitted more spikes than
    planned are swept a second time, alone, into regions of their exact size; the other
    items keep their first sweep. An item's sweep does not depend on the others, so the
    result is the one of sweeping every item with exact sizes -- and only the few items
    that overflowed pay twice (a trained convolution fires more than planned at a
    handful of its positions in almost every batch).

    Parameters
    ----------
    run : callable
    caps : int64 (n_items,) — planned capacities.
    make_buffers : callable
        ``make_buffers(total)`` returns the tuple of (host) buffers of ``total`` slots.

    Returns
    -------
    (cap_offsets, counts, buffers) : item i's spikes are the first counts[i] slots from
        cap_offsets[i] in every buffer.
    """
    caps = np.asarray(caps, dtype=np.int64)
    n = caps.size
    counts = np.zeros(n, dtype=np.int64)
    offsets = csr_offsets(caps)
    buffers = make_buffers(int(offsets[-1]))
    if n:
        run(np.arange(n, dtype=np.int64), offsets, counts, buffers)
    over = counts > caps
    if not over.any():
        return offsets, counts, buffers
    redo_offsets = csr_offsets(np.where(over, counts, 0))
    redo = make_buffers(int(redo_offsets[-1]))
    run(np.flatnonzero(over), redo_offsets, counts, redo)
    # merge into compact regions, each item from the sweep that holds all its spikes
    item, src_first = collect_slots(counts, offsets)
    _, src_second = collect_slots(counts, redo_offsets)
    again = over[item]
    merged = make_buffers(item.size)
    for out, a, b in zip(merged, buffers, redo):
        out[~again] = a[src_first[~again]]
        out[again] = b[src_second[again]]
    return csr_offsets(counts), counts, merged


def scan_groups(groups: EventGroups, n_out: int, params: NeuronParams, t_end: float, *,
                currents=None, group_run=None, weight_t=None, rtol: float = CROSSING_RTOL,
                max_iter: int = CROSSING_MAX_ITER, block: int = SCAN_BLOCK) -> Sweep:
    """Run every sample's neurons through its groups and collect the spikes sorted per
    sample by time, then neuron.

    Give either ``currents`` (n_runs, n_out) with ``group_run`` (dense path: the
    compiled ``_scan``) or ``weight_t`` = W^T (n_in, n_out) (sparse path: the blocked
    ``_scan_units_blocked``, ``block`` groups at a time, each sample a unit; with
    ``block=0`` the group-by-group ``_scan``). Spike buffers are planned per sample;
    a sample that emits more spikes is re-run alone with exact sizes (:func:`run_planned`).
    """
    S = groups.group_offsets.size - 1
    dense = currents is not None
    if dense:
        weight_t = np.zeros((0, n_out))
    else:
        currents, group_run = np.zeros((0, n_out)), np.zeros(0, np.int64)
    em, es, eps_l, deps_l = interval_decays(groups, params)
    blocked = None if dense or not (n_out and S) else BlockedScan.plan(
        S, n_out, block, groups.event_amp, groups.group_times[groups.event_group], params, t_end)
    if blocked is None:
        work = (np.zeros((S, n_out)), np.zeros((S, n_out)), np.zeros((S, n_out), dtype=np.bool_),
                np.zeros((S, n_out), dtype=np.int64), np.zeros((S, n_out), dtype=np.bool_))
    else:  # units = samples, entries = events (the identity), taps = input neurons
        entries = np.arange(groups.event_amp.size, dtype=np.int64)

    def run(items, cap_offsets, counts, buffers):
        if not n_out:
            return
        if blocked is not None:  # one sample per chunk (workspace rows: S >= items)
            blocked.run(items, np.arange(items.size + 1, dtype=np.int64), groups.group_offsets,
                        groups.group_times, groups.group_event_offsets, entries,
                        groups.event_neuron, weight_t, params, t_end, rtol, max_iter, cap_offsets,
                        counts, *buffers)
        else:
            _scan(items, dense, groups.group_times, groups.group_offsets, groups.interval_len, em,
                  es, eps_l, deps_l, currents, group_run, groups.group_event_offsets,
                  groups.event_neuron, groups.event_amp, weight_t, params.tau_m, params.tau_s,
                  params.threshold, float(t_end), float(rtol), int(max_iter), *work,
                  cap_offsets, counts, *buffers)

    caps = np.minimum(np.diff(groups.group_offsets), PLANNED_SPIKES_PER_NEURON) * n_out + 16
    cap_offsets, counts, (o_row, o_neuron, o_time, o_slope, o_wstart) = run_planned(run, caps)
    n_spk = int(counts.sum())
    sample = np.repeat(np.arange(S, dtype=np.int64), counts)
    if blocked is None:
        take = np.empty(n_spk, dtype=np.int64)
        _sort_spikes(cap_offsets, counts, o_row, o_time, take)
        rows, wstart = o_row[take], o_wstart[take]
    else:  # blocks emit channel by channel: sort by time, then neuron; rows were sample-relative
        _, take = collect_slots(counts, cap_offsets)
        take = take[order_by_time(csr_offsets(counts), o_time[take], o_neuron[take])]
        g0 = groups.group_offsets[sample]
        rows, wstart = o_row[take] + g0, o_wstart[take] + g0
    outputs = SpikeTrains(o_time[take], o_neuron[take], np.ones(n_spk), csr_offsets(counts), n_out)
    return Sweep(outputs, sample, rows, wstart, o_slope[take], em, es, eps_l, deps_l)


def dense_forward(inputs: SpikeTrains, weight, params: NeuronParams, t_end: float, *,
                  rtol: float = CROSSING_RTOL, max_iter: int = CROSSING_MAX_ITER):
    """Exact forward of a dense layer of SRM neurons over a batch.

    Parameters
    ----------
    inputs : SpikeTrains
        Input events, ``inputs.n_neurons`` sources, times >= 0.
    weight : array_like float64, shape (n_out, inputs.n_neurons)
        Effective weights W[i, j] (efficacy of an event = W[i, j] a_m).
    params : NeuronParams
    t_end : float
        End of the simulation window (0, t_end].
    rtol, max_iter : crossing-solver tolerance and iteration limit.

    Returns
    -------
    outputs : SpikeTrains
        Output spikes (amplitude 1), ``n_neurons = n_out``, sorted per sample by
        time then neuron.
    record : DenseRecord
        State for :func:`dense_backward`.
    """
    return _dense_forward_with(scan_groups, inputs, weight, params, t_end, rtol, max_iter)


def _dense_forward_with(scan, inputs, weight, params, t_end, rtol, max_iter):
    """:func:`dense_forward` with ``scan`` (:func:`scan_groups` or another backend's
    function of the same signature) sweeping the neurons."""
    t_end = float(t_end)
    if not math.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"t_end must be a finite positive number, got {t_end}")
    w = _check_weight(weight, inputs.n_neurons)
    n_out = w.shape[0]
    groups = group_events(inputs, t_end)
    dense = uses_dense_path(groups, inputs.n_neurons)
    currents = X = group_run = None
    if dense:
        currents, X, group_run = group_currents(groups, w, inputs.n_neurons)
        currents_u, group_run_u, WT = currents, group_run, None
    else:
        currents_u, group_run_u, WT = None, None, np.ascontiguousarray(w.T)
    sw = scan(groups, n_out, params, t_end, currents=currents_u, group_run=group_run_u,
              weight_t=WT, rtol=rtol, max_iter=max_iter)
    record = DenseRecord(
        params=params, t_end=t_end, groups=groups, weight=w, currents=currents, X=X,
        group_run=group_run, n_in_events=inputs.n_events, outputs=sw.outputs,
        out_sample=sw.out_sample, out_row=sw.out_row, out_wstart=sw.out_wstart,
        out_slope=sw.out_slope, em=sw.em, es=sw.es, eps_l=sw.eps_l, deps_l=sw.deps_l,
    )
    return sw.outputs, record


@dataclass(frozen=True, eq=False)
class ForcedSpikes:
    """Supervisory spikes forced onto output neurons (training only).

    A forced spike at time t of neuron i in sample s carries the gradient
    ``grad`` like a real spike: its window is (t_prev, t] with t_prev the last
    real spike of the neuron before t, its Eq. 12 shares use h, and its weight
    path uses dt/du = -1/max(u'(t), 1/max_dt_du): a forced spike is not a
    threshold crossing, so where the potential is not rising there the steepest
    allowed sensitivity is used. It does not reset the neuron.

    Attributes
    ----------
    samples, neurons : int64 arrays (n,)
    times, grads : float64 arrays (n,)
        Any array_like is accepted; it is stored as a contiguous 1-D array of that dtype
        (ValueError if the four lengths differ).
    max_dt_du : float
        Cap on |dt/du| for forced spikes (default 4, the official code's cap).
    """

    samples: np.ndarray
    neurons: np.ndarray
    times: np.ndarray
    grads: np.ndarray
    max_dt_du: float = 4.0

    def __post_init__(self):
        for name, dtype in (("samples", np.int64), ("neurons", np.int64), ("times", np.float64),
                            ("grads", np.float64)):
            object.__setattr__(self, name, np.ascontiguousarray(np.reshape(getattr(self, name), -1),
                                                                dtype=dtype))
        if not self.samples.size == self.neurons.size == self.times.size == self.grads.size:
            raise ValueError("ForcedSpikes: samples, neurons, times and grads must have one entry "
                             f"per supervisory spike, got sizes {self.samples.size}, "
                             f"{self.neurons.size}, {self.times.size}, {self.grads.size}")


def last_rise_times(record: DenseRecord, samples, neurons) -> np.ndarray:
    """For each (sample, neuron): the latest time after its last spike at which its
    potential was rising (the official code's placement of the supervisory spike,
    in continuous time: an interval end where u' > 0, or a maximum of u); t_end
    where it never rises.

    Parameters
    ----------
    record : DenseRecord
    samples, neurons : array_like of int, shape (n,)

    Returns
    -------
    ndarray float64 (n,)
    """
    smp = np.ascontiguousarray(samples, dtype=np.int64).reshape(-1)
    nrn = np.ascontiguousarray(neurons, dtype=np.int64).reshape(-1)
    out = np.full(smp.size, record.t_end)
    g = record.groups
    n_out = record.weight.shape[0]
    if record.dense:
        cur, run, W = record.currents, record.group_run, np.zeros((0, 0))
    else:
        cur, run, W = np.zeros((0, n_out)), np.zeros(0, np.int64), record.weight
    o = record.outputs
    _last_rise_kernel(record.dense, g.group_times, g.group_offsets, g.interval_len, record.em,
                      record.es, record.eps_l, record.deps_l, cur, run, g.group_event_offsets,
                      g.event_neuron, g.event_amp, W, o.offsets, o.times, o.neurons, smp, nrn,
                      record.t_end, record.params.tau_m, record.params.tau_s, out)
    return out


#: ``flags`` bit of an output spike whose window was not walked: no output spike and no
#: supervisory spike of its sample carries a gradient, so every term of the window (Eqs.
#: 12-14 all scale with dL/dt of a spike of the same sample) is an exact zero.
FLAG_NO_GRADIENT = 8


def gradient_samples(n_samples: int, spike_samples, grad, forced: ForcedSpikes | None = None):
    """bool (n_samples,): the samples with a nonzero dL/dt on an output spike (``grad``,
    aligned with ``spike_samples``) or on a supervisory spike of ``forced``. The backward
    of a layer walks only these samples' windows: the others contribute exact zeros (a
    trained network's count loss is zero for most samples of a batch)."""
    active = np.zeros(n_samples, dtype=np.bool_)
    active[np.asarray(spike_samples)[np.asarray(grad) != 0.0]] = True
    if forced is not None and forced.times.size:
        active[forced.samples[forced.grads != 0.0]] = True
    return active


def restrict_to_samples(active, spike_samples, spikes, grad):
    """The spikes of the ``active`` samples: (kept indices, or None when all are kept;
    the tuple ``spikes`` of arrays and ``grad``, restricted)."""
    keep = active[np.asarray(spike_samples)]
    if keep.all():
        return None, spikes, grad
    idx = np.flatnonzero(keep)
    return idx, take(spikes, idx), take((grad,), idx)[0]


def restrict_forced(active, forced: ForcedSpikes | None):
    """``forced`` without the supervisory spikes of inactive samples (None if none is left)."""
    if forced is None or not forced.times.size:
        return None
    keep = np.flatnonzero(active[np.asarray(forced.samples)])
    if not keep.size:
        return None
    return ForcedSpikes(*(a[keep] for a in (forced.samples, forced.neurons, forced.times, forced.grads)),
                        max_dt_du=forced.max_dt_du)


def with_gradient(n_samples: int, spike_samples, spikes, grad, forced: ForcedSpikes | None):
    """A layer's output spikes and supervisory spikes, restricted to the samples that carry
    a gradient (:func:`gradient_samples`): (kept indices or None, spikes, grad, forced)."""
    active = gradient_samples(n_samples, spike_samples, grad, forced)
    kept, spikes, grad = restrict_to_samples(active, spike_samples, spikes, grad)
    return kept, spikes, grad, restrict_forced(active, forced)


def all_flags(idx, flags, n: int) -> np.ndarray:
    """Flags of all ``n`` spikes from those of the kept spikes ``idx`` (None: all kept);
    the others get :data:`FLAG_NO_GRADIENT`."""
    if idx is None:
        return flags
    out = np.full(n, FLAG_NO_GRADIENT, dtype=np.int8)
    out[idx] = flags
    return out


def _forced_spike_list(record: DenseRecord, forced: ForcedSpikes):
    """Forced spikes with a non-empty window, sorted by sample: (sample, neuron, time, grad, row, wstart)."""
    n = forced.times.size
    smp = np.ascontiguousarray(forced.samples, dtype=np.int64)
    nrn = np.ascontiguousarray(forced.neurons, dtype=np.int64)
    tms = np.ascontiguousarray(forced.times, dtype=np.float64)
    grd = np.ascontiguousarray(forced.grads, dtype=np.float64)
    rows = np.full(n, -1, dtype=np.int64)
    wstart = np.zeros(n, dtype=np.int64)
    out = record.outputs
    _forced_windows_kernel(record.groups.group_times, record.groups.group_offsets, out.offsets,
                           out.times, out.neurons, smp, nrn, tms, rows, wstart)
    ok = np.flatnonzero(rows >= 0)
    ok = ok[np.argsort(smp[ok], kind="stable")]
    return smp[ok], nrn[ok], tms[ok], grd[ok], rows[ok], wstart[ok]


@njit(cache=True)
def _counting_sort(keys, offsets, order):
    """order = the stable argsort of ``keys`` given their CSR ``offsets`` (one pass)."""
    cursor = offsets[:-1].copy()
    for q in range(keys.size):
        k = keys[q]
        order[cursor[k]] = q
        cursor[k] += 1


@njit(cache=True, parallel=True)
def _order_by_time(offsets, times, neurons, order):
    """order[a:b] = a + the argsort of sample s's slice [a, b) = [offsets[s], offsets[s + 1])
    by (time, neuron, index): a quicksort of the times, then each run of equal times put
    in (neuron, index) order -- by insertion when short, else by a sort of the indices
    and a stable (merge) sort of their neurons. Parallel over samples."""
    for s in prange(offsets.size - 1):
        a = offsets[s]
        n = offsets[s + 1] - a
        loc = np.argsort(times[a:a + n])
        i = 0
        while i < n:
            t = times[a + loc[i]]
            j = i + 1
            while j < n and times[a + loc[j]] == t:
                j += 1
            if j - i > 16:  # a long tie run (identical inputs): index order, then stable by neuron
                run = np.sort(loc[i:j])
                loc[i:j] = run[np.argsort(neurons[a + run], kind="mergesort")]
            else:
                for p in range(i + 1, j):  # insertion sort of the short tie run [i, j)
                    q = loc[p]
                    key = neurons[a + q]
                    r = p - 1
                    while r >= i and (neurons[a + loc[r]] > key or
                                      (neurons[a + loc[r]] == key and loc[r] > q)):
                        loc[r + 1] = loc[r]
                        r -= 1
                    loc[r + 1] = q
            i = j
        for p in range(n):
            order[a + p] = a + loc[p]


def order_by_time(offsets, times, neurons) -> np.ndarray:
    """The order of events (sample, time, neuron) when every sample's events are contiguous.

    Parameters
    ----------
    offsets : int64 (n_samples + 1,) — sample s owns events [offsets[s], offsets[s + 1]).
    times : float64 (n_events,)
    neurons : int64 (n_events,)

    Returns
    -------
    order : int64 (n_events,)
        The permutation that ``np.lexsort((neurons, times, samples))`` gives (stable:
        full ties keep their index order), found per sample in parallel.
    """
    times = np.ascontiguousarray(times, dtype=np.float64)
    neurons = np.ascontiguousarray(neurons, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != times.size or neurons.size != times.size:
        raise ValueError("offsets must be CSR offsets over all the events, one neuron per time")
    order = np.empty(times.size, dtype=np.int64)
    _order_by_time(offsets, times, neurons, order)
    return order


def _by_neuron(neurons: np.ndarray, n_out: int):
    """Spike indices grouped by neuron (CSR): (neuron_offsets, by_neuron), by_neuron =
    the stable argsort of ``neurons`` (a counting sort)."""
    neurons = np.ascontiguousarray(neurons, dtype=np.int64)
    neuron_offsets = offsets_of(neurons, n_out)
    by_neuron = np.empty(neurons.size, dtype=np.int64)
    _counting_sort(neurons, neuron_offsets, by_neuron)
    return neuron_offsets, by_neuron


def _backward_dense_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, eg,
                         currents_t, need_groups, gamma_run, beta_g, gamma_g):
    smp, nrn, tms, slope, rows, wstart = spikes
    flags = np.zeros(tms.size, dtype=np.int8)
    p = record.params
    g = record.groups
    if tms.size:
        neuron_offsets, by_neuron = _by_neuron(nrn, currents_t.shape[0])
        # the kernel walks the spikes neuron by neuron: hand it their data in that order
        # (contiguous reads; the same arithmetic in the same order as indexing through by_neuron)
        in_order = np.arange(tms.size, dtype=np.int64)
        smp, rows, tms, slope, wstart, grad = take((smp, rows, tms, slope, wstart, grad), by_neuron)
        sorted_flags = np.zeros(tms.size, dtype=np.int8)
        _backward_dense(g.group_times, g.group_offsets, record.em, record.es, eg, currents_t,
                        record.group_run, neuron_offsets, in_order, smp, rows, tms, slope,
                        wstart, grad, gp.code, p.tau_m, p.tau_s, gp.tau_grad, max_dt_du,
                        gp.drop_nonpositive, recompute, min_slope, need_groups, gamma_run,
                        beta_g, gamma_g, sorted_flags)
        flags[by_neuron] = sorted_flags
    return flags


def _backward_sparse_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, eg,
                          dW, d_times, d_amps, need_input_grad):
    smp, nrn, tms, slope, rows, wstart = spikes
    n = tms.size
    flags = np.zeros(n, dtype=np.int8)
    if not n:
        return flags
    p = record.params
    g = record.groups
    n_out = record.weight.shape[0]
    neuron_offsets, by_neuron = _by_neuron(nrn, n_out)
    share = np.zeros(n)
    wgt = np.zeros(n)
    _backward_sparse_weights(g.group_times, g.group_offsets, g.group_event_offsets, g.event_neuron,
                             g.event_amp, record.em, record.es, eg, record.weight, neuron_offsets,
                             by_neuron, smp, rows, nrn, tms, slope, wstart, grad, gp.code, p.tau_m,
                             p.tau_s, gp.tau_grad, max_dt_du, gp.drop_nonpositive, recompute,
                             min_slope, share, wgt, flags, dW)
    if need_input_grad:
        S = g.group_offsets.size - 1
        spike_offsets = offsets_of(smp, S)
        _backward_sparse_events(g.group_times, g.group_offsets, g.group_event_offsets,
                                g.event_neuron, g.event_amp, record.em, record.es, eg,
                                record.weight, spike_offsets, rows, nrn, tms, wstart, share, wgt,
                                gp.code, p.tau_m, p.tau_s, gp.tau_grad, d_times, d_amps)
    return flags


def dense_backward(record: DenseRecord, grad_out, grad_params: GradParams | None = None, *,
                   need_input_grad: bool = True, forced: ForcedSpikes | None = None) -> DenseGrads:
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
    forced : ForcedSpikes, optional
        Supervisory spikes whose gradient is propagated too.

    Returns
    -------
    DenseGrads
    """
    return _dense_backward_with(_backward_dense_path, _backward_sparse_path, record, grad_out,
                                grad_params, need_input_grad, forced)


def _dense_backward_with(dense_path, sparse_path, record, grad_out, grad_params, need_input_grad,
                         forced):
    """:func:`dense_backward` with the window walks ``dense_path`` / ``sparse_path``
    (:func:`_backward_dense_path`, :func:`_backward_sparse_path` or another backend's
    functions of the same signatures)."""
    gp = grad_params if grad_params is not None else GradParams()
    grad = np.ascontiguousarray(grad_out, dtype=np.float64).reshape(-1)
    out = record.outputs
    if grad.size != out.n_events:
        raise ValueError(f"grad_out must have one entry per output spike ({out.n_events}), got {grad.size}")
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_out contains NaN or inf")
    g = record.groups
    n_out, n_in = record.weight.shape
    eg = np.exp(-g.interval_len / gp.tau_grad)
    cap = gp.max_dt_du if gp.max_dt_du is not None else -1.0
    real = (record.out_sample, out.neurons, out.times, record.out_slope, record.out_row,
            record.out_wstart)
    kept, real, grad, forced = with_gradient(out.n_samples, record.out_sample, real, grad, forced)
    fspk = None
    if forced is not None and forced.times.size:
        smp, nrn, tms, fgrad, rows, wstart = _forced_spike_list(record, forced)
        fspk = ((smp, nrn, tms, np.ones(tms.size), rows, wstart), fgrad, forced.max_dt_du)
    n_kept = g.keep.size
    d_times_k = np.zeros(n_kept)
    d_amps_k = np.zeros(n_kept)
    if record.dense:
        currents_t = np.ascontiguousarray(record.currents.T)
        gamma_run = np.zeros((n_out, record.X.shape[0]))
        need_groups = bool(need_input_grad and n_kept)
        shape = (n_out, g.n_groups) if need_groups else (1, 1)
        beta_g = np.zeros(shape)
        gamma_g = np.zeros(shape)
        flags = dense_path(record, gp, real, grad, False, 0.0, cap, eg, currents_t, need_groups,
                           gamma_run, beta_g, gamma_g)
        if fspk is not None:
            dense_path(record, gp, fspk[0], fspk[1], True, 1.0 / fspk[2], fspk[2], eg, currents_t,
                       need_groups, gamma_run, beta_g, gamma_g)
        flags = all_flags(kept, flags, out.n_events)
        d_weight = gamma_run @ record.X
        if need_groups:
            w = record.weight
            d_times_k = (beta_g.T @ w)[g.event_group, g.event_neuron] * g.event_amp
            d_amps_k = (gamma_g.T @ w)[g.event_group, g.event_neuron]
    else:
        d_weight = np.zeros((n_out, n_in))
        flags = all_flags(kept, sparse_path(record, gp, real, grad, False, 0.0, cap, eg, d_weight,
                                            d_times_k, d_amps_k, need_input_grad), out.n_events)
        if fspk is not None:
            sparse_path(record, gp, fspk[0], fspk[1], True, 1.0 / fspk[2], fspk[2], eg, d_weight,
                        d_times_k, d_amps_k, need_input_grad)
    d_times = np.zeros(record.n_in_events)
    d_amps = np.zeros(record.n_in_events)
    if need_input_grad:
        d_times[g.keep] = gp.input_grad_scale * d_times_k
        d_amps[g.keep] = d_amps_k
    return DenseGrads(d_times=d_times, d_amplitudes=d_amps, d_weight=d_weight, flags=flags)
