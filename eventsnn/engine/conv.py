"""Convolution and pooling of spike events: exact forward, reverse-time backward.

Convolution (Eqs. 1-3, 12-14)
-----------------------------
Neuron indices are flattened (C, H, W) row-major. A convolution maps an input
of shape (C_in, H, W) to (C_out, H_out, W_out), H_out = (H + 2 pad - k) //
stride + 1 (W_out likewise), with kernel K[c_out, c_in, dy, dx]. Output neuron
(c, oy, ox) is an exact SRM neuron whose input events are the events of its
receptive field -- input (c_in, oy stride - pad + dy, ox stride - pad + dx)
for dy, dx in [0, k) -- each with efficacy K[c, c_in, dy, dx] a_m. Zero padding:
padded positions have no events. Same reset rule, windows and Eqs. 12-14 as the
dense layer (:mod:`eventsnn.engine.sweep`); dL/dK sums over all output
positions (weight sharing).

Two computations of the same forward, chosen per batch (``path="auto"``):

* dense path (images: few distinct times, every pixel active): the input events
  are grouped by distinct time per sample (:func:`~eventsnn.engine.sweep.group_events`),
  consecutive identical groups share one input row, the currents of each
  distinct row are one BLAS product (im2col of the rows) @ K^T, and all
  neurons of a sample are swept side by side by the dense layer's own scan
  kernel (:func:`~eventsnn.engine.sweep._scan`). The backward runs the dense
  layer's per-neuron kernel (:func:`~eventsnn.engine.sweep._backward_dense`)
  and contracts its per-run / per-group factors with the im2col rows (dL/dK,
  BLAS) and the kernel (dL/dt, a gather over the reached outputs).
* sparse path (hidden-layer spikes, at distinct times): every input event is
  scattered only to the output *positions* (oy, ox) whose receptive field holds
  it -- at most ceil(k/stride)^2 of them -- as an entry (event, tap) with tap =
  (c_in, dy, dx). All C_out channels of one position see the same events at
  the same times, so one time-ordered list per (sample, position) -- a *unit*
  -- serves the unit's C_out neurons; the efficacy of an entry for channel c is
  K[c, tap] a_m. The lists are CSR arrays built by count-then-fill (count the
  entries of each unit, prefix-sum, fill in time order; nothing capped, nothing
  dropped except events after t_end), then grouped by distinct time per unit.
  Each unit is swept through *its own* groups, its C_out neurons side by side,
  so a neuron only ever visits the times of its own input events. The CPU sweep
  is *blocked* (:func:`_scan_units_blocked`): ``SCAN_BLOCK`` groups at a time,
  each channel first bounds its potential over the block from above (its state
  and the positive parts of the block's inputs, times the peak of eps over the
  block's length); a channel whose bound stays below theta cannot fire there and
  jumps to the block's end in closed form (time-referenced sums
  sum r e^{t/tau}), the others are swept group by group with the per-neuron
  routine :func:`~eventsnn.engine.sweep._group_step` (exact crossing of
  :func:`eventsnn.crossing._first_crossing`). Same spikes as sweeping every group
  (times within 3e-13 of the group-by-group sweep on MNIST's second
  convolution). Units are independent: the kernels run in
  parallel over chunks of units, each chunk with its own workspace. The
  backward walks each spike's window in its unit's list twice: its Eq. 12
  denominator and u', then the shares G h / D and G (-1/u') eps of each entry,
  scattered to dL/dK (Eq. 14, accumulated per chunk and summed) and to dL/dt,
  dL/da per entry (Eq. 13; an entry belongs to one unit), which are then
  gathered onto the events per sample: no write races. Kernel values along a
  window come from per-interval decay factors (computed once per unit) by
  products, as in the dense layer.
  Memory: the record holds 12 bytes per entry and 16 per unit group (about
  ceil(k/stride)^2 entries per input event).

Pooling (continuous time)
-------------------------
Non-overlapping k x k windows per channel: input (C, H, W) -> (C, H // k,
W // k). When H or W is not a multiple of k the last H % k rows / W % k columns
are dropped (floor, as ``torch.nn.functional.max_pool2d``): their events emit
nothing and get no gradient. The pooled neuron re-emits each input event of its
window at the same time:

* max: amplitude 1 (for spikes; in general the largest amplitude of the
  coincident events); backward passes the pooled event's whole gradient g to
  the input spike that caused it (Eq. 8 holds);
* avg: amplitude a/k^2 (1/k^2 for a spike); backward passes g/k^2 to the
  spike -- the rest, the share of the window's silent positions, is lost
  (the gradient vanishing of plain average pooling);
* adjusted-avg: forward as avg; backward as max (the 1/n_spike rule with
  n_spike = 1; Eq. 8 holds).

Coincident spikes -- n > 1 input events of one window at exactly the same time
(normal with image inputs) -- emit ONE pooled event per (window, distinct
time): amplitude 1 (the largest amplitude) for max, (sum of the amplitudes)/k^2
= n/k^2 for avg and adjusted-avg. Backward: max and adjusted-avg split its
gradient equally, g/n to each coincident spike (Eq. 8 holds); avg gives g/k^2
to each, losing g (k^2 - n)/k^2, again exactly the share of the silent
positions of the window at that time. Pooled events are sorted per sample by
time then neuron; pooling keeps every event (no t_end cut) and ignores the
neuron parameters. It propagates time gradients only: dL/da of its inputs is
reported as 0 (the network's backward chain carries dL/dt; spikes have fixed
amplitude).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from ..crossing import CROSSING_MAX_ITER, CROSSING_RTOL
from ..params import GradParams, NeuronParams
from ..spikes import SpikeTrains, csr_offsets, offsets_of
from .sweep import (
    PLANNED_SPIKES_PER_NEURON,
    SCAN_BLOCK,
    BlockedScan,
    DenseGrads,
    EventGroups,
    ForcedSpikes,
    _acc1,
    _acc2,
    _backward_dense_path,
    _by_neuron,
    _count_groups,
    _forced_spike_list,
    _forced_windows_kernel,
    _forget_skipped,
    _hval,
    _spike_factors,
    _spike_window,
    _step_back,
    _sweep_interval,
    _unit_intervals,
    all_flags,
    collect_slots,
    group_events,
    group_inputs,
    order_by_time,
    run_planned,
    scan_groups,
    take,
    with_gradient,
)

#: ``path="auto"`` takes the dense (BLAS) path when the input groups reach, on
#: average, at least this share of the output positions (images reach all of them,
#: single spikes at distinct times a few).
CONV_DENSE_REACH = 0.5
#: Work chunks per thread of the sparse kernels (each chunk owns a workspace).
CHUNKS_PER_THREAD = 4

POOL_KINDS = ("max", "avg", "adjusted-avg")


# ----------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of a convolution: input (c_in, h, w), c_out channels, k x k kernel."""

    c_in: int
    h: int
    w: int
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        for name in ("c_in", "h", "w", "c_out", "k", "stride"):
            v = getattr(self, name)
            if int(v) != v or int(v) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
            object.__setattr__(self, name, int(v))
        if int(self.padding) != self.padding or int(self.padding) < 0:
            raise ValueError(f"padding must be an integer >= 0, got {self.padding!r}")
        object.__setattr__(self, "padding", int(self.padding))
        if self.h_out < 1 or self.w_out < 1:
            raise ValueError(
                f"a {self.k}x{self.k} kernel (stride {self.stride}, padding {self.padding}) does not "
                f"fit the input {self.in_shape}"
            )

    @property
    def h_out(self) -> int:
        return (self.h + 2 * self.padding - self.k) // self.stride + 1

    @property
    def w_out(self) -> int:
        return (self.w + 2 * self.padding - self.k) // self.stride + 1

    @property
    def in_shape(self) -> tuple:
        return (self.c_in, self.h, self.w)

    @property
    def out_shape(self) -> tuple:
        return (self.c_out, self.h_out, self.w_out)

    @property
    def n_in(self) -> int:
        return self.c_in * self.h * self.w

    @property
    def n_pos(self) -> int:
        """Output positions per channel, h_out * w_out."""
        return self.h_out * self.w_out

    @property
    def n_out(self) -> int:
        return self.c_out * self.n_pos

    @property
    def n_taps(self) -> int:
        """Kernel entries per output channel, c_in * k * k."""
        return self.c_in * self.k * self.k

    @property
    def weight_shape(self) -> tuple:
        return (self.c_out, self.c_in, self.k, self.k)

    def scalars(self) -> tuple:
        """(c_in, h, w, k, stride, padding, h_out, w_out) for the compiled kernels."""
        return (self.c_in, self.h, self.w, self.k, self.stride, self.padding, self.h_out, self.w_out)


