"""Planned spike buffers (``sweep.run_planned``): items that emit more spikes than
planned are swept again alone; the others keep their first sweep.

Checked here: the helper on a scripted sweep (which items are swept twice, the merged
spikes in order, nothing lost or duplicated, empty and zero-capacity items); and on
the real kernels -- the sparse convolution (blocked and group by group) and the
dense layer (image currents and event path) give bit-identical records whether
almost every item overflows its plan, a few do, or none does, and only the
overflowing units are swept a second time. And the order of the collected spikes
(``sweep.order_by_time``) against ``np.lexsort``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsnn import NeuronParams, SpikeTrains
from eventsnn.crossing import CROSSING_MAX_ITER, CROSSING_RTOL
from eventsnn.engine import conv as C
from eventsnn.engine import sweep
from eventsnn.engine.conv import ConvGeometry

PARAMS = NeuronParams(5.0, 3.0, 1.0)


# ----------------------------------------------------------------------------------
# the helper on a scripted sweep
# ----------------------------------------------------------------------------------
def scripted(spikes_of):
    """A sweep whose item i emits the values spikes_of[i] (in order), respecting capacities
    exactly as the kernels do; records the items of every call."""
    calls = []

    def run(items, cap_offsets, counts, buffers):
        calls.append(items.copy())
        for i in items:
            base, cap = cap_offsets[i], cap_offsets[i + 1] - cap_offsets[i]
            vals = spikes_of[i]
            for k, v in enumerate(vals[:cap]):
                buffers[0][base + k] = v
                buffers[1][base + k] = 10.0 * v
            counts[i] = len(vals)

    return run, calls


def two_buffers(total):
    return np.full(total, -1, dtype=np.int64), np.full(total, np.nan)


def collect(offsets, counts, buffers):
    return [(list(buffers[0][offsets[i]:offsets[i] + counts[i]]),
             list(buffers[1][offsets[i]:offsets[i] + counts[i]])) for i in range(counts.size)]


def test_only_overflowing_items_are_swept_again():
    rng = np.random.default_rng(0)
    n = 40
    lengths = rng.integers(0, 7, n)
    spikes_of = [list(rng.integers(0, 1000, k)) for k in lengths]
    caps = np.full(n, 3)
    caps[:5] = 0  # items planned with no room at all
    run, calls = scripted(spikes_of)
    offsets, counts, buffers = sweep.run_planned(run, caps, two_buffers)
    over = np.flatnonzero(lengths > caps)
    assert 0 < over.size < n
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[0], np.arange(n))
    np.testing.assert_array_equal(calls[1], over)
    np.testing.assert_array_equal(counts, lengths)
    assert offsets[-1] == lengths.sum()  # compact after a second sweep
    got = collect(offsets, counts, buffers)
    for i in range(n):
        assert got[i][0] == spikes_of[i]
        assert got[i][1] == [10.0 * v for v in spikes_of[i]]


def test_no_overflow_is_one_sweep():
    spikes_of = [[1, 2], [], [3]]
    run, calls = scripted(spikes_of)
    offsets, counts, buffers = sweep.run_planned(run, np.array([2, 4, 1]), two_buffers)
    assert len(calls) == 1
    np.testing.assert_array_equal(offsets, [0, 2, 6, 7])
    assert [s for s, _ in collect(offsets, counts, buffers)] == spikes_of


def test_no_items():
    run, calls = scripted([])
    offsets, counts, buffers = sweep.run_planned(run, np.zeros(0, dtype=np.int64), two_buffers)
    assert calls == [] and counts.size == 0 and offsets.tolist() == [0]
    assert all(b.size == 0 for b in buffers)


# ----------------------------------------------------------------------------------
# the kernels: bit-identical records whatever the plan
# ----------------------------------------------------------------------------------
def busy_batch(rng, n_samples, n_in, n_events, t_end):
    """Spikes at distinct and coincident times, so that strong kernels fire often."""
    n = n_samples * n_events
    times = rng.uniform(0.0, t_end, n)
    times[::5] = np.round(times[::5], 1)
    return SpikeTrains.from_unsorted(times, rng.integers(0, n_in, n), np.ones(n),
                                     np.repeat(np.arange(n_samples), n_events), n_samples, n_in)


CONV_FIELDS = ("out_sample", "out_row", "out_wstart", "out_slope", "out_unit", "out_channel")


def assert_identical(a, b, fields):
    np.testing.assert_array_equal(a.outputs.times, b.outputs.times)
    np.testing.assert_array_equal(a.outputs.neurons, b.outputs.neurons)
    np.testing.assert_array_equal(a.outputs.offsets, b.outputs.offsets)
    for name in fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("block", [sweep.SCAN_BLOCK, 0])
def test_conv_sparse_identical_under_any_plan(monkeypatch, block):
    rng = np.random.default_rng(5)
    geom = ConvGeometry(2, 6, 6, 3, 3, 1, 1)
    inputs = busy_batch(rng, 3, geom.n_in, 150, 30.0)
    K = rng.normal(0.8, 0.5, geom.weight_shape)
    scan = functools.partial(C._scan_units_host, block=block)
    units_seen = []
    if block:
        real_run = sweep.BlockedScan.run

        def counting_run(self, units, *args):
            units_seen.append(units.copy())
            return real_run(self, units, *args)

        monkeypatch.setattr(sweep.BlockedScan, "run", counting_run)

    def forward(plan):
        monkeypatch.setattr(C, "PLANNED_SPIKES_PER_NEURON", plan)
        units_seen.clear()
        return C._sparse_conv_forward(inputs, K, geom, PARAMS, 30.0, CROSSING_RTOL,
                                      CROSSING_MAX_ITER, scan_units=scan)

    roomy = forward(10 ** 6)
    per_unit = np.bincount(roomy.out_unit, minlength=inputs.n_samples * geom.n_pos)
    groups = np.diff(roomy.units.unit_group_offsets)
    if block:
        assert len(units_seen) == 1
    partial = False
    for plan in (0, 1, 2, 3):
        caps = np.minimum(groups, plan) * geom.c_out
        over = np.flatnonzero(per_unit > caps)
        assert over.size > 0
        partial |= over.size < per_unit.size
        tight = forward(plan)
        assert_identical(tight, roomy, CONV_FIELDS)
        if block:
            assert len(units_seen) == 2
            np.testing.assert_array_equal(units_seen[1], over)
    assert partial, "some plan must leave most units inside their buffers"


@pytest.mark.parametrize("kind", ["image", "events"])
def test_dense_identical_under_any_plan(monkeypatch, kind):
    rng = np.random.default_rng(6)
    n_in, n_out = 30, 8
    if kind == "image":
        x = rng.uniform(0.0, 1.0, (3, n_in))
        times = np.tile(np.repeat(np.arange(1.0, 6.0), n_in), 3)
        neurons = np.tile(np.arange(n_in), 15)
        amps = np.repeat(x, 5, axis=0).reshape(-1)
        inputs = SpikeTrains.from_unsorted(times, neurons, amps, np.repeat(np.arange(3), 5 * n_in),
                                           3, n_in)
        W = rng.normal(0.6, 0.3, (n_out, n_in))
    else:
        inputs = busy_batch(rng, 3, n_in, 200, 30.0)
        W = rng.normal(1.0, 0.6, (n_out, n_in))

    def forward(plan):
        monkeypatch.setattr(sweep, "PLANNED_SPIKES_PER_NEURON", plan)
        return sweep.dense_forward(inputs, W, PARAMS, 30.0)

    out_r, roomy = forward(10 ** 6)
    assert out_r.n_events > 3 * 5
    assert roomy.dense == (kind == "image")
    per_sample = np.diff(out_r.offsets)
    assert per_sample.max() > 16  # more than the slack of a plan of 0
    for plan in (0, 1):
        out_t, tight = forward(plan)
        np.testing.assert_array_equal(out_t.times, out_r.times)
        np.testing.assert_array_equal(out_t.neurons, out_r.neurons)
        for name in ("out_sample", "out_row", "out_wstart", "out_slope"):
            np.testing.assert_array_equal(getattr(tight, name), getattr(roomy, name), err_msg=name)


# ----------------------------------------------------------------------------------
# order of the collected spikes: (sample, time, neuron) per sample in parallel
# ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6), st.integers(0, 4)), max_size=80),
       st.integers(1, 5))
def test_order_by_time_is_lexsort(events, n_samples):
    """Against np.lexsort on small integer-valued times (many ties, even full ties of
    time and neuron, which keep their index order as lexsort's stable sort does)."""
    smp = np.array([min(e[0], n_samples - 1) for e in events], dtype=np.int64)
    keep = np.argsort(smp, kind="stable")  # the samples must be contiguous
    smp = smp[keep]
    times = np.array([0.5 * e[1] for e in events], dtype=np.float64)[keep]
    neurons = np.array([e[2] for e in events], dtype=np.int64)[keep]
    offsets = sweep.csr_offsets(np.bincount(smp, minlength=n_samples))
    got = sweep.order_by_time(offsets, times, neurons)
    np.testing.assert_array_equal(got, np.lexsort((neurons, times, smp)))


def test_order_by_time_long_tie_runs():
    """Hundreds of events at one time (neurons with identical inputs), with repeated
    neurons: the long-run branch against np.lexsort."""
    rng = np.random.default_rng(8)
    counts = np.array([0, 700, 1, 300])
    smp = np.repeat(np.arange(4), counts)
    times = rng.choice([0.25, 1.0, 3.5], smp.size, p=[0.6, 0.3, 0.1])
    neurons = rng.integers(0, 60, smp.size)
    got = sweep.order_by_time(sweep.csr_offsets(counts), times, neurons)
    np.testing.assert_array_equal(got, np.lexsort((neurons, times, smp)))


def test_order_by_time_refuses_foreign_offsets():
    with pytest.raises(ValueError, match="CSR offsets"):
        sweep.order_by_time(np.array([0, 2]), np.zeros(3), np.zeros(3, dtype=np.int64))
