"""GPU engine: Numba CUDA kernels for the dense and convolution layers, forward and backward.

Imported lazily (only when a layer runs with ``device == "cuda"``); importing
:mod:`eventsnn` never imports ``numba.cuda``. Select it with
:func:`eventsnn.device.set_device` or ``--device cuda``.

What runs where
---------------
The host prepares the batch exactly as the CPU engine does, with the same
compiled CPU routines: events grouped by distinct time
(:func:`~eventsnn.engine.sweep.group_events`), the dense path's input currents
(BLAS on the distinct group rows, im2col for a convolution), the sparse
convolution's per-position event lists
(:func:`~eventsnn.engine.conv.build_unit_lists`), the forced-spike windows,
the final BLAS contractions of the dense-path backward, and pooling (a cheap
re-labelling of events, :mod:`eventsnn.engine.conv`). The GPU runs the
expensive part, the exact sweeps and the reverse-time window walks, batched
across samples and neurons:

* forward (Eqs. 1-3), one thread per (sample, neuron) of a dense layer or of a
  convolution on the dense path, one thread per (sample, output position,
  channel) on the sparse convolution path: the thread walks its input groups
  in time order (adding ``currents[run, i]``, or ``a_m W[i, j_m]`` event by
  event, or ``a_m K[c, tap]`` entry by entry), screens each interval, solves
  the exact crossing and resets, with the CPU engine's scalar routines;
* backward (Eqs. 12-14), one thread per output (or forced) spike: the window's
  Eq. 12 denominator and u'(t_k), the stabilisers, then the shares G h / D and
  G (-1/u') eps scattered with float64 atomic adds (``cuda.atomic.add``) into
  the same accumulators as the CPU engine (per-run / per-group factors of the
  dense path, dL/dW and per-event gradients of the sparse path, dL/dK and
  per-entry gradients of the sparse convolution).

One source, two backends
------------------------
Every scalar routine (crossing solver, interval screen and update, window
ends, the h weights of Eq. 12, the stabilisers, the per-spike window walks) is
the *same Python source* as the CPU engine's ``njit(cache=True)`` routine,
compiled a second time with ``numba.cuda.jit(device=True)`` by
:func:`eventsnn.crossing.compile_family`; the only substitution is the
accumulation ``a[i] += v`` (CPU: threads own disjoint rows) by an atomic add
(GPU: many spikes write one entry). The backends cannot drift.

Buffers
-------
Kernels take arrays and scalars only and allocate nothing. Each forward
thread owns a planned region of the spike buffers (``min(groups, 4)`` spikes;
a neuron spikes at most once per interval); a thread that emits more counts
on without writing, and the host re-runs the layer with exact sizes (never
truncates). Spikes come back in the CPU engine's order (per sample by time,
then neuron) and the records are the CPU engine's dataclasses
(:class:`~eventsnn.engine.sweep.DenseRecord`,
:class:`~eventsnn.engine.conv.ConvRecord`) holding host arrays, so the
backward, the diagnostics and ``last_rise_times`` work unchanged on either
backend; the device copies made by the forward are kept for the backward of
the same record (a weak cache, freed with the record).

Precision: float64 throughout. Under the CUDA simulator the arithmetic is the
CPU's; on a GPU, libdevice's exp/expm1 and fused multiply-adds may differ from
the CPU's in the last bits, and atomic adds sum in another order: the tests
require spike times within 1e-12 and gradients within 1e-10 of the CPU engine.
"""

from __future__ import annotations

import weakref

import numpy as np
from numba import cuda

from ..crossing import CROSSING_MAX_ITER, CROSSING_RTOL, SCALAR_ROUTINES, compile_family
from ..spikes import SpikeTrains, csr_offsets, offsets_of
from . import conv as _conv
from . import sweep as _sweep
from .sweep import PLANNED_SPIKES_PER_NEURON, Sweep, interval_decays

#: Threads per block of every kernel (tests lower it to force multi-block launches).
THREADS_PER_BLOCK = 128


@cuda.jit(device=True)
def _atomic_add1(a, i, v):
    cuda.atomic.add(a, i, v)