def check_conv_weight(weight, geom: ConvGeometry) -> np.ndarray:
    """The kernel as a C-contiguous float64 array of shape ``geom.weight_shape``."""
    w = np.ascontiguousarray(weight, dtype=np.float64)
    if w.shape != geom.weight_shape:
        raise ValueError(f"weight must have shape {geom.weight_shape}, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight contains NaN or inf")
    return w


def dense_equivalent(weight, geom: ConvGeometry) -> np.ndarray:
    """The (n_out, n_in) dense weight matrix of the convolution (zeros outside the
    receptive fields): the conv layer equals a dense layer with these weights.
    For tests and inspection (size n_out x n_in)."""
    K = check_conv_weight(weight, geom)
    full = np.zeros((geom.n_out, geom.n_in))
    _dense_equivalent_kernel(K.reshape(geom.c_out, -1), *geom.scalars(), full)
    return full


def receptive_field(neuron: int, weight, geom: ConvGeometry):
    """Input neurons and effective weights of one output neuron.

    Returns
    -------
    sources : ndarray int64 — input neuron indices (increasing).
    weights : ndarray float64 — K[c, c_in, dy, dx] of each source.
    """
    K = check_conv_weight(weight, geom)
    n = int(neuron)
    if not 0 <= n < geom.n_out:
        raise IndexError(f"neuron {neuron} out of range for {geom.n_out} neurons")
    c, p = divmod(n, geom.n_pos)
    oy, ox = divmod(p, geom.w_out)
    src, wts = [], []
    for ci in range(geom.c_in):
        for dy in range(geom.k):
            y = oy * geom.stride - geom.padding + dy
            if not 0 <= y < geom.h:
                continue
            for dx in range(geom.k):
                x = ox * geom.stride - geom.padding + dx
                if 0 <= x < geom.w:
                    src.append((ci * geom.h + y) * geom.w + x)
                    wts.append(K[c, ci, dy, dx])
    return np.array(src, dtype=np.int64), np.array(wts, dtype=np.float64)


# ----------------------------------------------------------------------------------
# compiled kernels: geometry
# ----------------------------------------------------------------------------------
@njit(cache=True)
def _reach(y, k, stride, pad, n_out_dim):
    """Output rows oy in [lo, hi] whose window (oy stride - pad + [0, k)) holds input row y."""
    num = y + pad - k + 1
    lo = 0 if num <= 0 else (num + stride - 1) // stride
    hi = min((y + pad) // stride, n_out_dim - 1)
    return lo, hi


@njit(cache=True)
def _dense_equivalent_kernel(K2, c_in, h, w, k, stride, pad, ho, wo, full):
    P = ho * wo
    for co in range(K2.shape[0]):
        for oy in range(ho):
            for ox in range(wo):
                i = co * P + oy * wo + ox
                for ci in range(c_in):
                    for dy in range(k):
                        y = oy * stride - pad + dy
                        if y < 0 or y >= h:
                            continue
                        for dx in range(k):
                            x = ox * stride - pad + dx
                            if x < 0 or x >= w:
                                continue
                            full[i, (ci * h + y) * w + x] = K2[co, (ci * k + dy) * k + dx]


@njit(cache=True, parallel=True)
def _im2col(X, c_in, h, w, k, stride, pad, ho, wo, cols):
    """cols[r, oy*wo + ox, (ci*k + dy)*k + dx] = X[r, (ci, oy stride - pad + dy, ox stride - pad + dx)]
    (0 in the padding). X: (n_rows, c_in h w); cols: (n_rows, ho wo, c_in k k)."""
    for r in prange(X.shape[0]):
        Xr = X[r]
        for oy in range(ho):
            for ox in range(wo):
                row = cols[r, oy * wo + ox]
                for ci in range(c_in):
                    for dy in range(k):
                        y = oy * stride - pad + dy
                        for dx in range(k):
                            x = ox * stride - pad + dx
                            t = (ci * k + dy) * k + dx
                            if y < 0 or y >= h or x < 0 or x >= w:
                                row[t] = 0.0
                            else:
                                row[t] = Xr[(ci * h + y) * w + x]


# ----------------------------------------------------------------------------------
# compiled kernels: sparse path (units = (sample, output position))
# ----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _count_entries(times, neurons, offsets, t_end, c_in, h, w, k, stride, pad, ho, wo,
                   unit_counts):
    """unit_counts[s*P + p] = number of kept events of sample s reaching position p."""
    P = ho * wo
    hw = h * w
    for s in prange(offsets.size - 1):
        base = s * P
        for m in range(offsets[s], offsets[s + 1]):
            if times[m] > t_end:
                continue
            rem = neurons[m] % hw
            y = rem // w
            x = rem % w
            ylo, yhi = _reach(y, k, stride, pad, ho)
            xlo, xhi = _reach(x, k, stride, pad, wo)
            for oy in range(ylo, yhi + 1):
                for ox in range(xlo, xhi + 1):
                    unit_counts[base + oy * wo + ox] += 1


@njit(cache=True, parallel=True)
def _fill_entries(times, neurons, offsets, t_end, c_in, h, w, k, stride, pad, ho, wo,
                  unit_entry_offsets, cursor, last_time, ent_event, ent_tap, unit_groups):
    """Entries (event, tap) of every unit in time order (events are sorted per sample);
    counts the distinct times of each unit into ``unit_groups`` (``last_time``: workspace
    of one float per unit)."""
    P = ho * wo
    hw = h * w
    for s in prange(offsets.size - 1):
        base = s * P
        for m in range(offsets[s], offsets[s + 1]):
            t = times[m]
            if t > t_end:
                continue
            j = neurons[m]
            ci = j // hw
            rem = j % hw
            y = rem // w
            x = rem % w
            ylo, yhi = _reach(y, k, stride, pad, ho)
            xlo, xhi = _reach(x, k, stride, pad, wo)
            for oy in range(ylo, yhi + 1):
                dy = y + pad - oy * stride
                for ox in range(xlo, xhi + 1):
                    dx = x + pad - ox * stride
                    u = base + oy * wo + ox
                    e = cursor[u]
                    if e == unit_entry_offsets[u] or last_time[u] != t:
                        unit_groups[u] += 1
                        last_time[u] = t
                    ent_event[e] = m
                    ent_tap[e] = (ci * k + dy) * k + dx
                    cursor[u] = e + 1


