"""Encoders: current impulses and latency coding, against plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from eventsnn.encode import current, latency


def current_reference(images, steps):
    """Per sample: for t = 0..T-1, for every non-zero pixel in index order, one event (t, j, x_j)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    events = []
    for s in range(x.shape[0]):
        ev = []
        for t in range(steps):
            for j in range(x.shape[1]):
                if x[s, j] != 0.0:
                    ev.append((float(t), j, x[s, j]))
        events.append(ev)
    return events


def as_lists(st):
    return [list(zip(st.sample(s).times.tolist(), st.sample(s).neurons.tolist(),
                     st.sample(s).amplitudes.tolist())) for s in range(st.n_samples)]


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_current_matches_loop(steps):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 3, 5))
    images[rng.random(images.shape) < 0.4] = 0.0  # zeros emit nothing
    images[2] = 0.0  # an empty sample
    st = current(images, steps=steps)
    assert st.n_samples == 4 and st.n_neurons == 15
    assert as_lists(st) == current_reference(images, steps)
    np.testing.assert_array_equal(np.diff(st.offsets), steps * np.count_nonzero(images.reshape(4, -1), axis=1))
    # amplitude of every event is its pixel value (negative values included)
    flat = images.reshape(4, -1)
    np.testing.assert_array_equal(st.amplitudes, flat[st.samples, st.neurons])
    assert np.any(st.amplitudes < 0)
    # sorted per sample by time, then pixel
    for s in range(4):
        o = st.sample(s)
        key = o.times * 100 + o.neurons
        assert np.all(np.diff(key) > 0)


def test_current_t_impulses_per_pixel():
    st = current(np.array([[0.5, 0.0, -1.25]]), steps=4)
    np.testing.assert_array_equal(st.times, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(st.neurons, [0, 2] * 4)
    np.testing.assert_array_equal(st.amplitudes, [0.5, -1.25] * 4)
    one = current(np.array([0.2, 0.3]), steps=2)  # a single flat image
    assert one.n_samples == 1 and one.n_events == 4


def test_current_rejects_bad_input():
    with pytest.raises(ValueError):
        current(np.ones((2, 3)), steps=0)
    with pytest.raises(ValueError):
        current(np.array([[1.0, np.nan]]), steps=2)


def test_latency_matches_formula():
    rng = np.random.default_rng(1)
    p = rng.uniform(-0.3, 1.3, size=(5, 2, 4))
    p[0, 0, 0], p[0, 0, 1], p[1, 1, 1] = 1.0, 0.0, 1e-9
    p[3] = 0.0  # empty sample
    st = latency(p, t_max=7.0)
    assert st.n_samples == 5 and st.n_neurons == 8
    np.testing.assert_array_equal(st.amplitudes, 1.0)
    flat = p.reshape(5, -1)
    for s in range(5):
        o = st.sample(s)
        pos = np.flatnonzero(flat[s] > 0)
        want = sorted((7.0 * (1.0 - min(flat[s, j], 1.0)), j) for j in pos)
        got = list(zip(o.times.tolist(), o.neurons.tolist()))
        assert [j for _, j in got] == [j for _, j in want]
        np.testing.assert_allclose([t for t, _ in got], [t for t, _ in want], rtol=1e-15, atol=0)
        assert len(set(o.neurons.tolist())) == o.n_events  # one spike per pixel
    # p = 1 fires at 0, pixels clipped above 1 too; p <= 0 never fires
    assert st.sample(0).times[0] == 0.0
    assert st.sample(3).n_events == 0
    assert st.sample(1).times.max() == pytest.approx(7.0 * (1 - 1e-9), rel=1e-15)


def test_latency_rejects_bad_t_max():
    for t in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError):
            latency(np.ones((1, 2)), t_max=t)