@cuda.jit(device=True)
def _atomic_add2(a, i, j, v):
    cuda.atomic.add(a, (i, j), v)


#: The CPU routines compiled once more as device functions (same source).
GPU_ROUTINES = SCALAR_ROUTINES + (
    _sweep._group_step, _sweep._window_end, _sweep._window_open, _sweep._spike_window, _sweep._step_back, _sweep._hval,
    _sweep._spike_factors, _sweep._dense_spike,
    _sweep._sparse_spike_factors, _sweep._sparse_spike_scatter, _sweep._unit_intervals,
    _conv._unit_decays, _conv._unit_spike,
)
_DEV = compile_family(GPU_ROUTINES, cuda.jit(device=True),
                      overrides={"_acc1": _atomic_add1, "_acc2": _atomic_add2})
_screen = _DEV["_screen"]
_interval_spike = _DEV["_interval_spike"]
_advance = _DEV["_advance"]
_du = _DEV["_du"]
_group_step = _DEV["_group_step"]
_dense_spike = _DEV["_dense_spike"]
_sparse_spike_factors = _DEV["_sparse_spike_factors"]
_sparse_spike_scatter = _DEV["_sparse_spike_scatter"]
_unit_intervals = _DEV["_unit_intervals"]
_unit_decays = _DEV["_unit_decays"]
_unit_spike = _DEV["_unit_spike"]


# ----------------------------------------------------------------------------------
# forward kernels
# ----------------------------------------------------------------------------------
@cuda.jit(device=True)
def _region(q, per, group_offsets, cap_offsets):
    """Thread q = outer * per + inner: (outer, inner, its first and end group, the start
    and capacity of its region of the spike buffers)."""
    outer = q // per
    base = cap_offsets[q]
    return (outer, q - outer * per, group_offsets[outer], group_offsets[outer + 1], base,
            cap_offsets[q + 1] - base)


@cuda.jit
def _scan_kernel(items, dense, n_out, group_times, group_offsets, interval_len, em, es, eps_l, deps_l,
                 currents, group_run, group_event_offsets, event_neuron, event_amp, WT, tau_m,
                 tau_s, theta, t_end, rtol, max_iter, cap_offsets, counts, o_row, o_time, o_slope,
                 o_wstart):
    """Thread (s, i) = sample s, neuron i (index s * n_out + i) sweeps its groups; the
    input of group g is ``currents[group_run[g], i]`` (``dense``) or the events'
    ``a_m WT[j_m, i]``. Writes its spikes from ``cap_offsets[thread]`` and its count.
    Launched over the threads ``items`` (int64 thread indices)."""
    p = cuda.grid(1)
    if p >= items.size:
        return
    q = items[p]
    s, i, g0, g1, base, cap = _region(q, n_out, group_offsets, cap_offsets)
    v, r, skip, ws, n = 0.0, 0.0, False, g0, 0
    for g in range(g0, g1):
        if dense:
            r += currents[group_run[g], i]
        else:
            for m in range(group_event_offsets[g], group_event_offsets[g + 1]):
                r += event_amp[m] * WT[event_neuron[m], i]
        has_next = g + 1 < g1
        t_next = group_times[g + 1] if has_next else t_end
        v, r, skip, ws, n = _group_step(v, r, skip, ws, n, g, group_times[g], t_next, has_next,
                                        interval_len[g], em[g], es[g], eps_l[g], deps_l[g], tau_m,
                                        tau_s, theta, rtol, max_iter, base, cap, o_row, o_time,
                                        o_slope, o_wstart)
    counts[q] = n


@cuda.jit
def _unit_intervals_kernel(unit_group_offsets, group_times, t_end, tau_m, tau_s, ilen, em, es,
                           eps_l, deps_l):
    """Thread u: interval lengths and decay factors of unit u's groups (absolute index)."""
    u = cuda.grid(1)
    if u >= unit_group_offsets.size - 1:
        return
    g0 = unit_group_offsets[u]
    g1 = unit_group_offsets[u + 1]
    _unit_intervals(group_times, g0, g1, t_end, tau_m, tau_s, ilen[g0:g1], em[g0:g1], es[g0:g1],
                    eps_l[g0:g1], deps_l[g0:g1])