@njit(cache=True, parallel=True)
def _fill_unit_groups(times, unit_entry_offsets, unit_group_offsets, ent_event, group_times,
                      group_entry_offsets):
    """Groups (distinct times) of every unit: time and first entry."""
    n_units = unit_entry_offsets.size - 1
    for u in prange(n_units):
        g = unit_group_offsets[u] - 1
        for e in range(unit_entry_offsets[u], unit_entry_offsets[u + 1]):
            t = times[ent_event[e]]
            if g < unit_group_offsets[u] or t != group_times[g]:
                g += 1
                group_times[g] = t
                group_entry_offsets[g] = e
    group_entry_offsets[group_entry_offsets.size - 1] = unit_entry_offsets[n_units]


@njit(cache=True, parallel=True)
def _scan_units(units, chunk_units, unit_group_offsets, group_times, group_entry_offsets,
                ent_event, ent_tap, amps, KT, tau_m, tau_s, theta, t_end, rtol, max_iter, V, R,
                skip, wstart, cand, ilen, em, es, eps_l, deps_l, cap_offsets, counts, o_row,
                o_neuron, o_time, o_slope, o_wstart):
    """Forward of the units ``units`` (int64 unit indices; parallel over chunks: chunk c
    sweeps units[chunk_units[c]:chunk_units[c + 1]] and owns row c of the workspaces V, R,
    skip, wstart, cand (C_out) and ilen, em, es, eps_l, deps_l (max groups per unit)).
    Spikes of unit u go to its region of the output buffers, with the channel as neuron
    and unit-relative rows/window starts."""
    c_out = KT.shape[1]
    for c in prange(chunk_units.size - 1):
        Vc, Rc, Kc, Wc, Cc = V[c], R[c], skip[c], wstart[c], cand[c]
        Lc, EMc, ESc, EPc, DPc = ilen[c], em[c], es[c], eps_l[c], deps_l[c]
        for q in range(chunk_units[c], chunk_units[c + 1]):
            u = units[q]
            g0 = unit_group_offsets[u]
            g1 = unit_group_offsets[u + 1]
            n_g = g1 - g0
            n = 0
            if n_g:
                _unit_intervals(group_times, g0, g1, t_end, tau_m, tau_s, Lc, EMc, ESc, EPc, DPc)
                for i in range(c_out):
                    Vc[i] = 0.0
                    Rc[i] = 0.0
                    Kc[i] = False
                    Wc[i] = 0
                gt = group_times[g0:g1]
                base = cap_offsets[u]
                cap = cap_offsets[u + 1] - base
                for j in range(n_g):
                    for e in range(group_entry_offsets[g0 + j], group_entry_offsets[g0 + j + 1]):
                        a = amps[ent_event[e]]
                        row = KT[ent_tap[e]]
                        for i in range(c_out):
                            Rc[i] += a * row[i]
                    _forget_skipped(Vc, Rc, Kc)
                    n = _sweep_interval(Vc, Rc, Kc, Wc, Cc, j, n_g, gt, Lc, EMc, ESc, EPc, DPc,
                                        tau_m, tau_s, theta, t_end, rtol, max_iter, o_row,
                                        o_neuron, o_time, o_slope, o_wstart, base, cap, n)
            counts[u] = n


@njit(cache=True, inline="always")
def _unit_decays(group_times, g, g1, t_end, tau_m, tau_s, tau_grad):
    """exp(-L/tau_m), exp(-L/tau_s), exp(-L/tau_grad) of the interval L after group g of
    a unit whose groups end before g1 (the last interval ends at t_end)."""
    nxt = group_times[g + 1] if g + 1 < g1 else t_end
    L = nxt - group_times[g]
    return math.exp(-L / tau_m), math.exp(-L / tau_s), math.exp(-L / tau_grad)


@njit(cache=True, inline="always")
def _unit_spike(kk, u, decays, off, unit_group_offsets, group_times, group_entry_offsets,
                ent_event, ent_tap, amps, KT, out_channel, out_row, out_time, out_slope,
                out_wstart, grad, code, tau_m, tau_s, tau_grad, max_dt_du, drop_nonpositive,
                recompute_slope, min_slope, need_input, dKT, ent_dt, ent_da, flags):
    """Sparse path, spike kk of unit u: Eq. 12 denominator and u' over its window, then
    Eq. 14 into dKT[tap, channel] and, with ``need_input``, Eq. 13 into the per-entry
    ``ent_dt`` / ``ent_da``. ``decays`` (3, n): exp(-L/tau_m), exp(-L/tau_s),
    exp(-L/tau_grad) of group g in column g - ``off``. Sets ``flags[kk]``."""
    a = tau_m / (tau_m - tau_s)
    EM, ES, EG = decays[0], decays[1], decays[2]
    co = out_channel[kk]
    tk, ws, we, e_m0, e_s0, e_g0 = _spike_window(kk, u, out_row, out_time, out_wstart, group_times,
                                                 unit_group_offsets, tau_m, tau_s, tau_grad)
    if we <= ws:
        flags[kk] = 3
        return
    denom = 0.0
    du = 0.0
    e_m, e_s, e_g = e_m0, e_s0, e_g0
    for gg in range(we - 1, ws - 1, -1):
        cur = 0.0
        for e in range(group_entry_offsets[gg], group_entry_offsets[gg + 1]):
            cur += KT[ent_tap[e], co] * amps[ent_event[e]]
        denom += cur * _hval(code, e_m, e_s, e_g, a, tau_m, tau_s)
        du += cur * a * (e_s / tau_s - e_m / tau_m)
        e_m, e_s, e_g = _step_back(gg, ws, e_m, e_s, e_g, EM, ES, EG, off)
    slope = max(du, min_slope) if recompute_slope else out_slope[kk]
    f, share, wgt = _spike_factors(denom, slope, grad[kk], max_dt_du, drop_nonpositive)
    flags[kk] = f
    if wgt == 0.0 and (share == 0.0 or not need_input):
        return
    e_m, e_s, e_g = e_m0, e_s0, e_g0
    for gg in range(we - 1, ws - 1, -1):
        fe = wgt * a * (e_m - e_s)
        fh = share * _hval(code, e_m, e_s, e_g, a, tau_m, tau_s)
        for e in range(group_entry_offsets[gg], group_entry_offsets[gg + 1]):
            tap = ent_tap[e]
            am = amps[ent_event[e]]
            kv = KT[tap, co]
            _acc2(dKT, tap, co, fe * am)
            if need_input:
                _acc1(ent_dt, e, fh * kv * am)
                _acc1(ent_da, e, fe * kv)
        e_m, e_s, e_g = _step_back(gg, ws, e_m, e_s, e_g, EM, ES, EG, off)


