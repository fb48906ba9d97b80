"""SpikeTrains: validation, construction from unsorted events, views and summaries,
each against a plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsnn import SpikeTrains


def _random_events(rng, n_samples=5, n_neurons=7, n_events=60, tie_every=4):
    times = rng.uniform(0, 10, n_events)
    times[::tie_every] = np.round(times[::tie_every])  # ties
    neurons = rng.integers(0, n_neurons, n_events)
    amps = rng.uniform(0.1, 2.0, n_events)
    samples = rng.integers(0, n_samples, n_events)
    return times, neurons, amps, samples


def _as_tuples(st):
    """Per sample, the list of (time, neuron, amplitude) in storage order."""
    out = []
    for s in range(st.n_samples):
        a, b = st.offsets[s], st.offsets[s + 1]
        out.append(list(zip(st.times[a:b].tolist(), st.neurons[a:b].tolist(), st.amplitudes[a:b].tolist())))
    return out


def test_construction_and_views():
    st = SpikeTrains([0.5, 1.0, 0.2], [3, 0, 1], [1.0, 1.0, 0.5], [0, 2, 3], 4)
    assert st.n_samples == 2 and st.n_events == 3 and len(st) == 3 and st.n_neurons == 4
    assert st.times.dtype == np.float64 and st.neurons.dtype == np.int64
    assert st.offsets.dtype == np.int64 and st.amplitudes.dtype == np.float64
    np.testing.assert_array_equal(st.samples, [0, 0, 1])
    one = st.sample(1)
    assert one.n_samples == 1 and one.n_neurons == 4
    np.testing.assert_array_equal(one.times, [0.2])
    np.testing.assert_array_equal(one.amplitudes, [0.5])
    assert st.sample(-1).equals(one)
    with pytest.raises(IndexError):
        st.sample(2)
    with pytest.raises(IndexError):
        st.sample(-3)
    assert "n_samples=2" in repr(st)


def test_empty_and_empty_samples():
    e = SpikeTrains.empty(3, 5)
    assert e.n_samples == 3 and e.n_events == 0 and e.n_neurons == 5
    np.testing.assert_array_equal(e.counts(), np.zeros((3, 5)))
    assert np.all(np.isinf(e.first_times()))
    # empty samples between non-empty ones; a decrease across a boundary is fine
    st = SpikeTrains([3.0, 4.0, 1.0], [0, 1, 1], [1, 1, 1], [0, 0, 2, 2, 3, 3], 2)
    assert st.n_samples == 5
    np.testing.assert_array_equal(st.counts(), [[0, 0], [1, 1], [0, 0], [0, 1], [0, 0]])
    assert st.sample(0).n_events == 0


@pytest.mark.parametrize(
    "args,name",
    [
        (([1.0, 0.5], [0, 0], [1, 1], [0, 2], 1), "sorted"),
        (([0.1, 1.0, 0.5], [0, 0, 0], [1, 1, 1], [0, 1, 3], 1), "sorted"),
        (([0.1, 0.2], [0, 0], [1, 1], [1, 2], 1), "offsets"),
        (([0.1, 0.2], [0, 0], [1, 1], [0, 1], 1), "offsets"),
        (([0.1, 0.2], [0, 0], [1, 1], [0, 3], 1), "offsets"),
        (([0.1, 0.2], [0, 0], [1, 1], [0, 2, 1, 2], 1), "offsets"),
        (([0.1, 0.2], [0, 0], [1, 1], [], 1), "offsets"),
        (([0.1, 0.2], [0, 2], [1, 1], [0, 2], 2), "neurons"),
        (([0.1, 0.2], [0, -1], [1, 1], [0, 2], 2), "neurons"),
        (([0.1, 0.2], [0.0, 0.5], [1, 1], [0, 2], 2), "neurons"),
        (([0.1, np.nan], [0, 0], [1, 1], [0, 2], 1), "times"),
        (([0.1, np.inf], [0, 0], [1, 1], [0, 2], 1), "times"),
        (([0.1, 0.2], [0, 0], [1, np.nan], [0, 2], 1), "amplitudes"),
        (([0.1, 0.2], [0, 0], [1, -np.inf], [0, 2], 1), "amplitudes"),
        (([0.1, 0.2], [0], [1, 1], [0, 2], 1), "neurons"),
        (([0.1, 0.2], [0, 0], [1], [0, 2], 1), "amplitudes"),
        (([0.1], [0], [1], [0, 1], -1), "n_neurons"),
    ],
)
def test_validation(args, name):
    with pytest.raises(ValueError, match=name):
        SpikeTrains(*args)


def test_integral_float_neurons_accepted():
    st = SpikeTrains([0.1, 0.2], [0.0, 2.0], [1, 1], [0, 2], 3)
    np.testing.assert_array_equal(st.neurons, [0, 2])
    assert st.neurons.dtype == np.int64


def test_from_unsorted_matches_python_sort():
    rng = np.random.default_rng(31)
    times, neurons, amps, samples = _random_events(rng)
    st = SpikeTrains.from_unsorted(times, neurons, amps, samples, n_samples=6, n_neurons=7)
    assert st.n_samples == 6 and st.n_events == times.size
    want = [sorted((t, j, a) for t, j, a, s in zip(times.tolist(), neurons.tolist(), amps.tolist(),
                                                 samples.tolist()) if s == smp) for smp in range(6)]
    got = _as_tuples(st)
    for smp in range(6):
        # sorted by (time, neuron); the amplitude travels with its event
        assert [(t, j) for t, j, _ in got[smp]] == [(t, j) for t, j, _ in want[smp]]
        assert sorted(got[smp]) == want[smp]
    assert st.sample(5).n_events == 0  # trailing sample without events


def test_from_unsorted_validation():
    with pytest.raises(ValueError, match="samples"):
        SpikeTrains.from_unsorted([0.1, 0.2], [0, 0], [1, 1], [0], 1, 1)
    with pytest.raises(ValueError, match="samples"):
        SpikeTrains.from_unsorted([0.1, 0.2], [0, 0], [1, 1], [0, 2], 2, 1)
    with pytest.raises(ValueError, match="samples"):
        SpikeTrains.from_unsorted([0.1, 0.2], [0, 0], [1, 1], [0, -1], 2, 1)
    with pytest.raises(ValueError, match="neurons"):
        SpikeTrains.from_unsorted([0.1, 0.2], [0, 3], [1, 1], [0, 0], 1, 3)
    with pytest.raises(ValueError, match="times"):
        SpikeTrains.from_unsorted([0.1, np.nan], [0, 0], [1, 1], [0, 0], 1, 1)


def test_select():
    rng = np.random.default_rng(32)
    st = SpikeTrains.from_unsorted(*_random_events(rng), n_samples=5, n_neurons=7)
    rows = _as_tuples(st)
    for idx in ([3, 0, 3], [4], [], [0, 1, 2, 3, 4], np.array([2, 2])):
        sel = st.select(idx)
        assert sel.n_samples == len(idx) and sel.n_neurons == 7
        assert _as_tuples(sel) == [rows[i] for i in idx]
        for k, i in enumerate(idx):
            assert sel.sample(k).equals(st.sample(i))
    with pytest.raises(IndexError):
        st.select([5])


def test_select_negative_index_like_sample():
    """``sample(-1)`` is the last sample; ``select([-1])`` must agree with it."""
    rng = np.random.default_rng(33)
    st = SpikeTrains.from_unsorted(*_random_events(rng, n_samples=3), n_samples=3, n_neurons=7)
    assert st.select([-1]).equals(st.select([2]))


def test_counts_and_first_times():
    rng = np.random.default_rng(34)
    times, neurons, amps, samples = _random_events(rng, n_samples=4, n_neurons=6, n_events=80)
    st = SpikeTrains.from_unsorted(times, neurons, amps, samples, n_samples=4, n_neurons=9)
    counts = np.zeros((4, 9), dtype=np.int64)
    first = np.full((4, 9), np.inf)
    for t, j, s in zip(times, neurons, samples):
        counts[s, j] += 1
        first[s, j] = min(first[s, j], t)
    got_counts = st.counts()
    assert got_counts.dtype == np.int64 and got_counts.shape == (4, 9)
    np.testing.assert_array_equal(got_counts, counts)
    np.testing.assert_array_equal(st.first_times(), first)
    assert np.all(np.isinf(st.first_times()[:, 6:]))  # neurons without events


def test_equals():
    a = SpikeTrains([0.1, 0.2], [0, 1], [1, 1], [0, 2], 2)
    assert a.equals(SpikeTrains([0.1, 0.2], [0, 1], [1, 1], [0, 2], 2))
    assert not a.equals(SpikeTrains([0.1, 0.2], [0, 1], [1, 1], [0, 2], 3))
    assert not a.equals(SpikeTrains([0.1, 0.2], [0, 1], [1, 1], [0, 1, 2], 2))
    assert not a.equals(SpikeTrains([0.1, 0.3], [0, 1], [1, 1], [0, 2], 2))
    assert not a.equals(SpikeTrains([0.1, 0.2], [0, 1], [1, 0.5], [0, 2], 2))
    assert not a.equals("not a SpikeTrains")



def test_csr_offsets_hand_computed():
    from eventsnn.spikes import csr_offsets, offsets_of

    np.testing.assert_array_equal(csr_offsets([2, 0, 3]), [0, 2, 2, 5])
    np.testing.assert_array_equal(csr_offsets(np.zeros(0, dtype=np.int64)), [0])
    # owners 0,0,2,2,2 over 4 items: item 1 and item 3 own nothing
    out = offsets_of(np.array([0, 0, 2, 2, 2]), 4)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [0, 2, 2, 5, 5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=40), st.integers(0, 4))
def test_offsets_of_owns_exactly_the_sorted_entries(owner, extra):
    """Item i owns [offsets[i], offsets[i+1]) of the owner-sorted entries: a python loop
    over the sorted owners finds the same ranges."""
    from eventsnn.spikes import offsets_of

    owner = np.sort(np.array(owner, dtype=np.int64))
    n = (int(owner.max()) + 1 if owner.size else 0) + extra
    offsets = offsets_of(owner, n)
    assert offsets.shape == (n + 1,) and offsets[0] == 0 and offsets[-1] == owner.size
    for i in range(n):
        ranged = [q for q in range(owner.size) if owner[q] == i]
        assert list(range(offsets[i], offsets[i + 1])) == ranged