@cuda.jit
def _scan_units_kernel(items, c_out, unit_group_offsets, group_times, group_entry_offsets, ent_event,
                       ent_tap, amps, KT, ilen, em, es, eps_l, deps_l, tau_m, tau_s, theta, t_end,
                       rtol, max_iter, cap_offsets, counts, o_row, o_time, o_slope, o_wstart):
    """Thread (u, c) = unit u (sample, output position), channel c (index u * c_out + c)
    sweeps the unit's groups, each entry adding ``a_m K[c, tap]``. Rows and window starts
    are unit-relative, as in the CPU engine. Launched over the threads ``items``."""
    p = cuda.grid(1)
    if p >= items.size:
        return
    q = items[p]
    u, c, g0, g1, base, cap = _region(q, c_out, unit_group_offsets, cap_offsets)
    v, r, skip, ws, n = 0.0, 0.0, False, 0, 0
    for g in range(g0, g1):
        for e in range(group_entry_offsets[g], group_entry_offsets[g + 1]):
            r += amps[ent_event[e]] * KT[ent_tap[e], c]
        has_next = g + 1 < g1
        t_next = group_times[g + 1] if has_next else t_end
        v, r, skip, ws, n = _group_step(v, r, skip, ws, n, g - g0, group_times[g], t_next,
                                        has_next, ilen[g], em[g], es[g], eps_l[g], deps_l[g],
                                        tau_m, tau_s, theta, rtol, max_iter, base, cap, o_row,
                                        o_time, o_slope, o_wstart)
    counts[q] = n


# ----------------------------------------------------------------------------------
# backward kernels (one thread per spike)
# ----------------------------------------------------------------------------------
@cuda.jit
def _backward_dense_kernel(group_times, group_offsets, em, es, eg, currents_t, group_run,
                           out_neuron, out_sample, out_row, out_time, out_slope, out_wstart, grad,
                           code, tau_m, tau_s, tau_grad, max_dt_du, drop_nonpositive,
                           recompute_slope, min_slope, need_groups, gamma_run, beta_g, gamma_g,
                           flags):
    k = cuda.grid(1)
    if k < flags.size:
        i = out_neuron[k]
        _dense_spike(k, i, currents_t[i], group_times, group_offsets, em, es, eg, group_run,
                     out_sample, out_row, out_time, out_slope, out_wstart, grad, code, tau_m, tau_s,
                     tau_grad, max_dt_du, drop_nonpositive, recompute_slope, min_slope,
                     need_groups, gamma_run, beta_g, gamma_g, flags)


@cuda.jit
def _backward_sparse_kernel(group_times, group_offsets, group_event_offsets, event_neuron,
                            event_amp, em, es, eg, W, out_neuron, out_sample, out_row, out_time,
                            out_slope, out_wstart, grad, code, tau_m, tau_s, tau_grad, max_dt_du,
                            drop_nonpositive, recompute_slope, min_slope, need_input, dW, d_times,
                            d_amps, flags):
    k = cuda.grid(1)
    if k >= flags.size:
        return
    i = out_neuron[k]
    Wi = W[i]
    share, wgt = _sparse_spike_factors(k, Wi, group_times, group_offsets, group_event_offsets,
                                       event_neuron, event_amp, em, es, eg, out_sample, out_row,
                                       out_time, out_slope, out_wstart, grad, code, tau_m, tau_s,
                                       tau_grad, max_dt_du, drop_nonpositive, recompute_slope,
                                       min_slope, flags)
    do_weight = wgt != 0.0
    do_input = need_input and (share != 0.0 or wgt != 0.0)
    if do_weight or do_input:
        _sparse_spike_scatter(out_sample[k], i, Wi, out_time[k], out_row[k], out_wstart[k], share,
                              wgt, do_weight, do_input, group_times, group_offsets,
                              group_event_offsets, event_neuron, event_amp, em, es, eg, code,
                              tau_m, tau_s, tau_grad, dW, d_times, d_amps)