@njit(cache=True, parallel=True)
def _backward_units(chunk_units, unit_spike_offsets, by_unit, unit_group_offsets, group_times,
                    group_entry_offsets, ent_event, ent_tap, amps, KT, t_end, out_channel, out_row,
                    out_time, out_slope, out_wstart, grad, code, tau_m, tau_s, tau_grad,
                    max_dt_du, drop_nonpositive, recompute_slope, min_slope, need_input, dec_w,
                    dKT_c, ent_dt, ent_da, flags):
    """Sparse path backward (parallel over chunks of units; chunk c owns row c of the
    workspaces dec_w (3, max groups per unit: the interval decays) and dKT_c (n_taps,
    C_out)). For each spike of a unit: Eq. 12 denominator and u' over its window, then
    Eq. 14 into dKT_c[c] and, with ``need_input``, Eq. 13 into the per-entry ``ent_dt`` / ``ent_da``
    (an entry belongs to one unit: no races). Rows and window starts are absolute
    group indices. ``flags``: 1 dropped window, 2 denominator <= 0, 4 |dt/du| clamped."""
    for c in prange(chunk_units.size - 1):
        Dc = dec_w[c]
        dKT = dKT_c[c]
        for u in range(chunk_units[c], chunk_units[c + 1]):
            q0 = unit_spike_offsets[u]
            q1 = unit_spike_offsets[u + 1]
            if q0 == q1:
                continue
            g0 = unit_group_offsets[u]
            g1 = unit_group_offsets[u + 1]
            top = g0
            for q in range(q0, q1):
                top = max(top, out_row[by_unit[q]] + 1)
            for g in range(g0, min(top, g1)):
                j = g - g0
                Dc[0, j], Dc[1, j], Dc[2, j] = _unit_decays(group_times, g, g1, t_end, tau_m, tau_s,
                                                            tau_grad)
            for q in range(q0, q1):
                _unit_spike(by_unit[q], u, Dc, g0, unit_group_offsets, group_times,
                            group_entry_offsets, ent_event, ent_tap, amps, KT, out_channel,
                            out_row, out_time, out_slope, out_wstart, grad, code, tau_m, tau_s,
                            tau_grad, max_dt_du, drop_nonpositive, recompute_slope, min_slope,
                            need_input, dKT, ent_dt, ent_da, flags)


@njit(cache=True, parallel=True)
def _entries_to_events(unit_entry_offsets, n_pos, ent_event, ent_dt, ent_da, d_times, d_amps):
    """d_times[m] += sum of the entries of event m (parallel over samples: the entries of a
    sample's units are contiguous and only hold that sample's events)."""
    n_samples = (unit_entry_offsets.size - 1) // n_pos
    for s in prange(n_samples):
        for e in range(unit_entry_offsets[s * n_pos], unit_entry_offsets[(s + 1) * n_pos]):
            m = ent_event[e]
            d_times[m] += ent_dt[e]
            d_amps[m] += ent_da[e]


# ----------------------------------------------------------------------------------
# compiled kernels: dense path backward
# ----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _dense_event_grads(event_group, event_neuron, event_amp, beta_t, gamma_t, K2, c_in, h, w, k,
                       stride, pad, ho, wo, d_times, d_amps):
    """Eq. 13 on the dense path: for kept event e (group g, input j),
    d_times[e] = a_e sum_(c, p reached) K[c, tap] beta[g, (c, p)] and
    d_amps[e] = sum K[c, tap] gamma[g, (c, p)] (beta_t, gamma_t: (n_groups, n_out))."""
    P = ho * wo
    hw = h * w
    c_out = K2.shape[0]
    for e in prange(event_group.size):
        g = event_group[e]
        j = event_neuron[e]
        ci = j // hw
        rem = j % hw
        y = rem // w
        x = rem % w
        ylo, yhi = _reach(y, k, stride, pad, ho)
        xlo, xhi = _reach(x, k, stride, pad, wo)
        bt = 0.0
        ba = 0.0
        bg = beta_t[g]
        gg = gamma_t[g]
        for oy in range(ylo, yhi + 1):
            dy = y + pad - oy * stride
            for ox in range(xlo, xhi + 1):
                dx = x + pad - ox * stride
                tap = (ci * k + dy) * k + dx
                p = oy * wo + ox
                for co in range(c_out):
                    kv = K2[co, tap]
                    bt += kv * bg[co * P + p]
                    ba += kv * gg[co * P + p]
        d_times[e] = bt * event_amp[e]
        d_amps[e] = ba


# ----------------------------------------------------------------------------------
# host side: convolution
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class UnitLists:
    """Sparse path: the time-ordered input lists of every unit u = s * n_pos + p.

    Attributes
    ----------
    unit_entry_offsets : int64 (n_units + 1,) — unit u owns entries [.., ..).
    unit_group_offsets : int64 (n_units + 1,) — unit u owns groups [.., ..).
    group_times : float64 (n_groups,) — distinct input times of each unit, increasing.
    group_entry_offsets : int64 (n_groups + 1,) — group g owns entries [.., ..).
    ent_event : int64 (n_entries,) — index of the entry's event in the input SpikeTrains.
    ent_tap : int32 (n_entries,) — (c_in * k + dy) * k + dx.
    amplitudes : float64 (n_in_events,) — the input amplitudes.
    event_times : float64 (n_in_events,) — the input times.
    """

    unit_entry_offsets: np.ndarray
    unit_group_offsets: np.ndarray
    group_times: np.ndarray
    group_entry_offsets: np.ndarray
    ent_event: np.ndarray
    ent_tap: np.ndarray
    amplitudes: np.ndarray
    event_times: np.ndarray

    @property
    def n_entries(self) -> int:
        return self.ent_event.size

    @property
    def max_groups(self) -> int:
        d = np.diff(self.unit_group_offsets)
        return int(d.max()) if d.size else 0


@dataclass(frozen=True, eq=False)
class ConvRecord:
    """What the reverse sweep of a convolution needs from its forward pass.

    Attributes
    ----------
    params, t_end, geometry
    weight : ndarray (C_out, C_in, k, k) — the effective kernel used.
    n_in_events : int
    outputs : SpikeTrains
    out_sample, out_row, out_wstart : int64 (n_spikes,) aligned with ``outputs``: sample,
        interval group and first window group (absolute indices into the path's groups).
    out_slope : float64 (n_spikes,) — u'(t_k).
    groups, currents, X, group_run, em, es, eps_l, deps_l : dense path only (else None),
        as in :class:`~eventsnn.engine.sweep.DenseRecord` (currents (n_runs, n_out),
        X (n_runs, n_in)).
    units : UnitLists or None — sparse path only.
    out_unit, out_channel : int64 (n_spikes,) or None — sparse path only.
    """

    params: NeuronParams
    t_end: float
    geometry: ConvGeometry
    weight: np.ndarray
    n_in_events: int
    outputs: SpikeTrains
    out_sample: np.ndarray
    out_row: np.ndarray
    out_wstart: np.ndarray
    out_slope: np.ndarray
    groups: EventGroups | None = None
    currents: np.ndarray | None = None
    X: np.ndarray | None = None
    group_run: np.ndarray | None = None
    em: np.ndarray | None = None
    es: np.ndarray | None = None
    eps_l: np.ndarray | None = None
    deps_l: np.ndarray | None = None
    units: UnitLists | None = None
    out_unit: np.ndarray | None = None
    out_channel: np.ndarray | None = None

    @property
    def dense(self) -> bool:
        return self.currents is not None


