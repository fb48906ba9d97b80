"""Sparse convolution backward by channel-parallel walks over each unit's entries (CPU).

The sparse path of :mod:`eventsnn.engine.conv` keeps one time-ordered list of
entries e = (event m_e, tap_e) per unit u = (sample, output position), shared by
the unit's C_out channels; for channel c, entry e has the efficacy
r_e = K[c, tap_e] a_e at time t_e. For output spike k of channel c at t_k, with
window W_k (the entries of the groups ws..we-1 of its unit, t_{k-1} < t_e <= t_k)
and G_k = dL/dt_k, Eqs. 12-14 read::

    D_k     = sum_{e in W_k} r_e h(t_k - t_e)                                   (Eq. 12)
    u'(t_k) = sum_{e in W_k} r_e eps'(t_k - t_e)
    dL/dt_e += (G_k / D_k) h(t_k - t_e) K[c, tap_e] a_e                          (Eq. 13)
    dL/da_e += G_k (-1/u'(t_k)) eps(t_k - t_e) K[c, tap_e]
    dL/dK[c, tap] += G_k (-1/u'(t_k)) sum_{e in W_k, tap_e = tap} eps(t_k - t_e) a_e   (Eq. 14)

with eps(d) = A (e^{-d/tau_m} - e^{-d/tau_s}), A = tau_m / (tau_m - tau_s),
eps'(d) = A (e^{-d/tau_s}/tau_s - e^{-d/tau_m}/tau_m) and h = e^{-d/tau_grad}
("exp") or h = eps' ("depsilon"); share_k = G_k / D_k (0 when the window is
dropped) and wgt_k = G_k dt/du (|dt/du| capped) come from
:func:`eventsnn.engine.sweep._spike_factors`, as in the per-spike kernel.

Every kernel value factors into a function of t_e and one of t_k:
e^{-(t_k - t_e)/tau} = E_tau(t_e) e^{-t_k/tau}, E_tau(t) = e^{t/tau}, tau in
{tau_m, tau_s, tau_grad}. With per-tap sums over a window
W_tau[tap] = sum_{e in W_k, tap_e = tap} a_e E_tau(t_e)::

    sum_{e in W_k} r_e e^{-(t_k - t_e)/tau} = e^{-t_k/tau} (K[c] . W_tau)         (D_k, u'(t_k))
    dL/dK[c, :] += Phi_m W_m - Phi_s W_s,  Phi_m = wgt_k A e^{-t_k/tau_m}, Phi_s = wgt_k A e^{-t_k/tau_s}
    dL/da_e += E_m(t_e) V_m[tap_e] - E_s(t_e) V_s[tap_e]
    dL/dt_e += a_e (X_1(t_e) V_1[tap_e] - X_2(t_e) V_2[tap_e])

where V_x[tap] = sum over the windows that hold e of Psi_x K[c, tap] with Psi_m =
Phi_m, Psi_s = Phi_s and, for Eq. 13, exp: Psi_1 = share_k e^{-t_k/tau_grad},
X_1 = E_grad, Psi_2 = 0; depsilon: Psi_1 = share_k A e^{-t_k/tau_s}/tau_s, X_1 = E_s,
Psi_2 = share_k A e^{-t_k/tau_m}/tau_m, X_2 = E_m.

Per unit, two walks over its entries serve all channels at once:

1. in time order, running per-tap sums F_tau[tap] = sum of a_e E_tau(t_e) over the
   walked entries (one scalar add per entry and tau); a window's W_tau is F_tau when
   it ends minus F_tau when it starts (a copy of F per open window). At its end,
   D_k and u'(t_k) (dot products over the taps), the factors, and Eq. 14 (a
   contiguous row of dL/dK).
2. (input gradient only) backwards in time, running V_x: a window adds Psi K[c, :]
   when the walk enters it (at its end) and subtracts it when the walk leaves it;
   each entry reads V_x[tap_e] (Eq. 13, no sum over channels).

Work per unit: a few scalar operations per entry between its first window start
and last window end, plus O(n_taps) vectorised operations per window, against
(window length) x 2 strided steps per spike for the per-spike walks of
:func:`eventsnn.engine.conv._backward_units`, whose results these equal up to
rounding (same flags). Conditioning: F grows with time (E_tau increasing), so a
window's difference F(end) - F(start) is dominated by the window's own entries;
walking V backwards, the windows already left ended later (smaller Psi), so their
rounding residue, times E(t_e), stays below machine precision times the window's
own scale. Both sums restart from exact zeros whenever no window is open. The
separation needs (i) at most one open window per (unit, channel) -- true for a
neuron's real spikes (consecutive windows are disjoint) and for one supervisory
spike per neuron -- and (ii) E_tau(t) representable: t/tau <= :data:`~eventsnn.engine.sweep.MAX_REFERENCED_EXPONENT`
for all times (our datasets: t_end / tau <= 30/2.5). A call that breaks either
runs the per-spike kernel instead. Units go in the caller's chunks (one dL/dK
accumulator per chunk, as for the per-spike kernel: the result does not depend on
how chunks are scheduled on threads); an entry belongs to one unit: no races.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..kernels import KERNEL_EXP
from . import sweep as _sweep
from .conv import _backward_units_path, _chunks, _reach
from .sweep import _spike_factors, _window_end


@njit(cache=True, parallel=True)
def _window_ends(units, rows, tms, group_times, unit_group_offsets, we):
    """we[q] = one past the last group of the window of spike q (absolute group index)."""
    for q in prange(tms.size):
        we[q] = _window_end(group_times, unit_group_offsets, units[q], rows[q], tms[q])


def _cover(n_in_dim, k, stride, pad, n_out_dim) -> list:
    """Fewest output rows such that every input row that reaches an output row reaches one
    of them (greedy stabbing of the reach intervals, by their right ends)."""
    reach = sorted((hi, lo) for lo, hi in (_reach(y, k, stride, pad, n_out_dim)
                                           for y in range(n_in_dim)) if lo <= hi)
    picks = []
    for hi, lo in reach:
        if not picks or picks[-1] < lo:
            picks.append(hi)
    return picks


def _cover_positions(geom) -> np.ndarray:
    """Output positions p = oy w_out + ox whose units together hold every input event that
    reaches any position (rows and columns from :func:`_cover`)."""
    rows = _cover(geom.h, geom.k, geom.stride, geom.padding, geom.h_out)
    cols = _cover(geom.w, geom.k, geom.stride, geom.padding, geom.w_out)
    return np.array([oy * geom.w_out + ox for oy in rows for ox in cols], dtype=np.int64)


@njit(cache=True, parallel=True)
def _event_factors(unit_group_offsets, group_times, group_entry_offsets, ent_event, amps, n_pos,
                   cover, tau_m, tau_s, tau_grad, ev):
    """ev[m] = (a E_m, a E_s, a E_grad, E_m, E_s) at the time t_m of input event m,
    E_tau(t) = e^{t/tau} (events without an entry: t_m = 0). The times are read from the
    units of the ``cover`` positions first (parallel over samples: a sample's units hold
    only its events), then the exponentials (parallel over events)."""
    n_samples = (unit_group_offsets.size - 1) // n_pos
    for s in prange(n_samples):
        for p in cover:
            u = s * n_pos + p
            for g in range(unit_group_offsets[u], unit_group_offsets[u + 1]):
                t = group_times[g]
                for e in range(group_entry_offsets[g], group_entry_offsets[g + 1]):
                    ev[ent_event[e], 3] = t
    for m in prange(amps.size):
        t = ev[m, 3]
        a = amps[m]
        xm = math.exp(t / tau_m)
        xs = math.exp(t / tau_s)
        ev[m, 0] = a * xm
        ev[m, 1] = a * xs
        ev[m, 2] = a * math.exp(t / tau_grad)
        ev[m, 3] = xm
        ev[m, 4] = xs


@njit(cache=True, fastmath={"reassoc", "contract"})
def _window_sums(F, snap, fresh, K2, ch, W):
    """Per-tap sums of the window of channel ``ch`` that ends now, W_r = F[r] - snap[ch, r]
    (rows m, s into ``W``; snap taken as 0 when ``fresh``), and S_r = K2[ch] . W_r for the
    rows m, s, grad (the dot products reassociated: vectorised)."""
    s_m = 0.0
    s_s = 0.0
    s_g = 0.0
    for tap in range(K2.shape[1]):
        w_m = F[0, tap]
        w_s = F[1, tap]
        w_g = F[2, tap]
        if not fresh:
            w_m -= snap[ch, 0, tap]
            w_s -= snap[ch, 1, tap]
            w_g -= snap[ch, 2, tap]
        W[0, tap] = w_m
        W[1, tap] = w_s
        kv = K2[ch, tap]
        s_m += kv * w_m
        s_s += kv * w_s
        s_g += kv * w_g
    return s_m, s_s, s_g


@njit(cache=True)
def _forward_walk(q0, q1, open_order, close_order, ent_event, ent_tap, ev, K2, chans, tms, slope,
                  eo, ec, grad, exp_code, A, tau_m, tau_s, tau_grad, max_dt_du, drop_nonpositive,
                  recompute_slope, min_slope, F, snap, fresh, W, dK2, share, wgt, flags):
    """Walk 1 of one unit (its spikes: positions q0..q1-1 of the orders; spike k's window
    is entries [eo[k], ec[k])), in time order. Running per-tap sums F_tau[tap] = sum of
    a_e E_tau(t_e) over the walked entries (rows m, s, grad of ``F``; zero on entry and
    on exit; restarted from 0 whenever no window is open), copied to snap[c] when a
    window of channel c starts (``fresh[c]`` instead while F is 0). When it ends, its
    per-tap sums are W_tau = F_tau - snap[c] and S_tau = K2[c] . W_tau, giving D_k and
    u'(t_k), ``_spike_factors`` (flag, share, wgt), and Eq. 14:
    dK2[c] += Phi_m W_m - Phi_s W_s."""
    n_taps = K2.shape[1]
    qo = q0
    qc = q0
    n_open = 0
    f_zero = True
    pos = eo[open_order[q0]]
    while qc < q1:
        # windows that end at pos, then windows that start there
        while qc < q1 and ec[close_order[qc]] == pos:
            k = close_order[qc]
            ch = chans[k]
            tk = tms[k]
            s_m, s_s, s_g = _window_sums(F, snap, fresh[ch], K2, ch, W)
            em_k = math.exp(-tk / tau_m)
            es_k = math.exp(-tk / tau_s)
            du = A * (s_s * es_k / tau_s - s_m * em_k / tau_m)
            denom = s_g * math.exp(-tk / tau_grad) if exp_code else du
            sl = max(du, min_slope) if recompute_slope else slope[k]
            f, sh, wg = _spike_factors(denom, sl, grad[k], max_dt_du, drop_nonpositive)
            flags[k] = f
            share[k] = sh
            wgt[k] = wg
            pm = wg * A * em_k
            ps = wg * A * es_k
            for tap in range(n_taps):
                dK2[ch, tap] += pm * W[0, tap] - ps * W[1, tap]
            n_open -= 1
            qc += 1
            if n_open == 0 and not f_zero:  # restart the sums from exact zeros
                for r in range(3):
                    for tap in range(n_taps):
                        F[r, tap] = 0.0
                f_zero = True
        while qo < q1 and eo[open_order[qo]] == pos:
            ch = chans[open_order[qo]]
            fresh[ch] = f_zero
            if not f_zero:
                for r in range(3):
                    for tap in range(n_taps):
                        snap[ch, r, tap] = F[r, tap]
            n_open += 1
            qo += 1
        if qc == q1:
            break
        nxt = ec[close_order[qc]]
        if qo < q1:
            nxt = min(nxt, eo[open_order[qo]])
        if n_open:
            f_zero = False
            for e in range(pos, nxt):
                m = ent_event[e]
                tap = ent_tap[e]
                F[0, tap] += ev[m, 0]
                F[1, tap] += ev[m, 1]
                if exp_code:
                    F[2, tap] += ev[m, 2]
        pos = nxt


@njit(cache=True)
def _window_edge(sign, ch, K2, V, coef, exp_code):
    """A window of channel ``ch`` enters (sign +1) or leaves (-1) walk 2:
    V_i += sign Psi_i K2[ch] (V rows: V_m, V_s, V_1, V_2; coef rows: Phi_m, Phi_s,
    Psi_1, Psi_2; V_2 = 0 for the exp kernel)."""
    n_taps = K2.shape[1]
    pm = sign * coef[0, ch]
    ps = sign * coef[1, ch]
    p1 = sign * coef[2, ch]
    for tap in range(n_taps):
        kv = K2[ch, tap]
        V[0, tap] += pm * kv
        V[1, tap] += ps * kv
        V[2, tap] += p1 * kv
    if not exp_code:
        p2 = sign * coef[3, ch]
        for tap in range(n_taps):
            V[3, tap] += p2 * K2[ch, tap]


@njit(cache=True)
def _reverse_walk(q0, q1, open_order, close_order, ent_event, ent_tap, ev, K2, chans, tms, eo, ec,
                  exp_code, A, tau_m, tau_s, tau_grad, share, wgt, coef, V, ent_dt, ent_da):
    """Walk 2 of one unit, backwards in time (input gradient): per tap, the sums over the
    open windows V_m = sum Phi_m K2[c], V_s, V_1, V_2 (``V``, zero on entry and on exit)
    change when a window enters or leaves; every entry gets Eq. 13,
    ent_da[e] += E_m V_m[tap_e] - E_s V_s[tap_e] and
    ent_dt[e] += a_e (X_1 V_1[tap_e] - X_2 V_2[tap_e])."""
    n_taps = K2.shape[1]
    qo = q1
    qc = q1
    n_open = 0
    pos = ec[close_order[q1 - 1]]
    while qo > q0:
        # windows that start at pos leave, then windows that end there enter
        while qo > q0 and eo[open_order[qo - 1]] == pos:
            n_open -= 1
            if n_open:
                _window_edge(-1.0, chans[open_order[qo - 1]], K2, V, coef, exp_code)
            else:  # the last open window leaves: restart the sums from exact zeros
                for r in range(4):
                    for tap in range(n_taps):
                        V[r, tap] = 0.0
            qo -= 1
        while qc > q0 and ec[close_order[qc - 1]] == pos:
            k = close_order[qc - 1]
            ch = chans[k]
            tk = tms[k]
            em_k = math.exp(-tk / tau_m)
            es_k = math.exp(-tk / tau_s)
            coef[0, ch] = wgt[k] * A * em_k
            coef[1, ch] = wgt[k] * A * es_k
            if exp_code:
                coef[2, ch] = share[k] * math.exp(-tk / tau_grad)
            else:
                coef[2, ch] = share[k] * A * es_k / tau_s
                coef[3, ch] = share[k] * A * em_k / tau_m
            _window_edge(1.0, ch, K2, V, coef, exp_code)
            n_open += 1
            qc -= 1
        if qo == q0:
            break
        nxt = eo[open_order[qo - 1]]
        if qc > q0:
            nxt = max(nxt, ec[close_order[qc - 1]])
        if n_open:
            for e in range(pos - 1, nxt - 1, -1):
                m = ent_event[e]
                tap = ent_tap[e]
                ent_da[e] += ev[m, 3] * V[0, tap] - ev[m, 4] * V[1, tap]
                if exp_code:
                    ent_dt[e] += ev[m, 2] * V[2, tap]
                else:
                    ent_dt[e] += ev[m, 1] * V[2, tap] - ev[m, 0] * V[3, tap]
        pos = nxt


@njit(cache=True, parallel=True)
def _unit_walks(chunk_units, spike_offsets, open_order, close_order, ent_event, ent_tap, ev, K2,
                chans, tms, slope, eo, ec, grad, code, tau_m, tau_s, tau_grad, max_dt_du,
                drop_nonpositive, recompute_slope, min_slope, need_input, fwd_w, snap_w, fresh_w,
                win_w, coef_w, v_w, dk2_w, share, wgt, dKT_c, ent_dt, ent_da, flags):
    """Both walks of every unit with a spike (parallel over chunks of units).

    Parameters
    ----------
    chunk_units : int64 (n_chunks + 1,) — chunk c owns units [.., ..) and row c of the
        workspaces and of ``dKT_c``.
    spike_offsets : int64 (n_units + 1,) — unit u owns positions [.., ..) of
        ``open_order`` / ``close_order``: its spikes with a non-empty window sorted by
        window start / by window end.
    ent_event, ent_tap : (n_entries,) — the units' entries (record.units).
    ev : float64 (n_in_events, 5) — from :func:`_event_factors`.
    K2 : float64 (C_out, n_taps) — the kernel.
    chans, tms, slope, eo, ec, grad : (n_spikes,) — channel, time, u'(t_k), window
        entries [eo, ec), dL/dt_k.
    fwd_w : float64 (n_chunks, 3, n_taps) — zeros: F_m, F_s, F_grad of walk 1.
    snap_w : float64 (n_chunks, C_out, 3, n_taps) — workspace: F at window starts.
    fresh_w : bool (n_chunks, C_out) — workspace: the window started with F = 0.
    win_w : float64 (n_chunks, 2, n_taps) — workspace: per-tap window sums W_m, W_s.
    coef_w : float64 (n_chunks, 4, C_out) — workspace: Phi_m, Phi_s, Psi_1, Psi_2.
    v_w : float64 (n_chunks, 4, n_taps) — zeros: V_m, V_s, V_1, V_2 of walk 2.
    dk2_w : float64 (n_chunks, C_out, n_taps) — zeros: dL/dK of the chunk.
    share, wgt : float64 (n_spikes,) — out: G/D (0 if dropped), G dt/du.
    dKT_c : float64 (n_chunks, n_taps, C_out) — dL/dK^T, accumulated (dk2_w[c] added).
    ent_dt, ent_da : float64 (n_entries,) or empty — accumulated with ``need_input``.
    flags : int8 (n_spikes,) — out (spikes with a non-empty window only).
    """
    A = tau_m / (tau_m - tau_s)
    exp_code = code == KERNEL_EXP
    c_out, n_taps = K2.shape
    for c in prange(chunk_units.size - 1):
        for u in range(chunk_units[c], chunk_units[c + 1]):
            q0 = spike_offsets[u]
            q1 = spike_offsets[u + 1]
            if q0 == q1:
                continue
            _forward_walk(q0, q1, open_order, close_order, ent_event, ent_tap, ev, K2, chans,
                          tms, slope, eo, ec, grad, exp_code, A, tau_m, tau_s, tau_grad, max_dt_du,
                          drop_nonpositive, recompute_slope, min_slope, fwd_w[c], snap_w[c],
                          fresh_w[c], win_w[c], dk2_w[c], share, wgt, flags)
            if need_input:
                _reverse_walk(q0, q1, open_order, close_order, ent_event, ent_tap, ev, K2, chans,
                              tms, eo, ec, exp_code, A, tau_m, tau_s, tau_grad, share, wgt,
                              coef_w[c], v_w[c], ent_dt, ent_da)
        for tap in range(n_taps):
            for co in range(c_out):
                dKT_c[c, tap, co] += dk2_w[c, co, tap]


@njit(cache=True)
def _windows_overlap(open_order, chans, eo, ec, last_end):
    """Whether two windows of one (unit, channel) share an entry. ``open_order``: the
    windows by start eo (units own increasing entry ranges: sorted by unit too);
    ``last_end`` (C_out,) int64 zeros: end of the channel's latest window so far."""
    for k in open_order:
        ch = chans[k]
        if last_end[ch] > eo[k]:
            return True
        last_end[ch] = ec[k]
    return False