@cuda.jit
def _unit_decays_kernel(unit_group_offsets, group_times, t_end, tau_m, tau_s, tau_grad, decays):
    """Thread u: exp(-L/tau_m), exp(-L/tau_s), exp(-L/tau_grad) of unit u's intervals,
    in columns g of ``decays`` (3, n_groups)."""
    u = cuda.grid(1)
    if u >= unit_group_offsets.size - 1:
        return
    g1 = unit_group_offsets[u + 1]
    for g in range(unit_group_offsets[u], g1):
        decays[0, g], decays[1, g], decays[2, g] = _unit_decays(group_times, g, g1, t_end, tau_m,
                                                                tau_s, tau_grad)


@cuda.jit
def _backward_units_kernel(out_unit, decays, unit_group_offsets, group_times,
                           group_entry_offsets, ent_event, ent_tap, amps, KT, out_channel, out_row,
                           out_time, out_slope, out_wstart, grad, code, tau_m, tau_s, tau_grad,
                           max_dt_du, drop_nonpositive, recompute_slope, min_slope, need_input, dKT,
                           ent_dt, ent_da, flags):
    kk = cuda.grid(1)
    if kk < flags.size:
        _unit_spike(kk, out_unit[kk], decays, 0, unit_group_offsets, group_times,
                    group_entry_offsets, ent_event, ent_tap, amps, KT, out_channel, out_row,
                    out_time, out_slope, out_wstart, grad, code, tau_m, tau_s, tau_grad, max_dt_du,
                    drop_nonpositive, recompute_slope, min_slope, need_input, dKT, ent_dt, ent_da,
                    flags)