class ConvGrads(DenseGrads):
    """Result of :func:`conv_backward`: as :class:`~eventsnn.engine.sweep.DenseGrads`,
    with ``d_weight`` of shape (C_out, C_in, k, k) (dL/dK of the effective kernel)."""


def _chunks(n_units: int) -> np.ndarray:
    n = max(1, min(n_units, CHUNKS_PER_THREAD * numba.get_num_threads()))
    return np.linspace(0, n_units, n + 1).round().astype(np.int64)


def choose_path(inputs: SpikeTrains, geom: ConvGeometry, t_end: float) -> str:
    """"dense" when the input groups (distinct times per sample) reach on average at
    least ``CONV_DENSE_REACH`` of the output positions, else "sparse"."""
    counts = np.zeros((inputs.n_samples, 2), dtype=np.int64)
    _count_groups(inputs.times, inputs.offsets, float(t_end), counts)
    n_events, n_groups = int(counts[:, 0].sum()), int(counts[:, 1].sum())
    if not n_groups:
        return "sparse"
    side = -(-geom.k // geom.stride)  # ceil(k / stride): output rows reached by one input row
    reach = min(side * side, geom.n_pos)
    return "dense" if n_events * reach >= CONV_DENSE_REACH * n_groups * geom.n_pos else "sparse"


def _dense_conv_forward(inputs, K, geom, params, t_end, rtol, max_iter, scan=scan_groups):
    n_out = geom.n_out
    groups = group_events(inputs, t_end)
    Xu, group_run = group_inputs(groups, geom.n_in)
    n_runs = Xu.shape[0]
    cols = np.empty((n_runs, geom.n_pos, geom.n_taps))
    _im2col(Xu, *geom.scalars(), cols)
    K2 = K.reshape(geom.c_out, geom.n_taps)
    cur = cols.reshape(n_runs * geom.n_pos, geom.n_taps) @ K2.T          # (runs*P, C_out)
    currents = np.ascontiguousarray(cur.reshape(n_runs, geom.n_pos, geom.c_out).transpose(0, 2, 1)
                                    ).reshape(n_runs, n_out)
    sw = scan(groups, n_out, params, t_end, currents=currents, group_run=group_run, rtol=rtol,
              max_iter=max_iter)
    return ConvRecord(
        params=params, t_end=t_end, geometry=geom, weight=K, n_in_events=inputs.n_events,
        outputs=sw.outputs, out_sample=sw.out_sample, out_row=sw.out_row,
        out_wstart=sw.out_wstart, out_slope=sw.out_slope, groups=groups, currents=currents,
        X=Xu, group_run=group_run, em=sw.em, es=sw.es, eps_l=sw.eps_l, deps_l=sw.deps_l,
    )


def build_unit_lists(inputs: SpikeTrains, geom: ConvGeometry, t_end: float) -> UnitLists:
    """Scatter every kept input event (t <= t_end) to the output positions it reaches:
    the CSR lists of the sparse path, by count-then-fill (see the module docstring)."""
    S = inputs.n_samples
    U = S * geom.n_pos
    g = geom.scalars()
    t_end = float(t_end)
    unit_counts = np.zeros(U, dtype=np.int64)
    _count_entries(inputs.times, inputs.neurons, inputs.offsets, t_end, *g, unit_counts)
    unit_entry_offsets = csr_offsets(unit_counts)
    E = int(unit_entry_offsets[-1])
    ent_event = np.empty(E, dtype=np.int64)
    ent_tap = np.empty(E, dtype=np.int32)
    unit_groups = np.zeros(U, dtype=np.int64)
    _fill_entries(inputs.times, inputs.neurons, inputs.offsets, t_end, *g, unit_entry_offsets,
                  unit_entry_offsets[:-1].copy(), np.empty(U), ent_event, ent_tap, unit_groups)
    unit_group_offsets = csr_offsets(unit_groups)
    G = int(unit_group_offsets[-1])
    group_times = np.empty(G)
    group_entry_offsets = np.empty(G + 1, dtype=np.int64)
    _fill_unit_groups(inputs.times, unit_entry_offsets, unit_group_offsets, ent_event, group_times,
                      group_entry_offsets)
    return UnitLists(unit_entry_offsets, unit_group_offsets, group_times, group_entry_offsets,
                     ent_event, ent_tap, inputs.amplitudes, inputs.times)


def _scan_units_host(ul: UnitLists, KT, params, t_end, rtol, max_iter, block=SCAN_BLOCK):
    """Sweep every unit's C_out neurons through its groups: ``block`` groups at a time
    (the compiled ``_scan_units_blocked``), or group by group (``_scan_units``) with
    ``block=0`` or when e^{t_end/tau} could overflow.

    Returns (cap_offsets, counts, o_row, o_chan, o_time, o_slope, o_wstart): unit u's
    spikes are the first counts[u] slots from cap_offsets[u], with the channel and
    unit-relative rows / window starts. Planned buffers; a unit that emits more spikes is
    re-run alone with an exact one (:func:`~eventsnn.engine.sweep.run_planned`; never
    truncated).
    """
    U = ul.unit_group_offsets.size - 1
    c_out = KT.shape[1]
    nc = _chunks(U).size - 1  # the most chunks of any run (a re-run has fewer units)
    blocked = BlockedScan.plan(nc, c_out, block, ul.amplitudes, ul.event_times, params, t_end)
    if blocked is None:
        mg = max(ul.max_groups, 1)
        work = (np.zeros((nc, c_out)), np.zeros((nc, c_out)), np.zeros((nc, c_out), dtype=np.bool_),
                np.zeros((nc, c_out), dtype=np.int64), np.zeros((nc, c_out), dtype=np.bool_),
                *(np.empty((nc, mg)) for _ in range(5)))

    def run(units, cap_offsets, counts, buffers):
        chunk_units = _chunks(units.size)
        if blocked is not None:
            blocked.run(units, chunk_units, ul.unit_group_offsets, ul.group_times,
                        ul.group_entry_offsets, ul.ent_event, ul.ent_tap, KT, params, t_end, rtol,
                        max_iter, cap_offsets, counts, *buffers)
        else:
            _scan_units(units, chunk_units, ul.unit_group_offsets, ul.group_times,
                        ul.group_entry_offsets, ul.ent_event, ul.ent_tap, ul.amplitudes, KT,
                        params.tau_m, params.tau_s, params.threshold, t_end, rtol, max_iter, *work,
                        cap_offsets, counts, *buffers)

    caps = np.minimum(np.diff(ul.unit_group_offsets), PLANNED_SPIKES_PER_NEURON) * c_out
    cap_offsets, counts, buffers = run_planned(run, caps)
    return (cap_offsets, counts) + tuple(buffers)


def _sparse_conv_forward(inputs, K, geom, params, t_end, rtol, max_iter, scan_units=_scan_units_host):
    S = inputs.n_samples
    P = geom.n_pos
    U = S * P
    if inputs.n_events and inputs.times.min() < 0.0:
        raise ValueError("input event times must be >= 0 (the simulation window starts at 0)")
    ul = build_unit_lists(inputs, geom, t_end)
    KT = np.ascontiguousarray(K.reshape(geom.c_out, geom.n_taps).T)
    cap_offsets, counts, o_row, o_chan, o_time, o_slope, o_wstart = scan_units(
        ul, KT, params, t_end, rtol, max_iter)
    n_spk = int(counts.sum())
    unit, slot = collect_slots(counts, cap_offsets)
    chan, times = take((o_chan, o_time), slot)
    neuron = chan * P + unit % P
    sample = unit // P
    offsets = offsets_of(sample, S)  # units, hence samples, in order
    order = order_by_time(offsets, times, neuron)
    slot, unit, chan, neuron, sample, times = take((slot, unit, chan, neuron, sample, times), order)
    row, wstart, slope = take((o_row, o_wstart, o_slope), slot)
    g0 = ul.unit_group_offsets[unit]
    outputs = SpikeTrains(times, neuron, np.ones(n_spk), offsets, geom.n_out)
    return ConvRecord(
        params=params, t_end=t_end, geometry=geom, weight=K, n_in_events=inputs.n_events,
        outputs=outputs, out_sample=sample, out_row=row + g0, out_wstart=wstart + g0,
        out_slope=slope, units=ul, out_unit=unit, out_channel=chan,
    )


def conv_forward(inputs: SpikeTrains, weight, geometry: ConvGeometry, params: NeuronParams,
                 t_end: float, *, path: str = "auto", rtol: float = CROSSING_RTOL,
                 max_iter: int = CROSSING_MAX_ITER):
    """Exact forward of a convolution of SRM neurons over a batch.

    Parameters
    ----------
    inputs : SpikeTrains
        Input events, ``n_neurons = C_in H W`` (flattened row-major), times >= 0.
    weight : array_like float64, shape (C_out, C_in, k, k)
        Effective kernel (efficacy of an event = K[c, c_in, dy, dx] a_m).
    geometry : ConvGeometry
    params : NeuronParams
    t_end : float
        End of the simulation window (0, t_end]; later events are ignored.
    path : {"auto", "dense", "sparse"}
        Computation of the currents (same result): BLAS on distinct group rows
        or per-position event lists (see the module docstring). "auto" chooses
        with :func:`choose_path`; forcing "dense" on spikes at distinct times
        costs (distinct times) x (C_in H W) memory.
    rtol, max_iter : crossing-solver tolerance and iteration limit.

    Returns
    -------
    outputs : SpikeTrains
        Output spikes (amplitude 1), ``n_neurons = C_out H_out W_out``, sorted per
        sample by time then neuron.
    record : ConvRecord
    """
    return _conv_forward_with(scan_groups, _scan_units_host, inputs, weight, geometry, params,
                              t_end, path, rtol, max_iter)


def _conv_forward_with(scan, scan_units, inputs, weight, geometry, params, t_end, path, rtol,
                       max_iter):
    """:func:`conv_forward` with the sweeps ``scan`` (dense path, signature of
    :func:`~eventsnn.engine.sweep.scan_groups`) and ``scan_units`` (sparse path, signature
    of :func:`_scan_units_host`) of a backend."""
    t_end = float(t_end)
    if not math.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"t_end must be a finite positive number, got {t_end}")
    geom = geometry
    if inputs.n_neurons != geom.n_in:
        raise ValueError(f"convolution expects {geom.n_in} inputs {geom.in_shape}, "
                         f"got events from {inputs.n_neurons} neurons")
    K = check_conv_weight(weight, geom)
    if path == "auto":
        path = choose_path(inputs, geom, t_end)
    if path == "dense":
        rec = _dense_conv_forward(inputs, K, geom, params, t_end, float(rtol), int(max_iter), scan)
    elif path == "sparse":
        rec = _sparse_conv_forward(inputs, K, geom, params, t_end, float(rtol), int(max_iter),
                                   scan_units)
    else:
        raise ValueError(f"path must be 'auto', 'dense' or 'sparse', got {path!r}")
    return rec.outputs, rec


