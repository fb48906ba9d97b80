"""The blocked forward of event inputs (``_scan_units_blocked``): the sparse
convolution's units and the dense layer's event path (units = samples).

It screens ``block`` groups at a time with a bound on the potential and jumps the
state of channels that cannot cross in closed form; everything else is swept
group by group. Checked here: for many block sizes it finds the same spikes as the
group-by-group scan (``block=0``) -- same units, channels, rows, window starts,
times within 1e-12 -- on inputs with many entries per unit, coincident times,
strong and weak kernels; it agrees with the brute-force reference neuron of
conftest; potentials that peak just below or just above threshold; a spike that
lands exactly on the next group's time at a block boundary (the skip rule); the
fallback when e^{t_end/tau} could overflow; the peak of eps.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from eventsnn import NeuronParams, SpikeTrains, neuron_spike_times
from eventsnn.crossing import CROSSING_MAX_ITER, CROSSING_RTOL
from eventsnn.engine import conv as C
from eventsnn.engine import sweep
from eventsnn.engine.conv import ConvGeometry
from eventsnn.kernels import deps, eps, eps_peak

PARAMS = NeuronParams(5.0, 3.0, 1.0)


def spike_batch(rng, n_samples, in_shape, n_events, t_end, rounded=4):
    n_in = int(np.prod(in_shape))
    n = n_samples * n_events
    times = rng.uniform(0.0, t_end, n)
    times[::rounded] = np.round(times[::rounded], 1)  # coincident times
    amps = np.where(rng.uniform(size=n) < 0.8, 1.0, rng.uniform(0.2, 1.5, n))
    return SpikeTrains.from_unsorted(times, rng.integers(0, n_in, n), amps,
                                     np.repeat(np.arange(n_samples), n_events), n_samples, n_in)


def forward(inputs, K, geom, t_end, block, params=PARAMS):
    scan = functools.partial(C._scan_units_host, block=block)
    rec = C._sparse_conv_forward(inputs, K, geom, params, t_end, CROSSING_RTOL, CROSSING_MAX_ITER,
                                 scan_units=scan)
    return rec.outputs, rec


def spike_table(rec):
    """(unit, channel, row, wstart) of every spike, and the times, in one canonical order."""
    key = np.stack([rec.out_unit, rec.out_channel, rec.out_row, rec.out_wstart], axis=1)
    order = np.lexsort(key.T[::-1])
    return key[order], rec.outputs.times[order], rec.out_slope[order]


def assert_same(rec_a, rec_b, rtol=1e-12):
    ka, ta, sa = spike_table(rec_a)
    kb, tb, sb = spike_table(rec_b)
    assert ka.shape == kb.shape, f"{ka.shape[0]} spikes against {kb.shape[0]}"
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_allclose(ta, tb, rtol=rtol, atol=0)
    np.testing.assert_allclose(sa, sb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 16, 64, 100000])
@pytest.mark.parametrize("mean, spread", [(0.05, 0.35), (0.3, 0.5), (-0.05, 0.6)])
def test_blocked_equals_group_by_group(block, mean, spread):
    rng = np.random.default_rng(int(1000 * (mean + 1)) + block)
    geom = ConvGeometry(3, 7, 7, 4, 3, 1, 1)
    t_end = 6.0
    inputs = spike_batch(rng, 3, geom.in_shape, 900, t_end)
    K = rng.normal(mean, spread, geom.weight_shape)
    _, ref_rec = forward(inputs, K, geom, t_end, 0)
    out, rec = forward(inputs, K, geom, t_end, block)
    assert ref_rec.out_unit.size > 30, "the case needs spikes"
    assert_same(rec, ref_rec)
    # several spikes per neuron, and groups far beyond one block per unit
    assert np.bincount(rec.out_unit * geom.c_out + rec.out_channel).max() >= 2
    assert np.diff(rec.units.unit_group_offsets).max() > 2 * min(block, 64)
    assert out.n_events == ref_rec.out_unit.size


def test_blocked_against_reference_neuron(ref):
    rng = np.random.default_rng(5)
    geom = ConvGeometry(2, 6, 6, 3, 3, 1, 0)
    t_end = 5.0
    inputs = spike_batch(rng, 2, geom.in_shape, 150, t_end)
    K = rng.normal(0.25, 0.5, geom.weight_shape)
    out, _ = forward(inputs, K, geom, t_end, 4)
    full = C.dense_equivalent(K, geom)
    assert out.n_events > 10
    for s in range(2):
        smp = inputs.sample(s)
        o = out.sample(s)
        for i in range(0, geom.n_out, 5):
            c = full[i, smp.neurons] * smp.amplitudes
            want = ref.spike_times(smp.times, c, PARAMS.tau_m, PARAMS.tau_s, PARAMS.threshold, t_end)
            ref.assert_times_close(o.times[o.neurons == i], want, 1e-12, f"sample {s} neuron {i}")


def one_channel_case(times, amps):
    """A 1x1 'convolution' of one input neuron: unit = the single neuron's event list."""
    geom = ConvGeometry(1, 1, 1, 1, 1, 1, 0)
    n = len(times)
    inputs = SpikeTrains(np.asarray(times, float), np.zeros(n, dtype=np.int64), np.asarray(amps, float),
                         [0, n], 1)
    return geom, inputs