# ----------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------
def _launch(kernel, n, *args):
    """Launch ``kernel`` over ``n`` threads (nothing when n = 0)."""
    if n:
        tpb = int(THREADS_PER_BLOCK)
        kernel[(n + tpb - 1) // tpb, tpb](*args)


#: Device copies of the arrays of a record (or of its groups / unit lists), made once
#: and kept while the record lives: the forward's uploads serve the backward.
_DEVICE_COPIES = weakref.WeakKeyDictionary()


def _on_device(owner, name, array):
    """The device copy of ``array``, cached under (``owner``, ``name``) while owner lives."""
    cache = _DEVICE_COPIES.setdefault(owner, {})
    d = cache.get(name)
    if d is None:
        d = cache[name] = cuda.to_device(np.ascontiguousarray(array))
    return d


def _placeholder(dtype=np.float64, ndim=1):
    """A one-element device array for an argument that the launch does not use."""
    return cuda.to_device(np.zeros((1,) * ndim, dtype=dtype))


def _host_buffers(total: int):
    """Host copies of a launch's spike buffers: o_row, o_time, o_slope, o_wstart."""
    return (np.empty(total, dtype=np.int64), np.empty(total), np.empty(total),
            np.empty(total, dtype=np.int64))


def _run_planned(launch, caps):
    """:func:`eventsnn.engine.sweep.run_planned` with per-thread capacities ``caps``, the
    sweeps being ``launch(n, d_items, d_cap_offsets, d_counts, *d_buffers)`` over the n
    threads ``d_items``: a thread that emitted more spikes than planned is launched again,
    alone, with an exact region.

    Returns (counts, cap_offsets, o_row, o_time, o_slope, o_wstart) on the host.
    """
    d_counts = cuda.to_device(np.zeros(caps.size, dtype=np.int64))

    def run(items, cap_offsets, counts, buffers):
        d_bufs = tuple(cuda.device_array(max(b.size, 1), b.dtype) for b in buffers)
        launch(items.size, cuda.to_device(items), cuda.to_device(cap_offsets), d_counts, *d_bufs)
        d_counts.copy_to_host(counts)
        for b, d in zip(buffers, d_bufs):
            if b.size:
                d.copy_to_host(b)

    cap_offsets, counts, buffers = _sweep.run_planned(run, caps, _host_buffers)
    return (counts, cap_offsets) + tuple(buffers)


def scan_groups(groups, n_out: int, params, t_end: float, *, currents=None, group_run=None,
                weight_t=None, rtol: float = CROSSING_RTOL, max_iter: int = CROSSING_MAX_ITER) -> Sweep:
    """GPU twin of :func:`eventsnn.engine.sweep.scan_groups` (same arguments and result):
    one thread per (sample, neuron)."""
    S = groups.group_offsets.size - 1
    dense = currents is not None
    em, es, eps_l, deps_l = interval_decays(groups, params)
    if dense:
        d_cur, d_run = cuda.to_device(currents), cuda.to_device(group_run)
        d_wt = _placeholder(ndim=2)
    else:
        d_cur, d_run = _placeholder(ndim=2), _placeholder(np.int64)
        d_wt = cuda.to_device(np.ascontiguousarray(weight_t))
    dev = {k: _on_device(groups, k, getattr(groups, k)) for k in (
        "group_times", "group_offsets", "interval_len", "group_event_offsets", "event_neuron",
        "event_amp")}
    d_em, d_es = cuda.to_device(em), cuda.to_device(es)
    d_eps, d_deps = cuda.to_device(eps_l), cuda.to_device(deps_l)
    caps = np.repeat(np.minimum(np.diff(groups.group_offsets), PLANNED_SPIKES_PER_NEURON), n_out)

    def launch(n, d_items, d_cap, d_counts, o_row, o_time, o_slope, o_wstart):
        _launch(_scan_kernel, n, d_items, bool(dense), int(n_out), dev["group_times"],
                dev["group_offsets"], dev["interval_len"], d_em, d_es, d_eps, d_deps, d_cur, d_run,
                dev["group_event_offsets"], dev["event_neuron"], dev["event_amp"], d_wt,
                params.tau_m, params.tau_s, params.threshold, float(t_end), float(rtol),
                int(max_iter), d_cap, d_counts, o_row, o_time, o_slope, o_wstart)

    counts, cap_offsets, o_row, o_time, o_slope, o_wstart = _run_planned(launch, caps)
    region, take = _sweep.collect_slots(counts, cap_offsets)
    sample, neuron, times = region // max(n_out, 1), region % max(n_out, 1), o_time[take]
    offsets = offsets_of(sample, S)  # threads in sample order
    order = _sweep.order_by_time(offsets, times, neuron)
    take, sample, neuron, times = take[order], sample[order], neuron[order], times[order]
    outputs = SpikeTrains(times, neuron, np.ones(times.size), offsets, n_out)
    return Sweep(outputs, sample, o_row[take], o_wstart[take], o_slope[take], em, es, eps_l, deps_l)


def scan_units(ul, KT, params, t_end, rtol, max_iter):
    """GPU twin of :func:`eventsnn.engine.conv._scan_units_host` (same arguments and
    result, the spikes compacted per unit): one thread per (unit, channel)."""
    U = ul.unit_group_offsets.size - 1
    c_out = KT.shape[1]
    G = ul.group_times.size
    dev = {k: _on_device(ul, k, getattr(ul, k)) for k in (
        "unit_group_offsets", "group_times", "group_entry_offsets", "ent_event", "ent_tap",
        "amplitudes")}
    d_kt = cuda.to_device(np.ascontiguousarray(KT))
    factors = [cuda.device_array(max(G, 1)) for _ in range(5)]
    _launch(_unit_intervals_kernel, U, dev["unit_group_offsets"], dev["group_times"], float(t_end),
            params.tau_m, params.tau_s, *factors)
    caps = np.repeat(np.minimum(np.diff(ul.unit_group_offsets), PLANNED_SPIKES_PER_NEURON), c_out)

    def launch(n, d_items, d_cap, d_counts, o_row, o_time, o_slope, o_wstart):
        _launch(_scan_units_kernel, n, d_items, int(c_out), dev["unit_group_offsets"],
                dev["group_times"], dev["group_entry_offsets"], dev["ent_event"], dev["ent_tap"],
                dev["amplitudes"], d_kt, *factors, params.tau_m, params.tau_s, params.threshold,
                float(t_end), float(rtol), int(max_iter), d_cap, d_counts, o_row, o_time, o_slope,
                o_wstart)

    counts, cap_offsets, o_row, o_time, o_slope, o_wstart = _run_planned(launch, caps)
    region, take = _sweep.collect_slots(counts, cap_offsets)
    unit_counts = counts.reshape(U, c_out).sum(axis=1) if U else np.zeros(0, dtype=np.int64)
    unit_offsets = csr_offsets(unit_counts)
    return (unit_offsets, unit_counts, o_row[take], region % max(c_out, 1), o_time[take],
            o_slope[take], o_wstart[take])


def _record_arrays(record, names):
    return {k: _on_device(record, k, getattr(record, k)) for k in names}


def _backward_dense_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, eg,
                         currents_t, need_groups, gamma_run, beta_g, gamma_g):
    """GPU twin of :func:`eventsnn.engine.sweep._backward_dense_path`: one thread per spike,
    atomic adds into ``gamma_run``, ``beta_g``, ``gamma_g`` (updated in place)."""
    smp, nrn, tms, slope, rows, wstart = spikes
    flags = np.zeros(tms.size, dtype=np.int8)
    if not tms.size:
        return flags
    p = record.params
    g = record.groups
    dg = {k: _on_device(g, k, getattr(g, k)) for k in ("group_times", "group_offsets")}
    dr = _record_arrays(record, ("em", "es", "group_run"))
    d_cur = _on_device(record, "currents_t", currents_t)
    acc = [cuda.to_device(a) for a in (gamma_run, beta_g, gamma_g)]
    d_flags = cuda.to_device(flags)
    _launch(_backward_dense_kernel, tms.size, dg["group_times"], dg["group_offsets"], dr["em"],
            dr["es"], cuda.to_device(eg), d_cur, dr["group_run"], *_spike_arrays(spikes, grad),
            gp.code, p.tau_m, p.tau_s, gp.tau_grad, float(max_dt_du), gp.drop_nonpositive,
            bool(recompute), float(min_slope), bool(need_groups), *acc, d_flags)
    for d, h in zip(acc, (gamma_run, beta_g, gamma_g)):
        d.copy_to_host(h)
    return d_flags.copy_to_host()