def _dense_conv_backward(record, gp, grad, forced, cap, need_input_grad, dense_path):
    geom = record.geometry
    g = record.groups
    n_out = geom.n_out
    eg = np.exp(-g.interval_len / gp.tau_grad)
    real = (record.out_sample, record.outputs.neurons, record.outputs.times, record.out_slope,
            record.out_row, record.out_wstart)
    kept, real, grad, forced = with_gradient(record.outputs.n_samples, record.out_sample, real, grad,
                                             forced)
    currents_t = np.ascontiguousarray(record.currents.T)
    n_runs = record.X.shape[0]
    gamma_run = np.zeros((n_out, n_runs))
    need_groups = bool(need_input_grad and g.keep.size)
    shape = (n_out, g.n_groups) if need_groups else (1, 1)
    beta_g = np.zeros(shape)
    gamma_g = np.zeros(shape)
    flags = all_flags(kept, dense_path(record, gp, real, grad, False, 0.0, cap, eg, currents_t,
                                       need_groups, gamma_run, beta_g, gamma_g),
                      record.outputs.n_events)
    if forced is not None and forced.times.size:
        smp, nrn, tms, fgrad, rows, wstart = _forced_spike_list(record, forced)
        dense_path(record, gp, (smp, nrn, tms, np.ones(tms.size), rows, wstart), fgrad, True,
                   1.0 / forced.max_dt_du, forced.max_dt_du, eg, currents_t, need_groups,
                   gamma_run, beta_g, gamma_g)
    cols = np.empty((n_runs, geom.n_pos, geom.n_taps))
    _im2col(record.X, *geom.scalars(), cols)
    gam = gamma_run.reshape(geom.c_out, geom.n_pos, n_runs).transpose(0, 2, 1).reshape(geom.c_out, -1)
    d_weight = (gam @ cols.reshape(n_runs * geom.n_pos, geom.n_taps)).reshape(geom.weight_shape)
    d_times_k = np.zeros(g.keep.size)
    d_amps_k = np.zeros(g.keep.size)
    if need_groups:
        _dense_event_grads(g.event_group, g.event_neuron, g.event_amp,
                           np.ascontiguousarray(beta_g.T), np.ascontiguousarray(gamma_g.T),
                           record.weight.reshape(geom.c_out, geom.n_taps), *geom.scalars(),
                           d_times_k, d_amps_k)
    d_times = np.zeros(record.n_in_events)
    d_amps = np.zeros(record.n_in_events)
    if need_input_grad:
        d_times[g.keep] = gp.input_grad_scale * d_times_k
        d_amps[g.keep] = d_amps_k
    return ConvGrads(d_times=d_times, d_amplitudes=d_amps, d_weight=d_weight, flags=flags)