def window_orders(units, live, eo, ec, n_units: int):
    """The live spikes' windows grouped by unit, in order of start and of end.

    Parameters
    ----------
    units : int64 (n,) — unit of every spike.
    live : int64 (n_live,) — increasing indices of the spikes with a non-empty window.
    eo, ec : int64 (n,) — window entry ranges [eo, ec) (units own increasing entry ranges).
    n_units : int

    Returns
    -------
    spike_offsets : int64 (n_units + 1,) — unit u owns positions [.., ..) of both orders.
    open_order, close_order : int64 (n_live,)
        Spike indices by (unit, eo, index) and by (unit, ec, index): equal to
        ``live[np.argsort(eo[live], kind="stable")]`` (resp. ``ec``), since a unit's
        entries precede the next unit's; found by a counting sort by unit, then
        per unit in parallel (:func:`eventsnn.engine.sweep.order_by_time`).
    """
    spike_offsets, by_unit = _sweep._by_neuron(units[live], n_units)
    grouped = live[by_unit]
    ties = np.zeros(live.size, dtype=np.int64)
    open_order = grouped[_sweep.order_by_time(spike_offsets, eo[grouped], ties)]
    close_order = grouped[_sweep.order_by_time(spike_offsets, ec[grouped], ties)]
    return spike_offsets, open_order, close_order