def _spike_arrays(spikes, grad):
    """(neuron, sample, row, time, slope, wstart, grad) of a spike list, on the device."""
    smp, nrn, tms, slope, rows, wstart = spikes
    return tuple(cuda.to_device(np.ascontiguousarray(a))
                 for a in (nrn, smp, rows, tms, slope, wstart, grad))


def _backward_sparse_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, eg,
                          dW, d_times, d_amps, need_input_grad):
    """GPU twin of :func:`eventsnn.engine.sweep._backward_sparse_path`: one thread per
    spike, atomic adds into ``dW``, ``d_times``, ``d_amps`` (updated in place)."""
    tms = spikes[2]
    flags = np.zeros(tms.size, dtype=np.int8)
    if not tms.size:
        return flags
    p = record.params
    g = record.groups
    dg = {k: _on_device(g, k, getattr(g, k)) for k in (
        "group_times", "group_offsets", "group_event_offsets", "event_neuron", "event_amp")}
    dr = _record_arrays(record, ("em", "es", "weight"))
    need = bool(need_input_grad) and d_times.size > 0
    acc = [cuda.to_device(dW)] + ([cuda.to_device(d_times), cuda.to_device(d_amps)] if need
                                  else [_placeholder(), _placeholder()])
    d_flags = cuda.to_device(flags)
    _launch(_backward_sparse_kernel, tms.size, dg["group_times"], dg["group_offsets"],
            dg["group_event_offsets"], dg["event_neuron"], dg["event_amp"], dr["em"], dr["es"],
            cuda.to_device(eg), dr["weight"], *_spike_arrays(spikes, grad), gp.code, p.tau_m,
            p.tau_s, gp.tau_grad, float(max_dt_du), gp.drop_nonpositive, bool(recompute),
            float(min_slope), need, *acc, d_flags)
    acc[0].copy_to_host(dW)
    if need:
        acc[1].copy_to_host(d_times)
        acc[2].copy_to_host(d_amps)
    return d_flags.copy_to_host()