def _sparse_forced(record, forced):
    """Forced spikes of a sparse-path record with a non-empty window:
    (unit, channel, time, grad, row, wstart) with absolute rows."""
    geom = record.geometry
    ul = record.units
    P = geom.n_pos
    U = ul.unit_group_offsets.size - 1
    smp = np.ascontiguousarray(forced.samples, dtype=np.int64)
    nrn = np.ascontiguousarray(forced.neurons, dtype=np.int64)
    tms = np.ascontiguousarray(forced.times, dtype=np.float64)
    grd = np.ascontiguousarray(forced.grads, dtype=np.float64)
    units = smp * P + nrn % P
    chans = nrn // P
    spike_offsets, by_unit = _by_neuron(record.out_unit, U)
    rows = np.full(tms.size, -1, dtype=np.int64)
    wstart = np.zeros(tms.size, dtype=np.int64)
    _forced_windows_kernel(ul.group_times, ul.unit_group_offsets, spike_offsets,
                           record.outputs.times[by_unit], record.out_channel[by_unit], units,
                           chans, tms, rows, wstart)
    ok = np.flatnonzero(rows >= 0)
    return units[ok], chans[ok], tms[ok], grd[ok], rows[ok], wstart[ok]


def _backward_units_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, need_input,
                         KT, dKT_c, ent_dt, ent_da):
    """Sparse-path window walks of ``spikes`` = (unit, channel, time, slope, row, wstart)
    (the compiled ``_backward_units``): Eq. 14 into the per-chunk ``dKT_c`` (n_chunks,
    n_taps, C_out), Eq. 13 into the per-entry ``ent_dt`` / ``ent_da``. Returns the flags."""
    units, chans, tms, slope, rows, wstart = spikes
    ul = record.units
    p = record.params
    U = ul.unit_group_offsets.size - 1
    flags = np.zeros(tms.size, dtype=np.int8)
    if tms.size and U:
        chunk_units = _chunks(U)
        mg = max(ul.max_groups, 1)
        dec_w = np.empty((chunk_units.size - 1, 3, mg))
        spike_offsets, by_unit = _by_neuron(units, U)
        _backward_units(chunk_units, spike_offsets, by_unit, ul.unit_group_offsets, ul.group_times,
                        ul.group_entry_offsets, ul.ent_event, ul.ent_tap, ul.amplitudes, KT,
                        record.t_end, chans, rows, tms, slope, wstart, grad, gp.code, p.tau_m,
                        p.tau_s, gp.tau_grad, max_dt_du, gp.drop_nonpositive, recompute, min_slope,
                        bool(need_input), dec_w, dKT_c, ent_dt, ent_da, flags)
    return flags


def _sparse_conv_backward(record, gp, grad, forced, cap, need_input_grad, units_path):
    geom = record.geometry
    ul = record.units
    U = ul.unit_group_offsets.size - 1
    KT = np.ascontiguousarray(record.weight.reshape(geom.c_out, geom.n_taps).T)
    dKT_c = np.zeros((_chunks(U).size - 1, geom.n_taps, geom.c_out))
    E = ul.n_entries if need_input_grad else 0
    ent_dt = np.zeros(E)
    ent_da = np.zeros(E)
    real = (record.out_unit, record.out_channel, record.outputs.times, record.out_slope,
            record.out_row, record.out_wstart)
    # whole samples, hence whole units: the walks of the other units do not change
    kept, real, grad, forced = with_gradient(record.outputs.n_samples, record.out_sample, real, grad,
                                             forced)
    flags = all_flags(kept, units_path(record, gp, real, grad, False, 0.0, cap, need_input_grad, KT,
                                       dKT_c, ent_dt, ent_da), record.outputs.n_events)
    if forced is not None and forced.times.size:
        units, chans, tms, fgrad, rows, wstart = _sparse_forced(record, forced)
        units_path(record, gp, (units, chans, tms, np.ones(tms.size), rows, wstart), fgrad, True,
                   1.0 / forced.max_dt_du, forced.max_dt_du, need_input_grad, KT, dKT_c, ent_dt,
                   ent_da)
    d_weight = np.ascontiguousarray(dKT_c.sum(axis=0).T).reshape(geom.weight_shape)
    d_times = np.zeros(record.n_in_events)
    d_amps = np.zeros(record.n_in_events)
    if need_input_grad and E:
        _entries_to_events(ul.unit_entry_offsets, geom.n_pos, ul.ent_event, ent_dt, ent_da,
                           d_times, d_amps)
        d_times *= gp.input_grad_scale
    return ConvGrads(d_times=d_times, d_amplitudes=d_amps, d_weight=d_weight, flags=flags)


def _check_forced(forced: ForcedSpikes, record) -> None:
    n = forced.times.size
    for name in ("samples", "neurons", "grads"):
        if getattr(forced, name).size != n:
            raise ValueError(f"forced.{name} must have one entry per forced spike ({n})")
    if n:
        smp, nrn = forced.samples, forced.neurons
        if smp.min() < 0 or smp.max() >= record.outputs.n_samples:
            raise ValueError("forced.samples out of range")
        if nrn.min() < 0 or nrn.max() >= record.geometry.n_out:
            raise ValueError("forced.neurons out of range")


def conv_backward(record: ConvRecord, grad_out, grad_params: GradParams | None = None, *,
                  need_input_grad: bool = True, forced: ForcedSpikes | None = None) -> ConvGrads:
    """Reverse-time backward of a convolution (Eqs. 12-14, weight sharing).

    Parameters
    ----------
    record : ConvRecord
        From :func:`conv_forward`.
    grad_out : array_like float64, shape (n_spikes,)
        G_k = dL/dt_k of every output spike, aligned with ``record.outputs``.
    grad_params : GradParams, optional
        Kernel h and stabilisers (default: "exp", tau_grad 2.5, no stabiliser).
    need_input_grad : bool
        Compute ``d_times`` / ``d_amplitudes`` (skip for the first layer).
    forced : ForcedSpikes, optional
        Supervisory spikes (as for the dense layer).

    Returns
    -------
    ConvGrads
        ``d_weight`` (C_out, C_in, k, k) = dL/dK summed over all output positions.
    """
    # sparse path: the channel-parallel unit walks (imported here: that module builds on
    # this one; _backward_units_path stays the reference and the GPU engine's source)
    from .unit_backward import backward_units_path

    return _conv_backward_with(_backward_dense_path, backward_units_path, record, grad_out,
                               grad_params, need_input_grad, forced)


def _conv_backward_with(dense_path, units_path, record, grad_out, grad_params, need_input_grad,
                        forced):
    """:func:`conv_backward` with the window walks of a backend: ``dense_path`` (signature of
    :func:`~eventsnn.engine.sweep._backward_dense_path`) and ``units_path`` (of
    :func:`_backward_units_path`)."""
    gp = grad_params if grad_params is not None else GradParams()
    grad = np.ascontiguousarray(grad_out, dtype=np.float64).reshape(-1)
    if grad.size != record.outputs.n_events:
        raise ValueError(f"grad_out must have one entry per output spike "
                         f"({record.outputs.n_events}), got {grad.size}")
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_out contains NaN or inf")
    if forced is not None:  # its arrays are contiguous 1-D of their dtype (ForcedSpikes)
        _check_forced(forced, record)
    cap = gp.max_dt_du if gp.max_dt_du is not None else -1.0
    if record.dense:
        return _dense_conv_backward(record, gp, grad, forced, cap, need_input_grad, dense_path)
    return _sparse_conv_backward(record, gp, grad, forced, cap, need_input_grad, units_path)