def units_path_buffers(record, need_input: bool):
    """Fresh inputs and accumulators of a units path for a sparse-path record, as
    :func:`eventsnn.engine.conv.conv_backward` makes them: (KT (n_taps, C_out), dKT_c
    (n_chunks, n_taps, C_out) zeros, ent_dt, ent_da (n_entries,) zeros, or empty without
    ``need_input``)."""
    geom = record.geometry
    ul = record.units
    KT = np.ascontiguousarray(record.weight.reshape(geom.c_out, geom.n_taps).T)
    dKT_c = np.zeros((_chunks(ul.unit_group_offsets.size - 1).size - 1, geom.n_taps, geom.c_out))
    E = ul.n_entries if need_input else 0
    return KT, dKT_c, np.zeros(E), np.zeros(E)


def backward_units_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, need_input,
                        KT, dKT_c, ent_dt, ent_da):
    """Sparse-path backward of ``spikes`` by channel-parallel walks (see the module docstring).

    Same signature and results as :func:`eventsnn.engine.conv._backward_units_path`
    (up to rounding): Eq. 14 into the per-chunk ``dKT_c`` (n_chunks, n_taps, C_out),
    Eq. 13 into the per-entry ``ent_dt`` / ``ent_da`` (with ``need_input``).

    Parameters
    ----------
    record : ConvRecord
        A sparse-path record (``record.units`` set).
    gp : GradParams
    spikes : tuple of arrays (n,)
        (unit, channel, time, slope u'(t_k), interval row, window start) with
        absolute group indices.
    grad : float64 (n,) — dL/dt_k.
    recompute, min_slope : bool, float — recompute u'(t_k) over the window, floored at
        ``min_slope`` (supervisory spikes).
    max_dt_du : float — cap on |dt/du| (<= 0: none).
    need_input : bool
    KT : float64 (n_taps, C_out) — the kernel, transposed.
    dKT_c, ent_dt, ent_da : accumulated in place.

    Returns
    -------
    flags : int8 (n,) — 1 dropped window, 2 denominator <= 0, 4 |dt/du| clamped,
        3 empty window.
    """
    units, chans, tms, slope, rows, wstart = (np.ascontiguousarray(a) for a in spikes)
    ul = record.units
    p = record.params
    U = ul.unit_group_offsets.size - 1
    n = tms.size
    flags = np.zeros(n, dtype=np.int8)
    if not n or not U:
        return flags
    taus = [p.tau_m, p.tau_s] + ([gp.tau_grad] if gp.code == KERNEL_EXP else [])
    t_max = max(record.t_end, float(tms.max()))  # group times are <= t_end
    args = (record, gp, spikes, grad, recompute, min_slope, max_dt_du, need_input, KT, dKT_c,
            ent_dt, ent_da)
    if t_max / min(taus) > _sweep.MAX_REFERENCED_EXPONENT:
        return _backward_units_path(*args)
    we = np.empty(n, dtype=np.int64)
    _window_ends(units, rows, tms, ul.group_times, ul.unit_group_offsets, we)
    live = np.flatnonzero(we > wstart)
    flags[we <= wstart] = 3
    eo = np.zeros(n, dtype=np.int64)  # windows as entry ranges [eo, ec)
    ec = np.zeros(n, dtype=np.int64)
    eo[live] = ul.group_entry_offsets[wstart[live]]
    ec[live] = ul.group_entry_offsets[we[live]]
    spike_offsets, open_order, close_order = window_orders(units, live, eo, ec, U)
    c_out, n_taps = KT.shape[1], KT.shape[0]
    if _windows_overlap(open_order, chans, eo, ec, np.zeros(c_out, dtype=np.int64)):
        return _backward_units_path(*args)
    nc = dKT_c.shape[0]
    chunk_units = np.linspace(0, U, nc + 1).round().astype(np.int64)
    ev = np.zeros((ul.amplitudes.size, 5))
    _event_factors(ul.unit_group_offsets, ul.group_times, ul.group_entry_offsets, ul.ent_event,
                   ul.amplitudes, record.geometry.n_pos, _cover_positions(record.geometry), p.tau_m,
                   p.tau_s, gp.tau_grad if gp.code == KERNEL_EXP else math.inf, ev)
    share = np.zeros(n)
    wgt = np.zeros(n)
    _unit_walks(chunk_units, spike_offsets, open_order, close_order, ul.ent_event, ul.ent_tap, ev,
                np.ascontiguousarray(KT.T), chans, tms,
                np.ascontiguousarray(slope, dtype=np.float64), eo, ec,
                np.ascontiguousarray(grad, dtype=np.float64), gp.code, p.tau_m, p.tau_s,
                gp.tau_grad, max_dt_du, gp.drop_nonpositive, recompute, min_slope, bool(need_input),
                np.zeros((nc, 3, n_taps)), np.empty((nc, c_out, 3, n_taps)),
                np.empty((nc, c_out), dtype=np.bool_), np.empty((nc, 2, n_taps)),
                np.zeros((nc, 4, c_out)), np.zeros((nc, 4, n_taps)), np.zeros((nc, c_out, n_taps)),
                share, wgt, dKT_c, ent_dt, ent_da, flags)
    return flags