def _backward_units_path(record, gp, spikes, grad, recompute, min_slope, max_dt_du, need_input,
                         KT, dKT_c, ent_dt, ent_da):
    """GPU twin of :func:`eventsnn.engine.conv._backward_units_path`: one thread per spike,
    atomic adds into dL/dK (added to ``dKT_c[0]``) and ``ent_dt``, ``ent_da`` (in place)."""
    units, chans, tms, slope, rows, wstart = spikes
    flags = np.zeros(tms.size, dtype=np.int8)
    ul = record.units
    U = ul.unit_group_offsets.size - 1
    if not (tms.size and U):
        return flags
    p = record.params
    G = ul.group_times.size
    dev = {k: _on_device(ul, k, getattr(ul, k)) for k in (
        "unit_group_offsets", "group_times", "group_entry_offsets", "ent_event", "ent_tap",
        "amplitudes")}
    decays = cuda.device_array((3, max(G, 1)))
    _launch(_unit_decays_kernel, U, dev["unit_group_offsets"], dev["group_times"],
            float(record.t_end), p.tau_m, p.tau_s, gp.tau_grad, decays)
    need = bool(need_input) and ent_dt.size > 0
    acc = [cuda.to_device(dKT_c[0])] + ([cuda.to_device(ent_dt), cuda.to_device(ent_da)] if need
                                        else [_placeholder(), _placeholder()])
    d_flags = cuda.to_device(flags)
    d = [cuda.to_device(np.ascontiguousarray(a)) for a in (units, chans, rows, tms, slope, wstart,
                                                           grad)]
    _launch(_backward_units_kernel, tms.size, d[0], decays, dev["unit_group_offsets"],
            dev["group_times"], dev["group_entry_offsets"], dev["ent_event"], dev["ent_tap"],
            dev["amplitudes"], _on_device(record, "KT", KT), *d[1:], gp.code, p.tau_m, p.tau_s,
            gp.tau_grad, float(max_dt_du), gp.drop_nonpositive, bool(recompute), float(min_slope),
            need, *acc, d_flags)
    dKT_c[0] = acc[0].copy_to_host()
    if need:
        acc[1].copy_to_host(ent_dt)
        acc[2].copy_to_host(ent_da)
    return d_flags.copy_to_host()


# ----------------------------------------------------------------------------------
# public: the CPU engine's functions, on the GPU
# ----------------------------------------------------------------------------------
def dense_forward(inputs, weight, params, t_end: float, *, rtol: float = CROSSING_RTOL,
                  max_iter: int = CROSSING_MAX_ITER):
    """:func:`eventsnn.engine.sweep.dense_forward` with the sweep on the GPU (same
    arguments, same results: output SpikeTrains and a DenseRecord of host arrays)."""
    return _sweep._dense_forward_with(scan_groups, inputs, weight, params, t_end, rtol, max_iter)


def dense_backward(record, grad_out, grad_params=None, *, need_input_grad: bool = True,
                   forced=None):
    """:func:`eventsnn.engine.sweep.dense_backward` with the window walks on the GPU."""
    return _sweep._dense_backward_with(_backward_dense_path, _backward_sparse_path, record,
                                       grad_out, grad_params, need_input_grad, forced)


def conv_forward(inputs, weight, geometry, params, t_end: float, *, path: str = "auto",
                 rtol: float = CROSSING_RTOL, max_iter: int = CROSSING_MAX_ITER):
    """:func:`eventsnn.engine.conv.conv_forward` with the sweeps on the GPU."""
    return _conv._conv_forward_with(scan_groups, scan_units, inputs, weight, geometry, params,
                                    t_end, path, rtol, max_iter)


def conv_backward(record, grad_out, grad_params=None, *, need_input_grad: bool = True,
                  forced=None):
    """:func:`eventsnn.engine.conv.conv_backward` with the window walks on the GPU."""
    return _conv._conv_backward_with(_backward_dense_path, _backward_units_path, record,
                                     grad_out, grad_params, need_input_grad, forced)