@pytest.mark.parametrize("factor, fires", [(1 - 1e-9, False), (1 + 1e-9, True)])
def test_peak_just_below_or_above_threshold(factor, fires):
    """Many small inputs, then silence: the potential peaks at factor * theta. (A crossing
    this close to a tangent is ill-conditioned -- dt ~ du / sqrt(2 du |u''|) -- hence the
    looser time tolerance.)"""
    times = np.linspace(0.0, 0.3, 40)
    t_end = 8.0
    # the peak on the closed form (the grid above is only a start)
    res = minimize_scalar(lambda x: -np.sum(eps(x - times, 5.0, 3.0)), bounds=(0.3, t_end),
                          method="bounded", options={"xatol": 1e-12})
    w = factor * PARAMS.threshold / -res.fun
    geom, inputs = one_channel_case(times, np.full(times.size, w))
    K = np.ones(geom.weight_shape)
    want = neuron_spike_times(times, np.full(times.size, w), tau_m=5.0, tau_s=3.0, threshold=1.0,
                              t_end=t_end)
    assert (want.size > 0) == fires
    for block in (0, 1, 5, 1000):
        out, _ = forward(inputs, K, geom, t_end, block)
        assert (out.n_events > 0) == fires, f"block {block}"
        np.testing.assert_allclose(out.times, want, rtol=1e-9, err_msg=f"block {block}")


def test_spike_exactly_on_the_next_group_time_across_a_block_boundary():
    """A strong input at 0 crosses at t_c; the next input arrives exactly at t_c. The spike
    is placed on t_c and that input is forgotten (skip rule), in every block size."""
    w = 4.0
    t_c = neuron_spike_times([0.0], [w], tau_m=5.0, tau_s=3.0, threshold=1.0, t_end=5.0)[0]
    # after t_c: a big input that would fire at once unless it is forgotten
    times = [0.0, t_c, t_c + 1.0]
    amps = [w, 50.0, 0.3]
    geom, inputs = one_channel_case(times, amps)
    K = np.ones(geom.weight_shape)
    _, rec0 = forward(inputs, K, geom, 5.0, 0)
    assert rec0.outputs.times[0] == t_c and rec0.out_wstart.size >= 1
    for block in (1, 2, 3):
        _, rec = forward(inputs, K, geom, 5.0, block)
        assert_same(rec, rec0, rtol=0)
    # the forgotten input: the next window starts after it (row of t_c + 2)
    if rec0.out_unit.size > 1:
        assert rec0.out_wstart[1] == 2


def test_overflow_guard_falls_back_to_group_by_group():
    rng = np.random.default_rng(9)
    geom = ConvGeometry(2, 5, 5, 2, 3, 1, 1)
    inputs = spike_batch(rng, 2, geom.in_shape, 80, 4.0)
    K = rng.normal(0.3, 0.5, geom.weight_shape)
    t_end = 3.0 * 250  # t_end / tau_s = 250 > MAX_REFERENCED_EXPONENT: e^{t/tau} could overflow
    assert t_end / PARAMS.tau_s > sweep.MAX_REFERENCED_EXPONENT
    with np.errstate(over="raise"):
        _, rec = forward(inputs, K, geom, t_end, 16)
    _, rec0 = forward(inputs, K, geom, t_end, 0)
    assert_same(rec, rec0, rtol=0)
    assert rec.outputs.times.tobytes() == rec0.outputs.times.tobytes()


@pytest.mark.parametrize("tau_m, tau_s", [(5.0, 3.0), (3.0, 5.0), (8.0, 4.0), (10.0, 0.5)])
def test_eps_peak(tau_m, tau_s):
    s_star, peak = eps_peak(tau_m, tau_s)
    grid = np.linspace(0, 20 * max(tau_m, tau_s), 400001)
    top = eps(grid, tau_m, tau_s).max()
    assert top <= peak * (1 + 1e-14) and peak - top < 1e-7  # no grid point beats it; close to the best
    assert peak == pytest.approx(eps(np.array([s_star]), tau_m, tau_s)[0], rel=1e-14)
    assert abs(deps(np.array([s_star]), tau_m, tau_s)[0]) < 1e-12
    with pytest.raises(ValueError, match="tau_m != tau_s"):
        eps_peak(2.0, 2.0)


@pytest.mark.parametrize("block", [1, 4, 16, 100000])
def test_dense_event_path_blocked_equals_group_by_group(block, ref):
    """The dense layer's event path runs the same blocked kernel (units = samples)."""
    rng = np.random.default_rng(40 + block)
    n_in, n_out, t_end = 60, 25, 6.0
    inputs = spike_batch(rng, 4, (n_in,), 400, t_end)
    W = rng.normal(0.08, 0.3, (n_out, n_in))
    groups = sweep.group_events(inputs, t_end)
    wt = np.ascontiguousarray(W.T)
    a = sweep.scan_groups(groups, n_out, PARAMS, t_end, weight_t=wt, block=0)
    b = sweep.scan_groups(groups, n_out, PARAMS, t_end, weight_t=wt, block=block)
    assert a.outputs.n_events > 40
    np.testing.assert_array_equal(b.outputs.offsets, a.outputs.offsets)
    np.testing.assert_array_equal(b.outputs.neurons, a.outputs.neurons)
    np.testing.assert_allclose(b.outputs.times, a.outputs.times, rtol=1e-12, atol=0)
    for name in ("out_sample", "out_row", "out_wstart"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    np.testing.assert_allclose(b.out_slope, a.out_slope, rtol=1e-10, atol=1e-12)
    # and one sample neuron by neuron against the brute-force reference
    smp = inputs.sample(1)
    o = b.outputs.sample(1)
    for i in range(0, n_out, 6):
        want = ref.spike_times(smp.times, W[i, smp.neurons] * smp.amplitudes, PARAMS.tau_m, PARAMS.tau_s,
                               PARAMS.threshold, t_end)
        ref.assert_times_close(o.times[o.neurons == i], want, 1e-12, f"neuron {i}")