# ----------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _pool_kernel(times, neurons, amps, offsets, c, h, w, k, ho, wo, is_max, keys, o_time,
                 o_neuron, o_amp, o_count, pool_of, counts):
    """One pooled event per (window, distinct time) of every sample (parallel over
    samples). Sample s writes its pooled events to slots offsets[s] + 0, 1, ... (at
    most one per input event), sorted by time then pooled neuron; ``pool_of[m]`` is
    the slot of input event m (-1: dropped remainder). ``o_amp``: the largest
    amplitude (max) or the sum of the amplitudes (avg, divided by k^2 by the host).
    ``keys``: workspace of the size of the input."""
    hw = h * w
    P = ho * wo
    for s in prange(offsets.size - 1):
        a0 = offsets[s]
        a1 = offsets[s + 1]
        n = 0
        m = a0
        while m < a1:
            t = times[m]
            b = m + 1
            while b < a1 and times[b] == t:
                b += 1
            span = b - m
            nk = 0
            for q in range(m, b):
                j = neurons[q]
                ci = j // hw
                rem = j % hw
                oy = (rem // w) // k
                ox = (rem % w) // k
                if oy >= ho or ox >= wo:
                    pool_of[q] = -1
                    continue
                keys[m + nk] = (ci * P + oy * wo + ox) * span + (q - m)
                nk += 1
            if nk > 1:
                keys[m:m + nk].sort()
            last = -1
            slot = -1
            for r in range(m, m + nk):
                o = keys[r] // span
                q = m + keys[r] % span
                if o != last:
                    slot = a0 + n
                    n += 1
                    last = o
                    o_time[slot] = t
                    o_neuron[slot] = o
                    o_amp[slot] = amps[q]
                    o_count[slot] = 1
                else:
                    o_count[slot] += 1
                    if is_max:
                        o_amp[slot] = max(o_amp[slot], amps[q])
                    else:
                        o_amp[slot] += amps[q]
                pool_of[q] = slot
            m = b
        counts[s] = n


@dataclass(frozen=True)
class PoolGeometry:
    """Non-overlapping k x k pooling of an input (c, h, w) -> (c, h // k, w // k)."""

    c: int
    h: int
    w: int
    k: int

    def __post_init__(self):
        for name in ("c", "h", "w", "k"):
            v = getattr(self, name)
            if int(v) != v or int(v) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.h < self.k or self.w < self.k:
            raise ValueError(f"a {self.k}x{self.k} pooling does not fit the input {self.in_shape}")

    @property
    def in_shape(self) -> tuple:
        return (self.c, self.h, self.w)

    @property
    def out_shape(self) -> tuple:
        return (self.c, self.h // self.k, self.w // self.k)

    @property
    def n_in(self) -> int:
        return self.c * self.h * self.w

    @property
    def n_out(self) -> int:
        return self.c * (self.h // self.k) * (self.w // self.k)


@dataclass(frozen=True, eq=False)
class PoolRecord:
    """Forward state of a pooling: ``pool_of[m]`` the pooled event of input event m
    (-1: dropped remainder), ``count`` the coincident inputs of each pooled event."""

    kind: str
    geometry: PoolGeometry
    outputs: SpikeTrains
    pool_of: np.ndarray
    count: np.ndarray


@dataclass(frozen=True, eq=False)
class PoolGrads:
    """Result of :func:`pool_backward`: ``d_times`` (n_in_events,), ``d_amplitudes``
    (zeros: pooling propagates time gradients only), ``flags`` (empty: no windows)."""

    d_times: np.ndarray
    d_amplitudes: np.ndarray
    flags: np.ndarray

    n_dropped = 0
    n_nonpositive = 0
    n_clamped = 0


def check_pool_inputs(inputs: SpikeTrains, geometry: PoolGeometry, kind: str) -> PoolGeometry:
    """Validate a pooling's rule and input size (ValueError naming the problem); returns the geometry."""
    if kind not in POOL_KINDS:
        raise ValueError(f"pooling kind must be one of {POOL_KINDS}, got {kind!r}")
    if inputs.n_neurons != geometry.n_in:
        raise ValueError(f"pooling expects {geometry.n_in} inputs {geometry.in_shape}, "
                         f"got events from {inputs.n_neurons} neurons")
    return geometry


def pool_forward(inputs: SpikeTrains, geometry: PoolGeometry, kind: str):
    """Continuous-time pooling (see the module docstring for the rule).

    Returns
    -------
    outputs : SpikeTrains — pooled events, ``n_neurons = C (H//k) (W//k)``.
    record : PoolRecord
    """
    geom = check_pool_inputs(inputs, geometry, kind)
    n = inputs.n_events
    S = inputs.n_samples
    _, ho, wo = geom.out_shape
    keys = np.empty(n, dtype=np.int64)
    o_time, o_amp = np.empty(n), np.empty(n)
    o_neuron, o_count = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    pool_of = np.empty(n, dtype=np.int64)
    counts = np.zeros(S, dtype=np.int64)
    _pool_kernel(inputs.times, inputs.neurons, inputs.amplitudes, inputs.offsets, geom.c, geom.h,
                 geom.w, geom.k, ho, wo, kind == "max", keys, o_time, o_neuron, o_amp, o_count,
                 pool_of, counts)
    n_out = int(counts.sum())
    smp = np.repeat(np.arange(S, dtype=np.int64), counts)
    offsets = csr_offsets(counts)
    slot = inputs.offsets[smp] + (np.arange(n_out, dtype=np.int64) - offsets[smp])
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[slot] = np.arange(n_out, dtype=np.int64)
    valid = pool_of >= 0
    pool_of = np.where(valid, new_index[np.where(valid, pool_of, 0)], -1)
    amp = o_amp[slot] if kind == "max" else o_amp[slot] / (geom.k * geom.k)
    outputs = SpikeTrains(o_time[slot], o_neuron[slot], amp, offsets, geom.n_out)
    return outputs, PoolRecord(kind, geom, outputs, pool_of, o_count[slot])


def pool_backward(record: PoolRecord, grad_out) -> PoolGrads:
    """dL/dt of the input events: g/n (max, adjusted-avg) or g/k^2 (avg) from the
    pooled event each input event fed (see the module docstring)."""
    grad = np.ascontiguousarray(grad_out, dtype=np.float64).reshape(-1)
    if grad.size != record.outputs.n_events:
        raise ValueError(f"grad_out must have one entry per pooled event "
                         f"({record.outputs.n_events}), got {grad.size}")
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_out contains NaN or inf")
    d_times = np.zeros(record.pool_of.size)
    valid = record.pool_of >= 0
    src = record.pool_of[valid]
    if record.kind == "avg":
        k2 = record.geometry.k * record.geometry.k
        d_times[valid] = grad[src] / k2
    else:
        d_times[valid] = grad[src] / record.count[src]
    return PoolGrads(d_times=d_times, d_amplitudes=np.zeros(record.pool_of.size),
                     flags=np.zeros(0, dtype=np.int8))
