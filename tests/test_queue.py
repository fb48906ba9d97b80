"""Tests of the priority-queue engine (eventsnn.engine.queue).

* feed-forward stacks: the queue engine equals the layer sweep, spike by spike;
* a recurrent network: the queue engine equals a slow, independent reference
  (direct sum of kernels, fine grid scan + brentq refinement);
* the reset rule at equal times, self-connections, the runaway guard and
  argument validation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from eventsnn.engine.queue import feedforward_weights, run_network
from eventsnn.engine.sweep import dense_forward
from eventsnn.params import NeuronParams
from eventsnn.spikes import SpikeTrains

PARAMS = NeuronParams(tau_m=5.0, tau_s=3.0, threshold=1.0)


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------
def neuron_slice(trains: SpikeTrains, sl: slice) -> SpikeTrains:
    """The events of neurons ``sl`` of every sample, renumbered from 0."""
    keep = (trains.neurons >= sl.start) & (trains.neurons < sl.stop)
    offsets = np.zeros(trains.n_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(trains.samples[keep], minlength=trains.n_samples), out=offsets[1:])
    return SpikeTrains(trains.times[keep], trains.neurons[keep] - sl.start,
                       trains.amplitudes[keep], offsets, sl.stop - sl.start)


def random_inputs(rng, n_samples, n_in, t_end, *, n_random=30, shared_times=(0, 1, 2, 3, 4),
                  n_shared=25):
    """Events at random times and many events at a few shared times, per sample;
    sample 0 is empty and every sample has a few events after t_end."""
    times, neurons, amps, samples = [], [], [], []
    for s in range(1, n_samples):
        t = np.concatenate([
            rng.uniform(0.0, t_end, n_random),
            np.repeat(np.asarray(shared_times, float), n_shared),
            rng.uniform(t_end, t_end + 2.0, 3),
        ])
        times.append(t)
        neurons.append(rng.integers(0, n_in, t.size))
        amps.append(rng.uniform(0.1, 1.0, t.size))
        samples.append(np.full(t.size, s))
    return SpikeTrains.from_unsorted(np.concatenate(times), np.concatenate(neurons),
                                     np.concatenate(amps), np.concatenate(samples),
                                     n_samples, n_in)


def assert_same_spikes(a: SpikeTrains, b: SpikeTrains, rtol=1e-12):
    assert a.n_neurons == b.n_neurons
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.neurons, b.neurons)
    np.testing.assert_allclose(a.times, b.times, rtol=rtol, atol=0.0)
    np.testing.assert_array_equal(a.amplitudes, np.ones(a.n_events))


# ----------------------------------------------------------------------------------
# (1) feed-forward: queue engine == layer sweep
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed, sizes, density", [
    (0, (24, 20, 14), 1.0),
    (1, (24, 20, 14, 10), 1.0),
    (2, (16, 30, 12, 8), 0.5),
    (3, (40, 12, 12), 1.0),
])
def test_feedforward_matches_layer_sweep(seed, sizes, density):
    rng = np.random.default_rng(seed)
    t_end = 6.0
    inputs = random_inputs(rng, 5, sizes[0], t_end)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(0.5, 1.0, (n_out, n_in)) * (3.0 / math.sqrt(n_in))
        w *= rng.random(w.shape) < density
        layers.append(w)
    w_in, w_rec, slices = feedforward_weights(layers)
    out = run_network(w_in, w_rec, inputs, PARAMS, t_end)
    assert out.n_samples == inputs.n_samples and out.n_neurons == sum(sizes[1:])
    assert np.all(out.times > 0) and np.all(out.times <= t_end)
    x = inputs
    for l, w in enumerate(layers):
        x, _ = dense_forward(x, w, PARAMS, t_end)
        assert x.n_events >= 10, f"layer {l} nearly silent: the test would be weak"
        assert_same_spikes(neuron_slice(out, slices[l]), x)


def test_feedforward_weights_blocks():
    w0, w1 = np.arange(6.0).reshape(3, 2) + 1, np.arange(12.0).reshape(4, 3) + 1
    w_in, w_rec, sl = feedforward_weights([w0, w1])
    assert sl == [slice(0, 3), slice(3, 7)]
    np.testing.assert_array_equal(w_in[:3], w0)
    np.testing.assert_array_equal(w_in[3:], 0)
    np.testing.assert_array_equal(w_rec[3:, :3], w1)
    w_rec[3:, :3] = 0
    np.testing.assert_array_equal(w_rec, 0)
    with pytest.raises(ValueError, match="inputs but layer"):
        feedforward_weights([w0, w1.T])
    with pytest.raises(ValueError, match="at least one"):
        feedforward_weights([])
    with pytest.raises(ValueError, match="2-D"):
        feedforward_weights([np.ones(3)])


# ----------------------------------------------------------------------------------
# (2) recurrent network: queue engine == slow independent reference
# ----------------------------------------------------------------------------------
def _kernel(s, tau_m, tau_s):
    A = tau_m / (tau_m - tau_s)
    return np.where(s > 0, A * (np.exp(-np.maximum(s, 0) / tau_m) - np.exp(-np.maximum(s, 0) / tau_s)), 0.0)


def reference_network(w_in, w_rec, ext_t, ext_j, ext_a, params, t_end, dt=2e-3, margin=1e-4):
    """Slow reference for one sample: u_i(t) is the direct sum of kernels over
    the remembered inputs (t_last_i < t_m); the first crossing of all neurons
    before the next external time is found by a grid scan and refined by brentq.
    Fails (instead of guessing) when u comes within ``margin`` of theta without
    crossing it on the grid (a possible touch-and-leave between grid points)."""
    n = w_in.shape[0]
    tm, ts, th = params.tau_m, params.tau_s, params.threshold
    ev = [[] for _ in range(n)]  # per neuron: [time, efficacy]
    for t, j, a in zip(ext_t, ext_j, ext_a):
        if t <= t_end:
            for i in range(n):
                if w_in[i, j] != 0:
                    ev[i].append((t, w_in[i, j] * a))
    t_last = np.full(n, -np.inf)
    ext_times = np.unique(ext_t[ext_t <= t_end])
    spikes = []

    def u(i, t):
        if not ev[i]:
            return np.zeros_like(t)
        e = np.array(ev[i])
        e = e[e[:, 0] > t_last[i]]
        return (e[:, 1][None, :] * _kernel(t[:, None] - e[:, 0][None, :], tm, ts)).sum(axis=1)

    t_cur = 0.0
    while t_cur < t_end:
        later = ext_times[ext_times > t_cur]
        t_next = later[0] if later.size else t_end
        m = max(int(math.ceil((t_next - t_cur) / dt)), 1) + 1
        grid = np.linspace(t_cur, t_next, m)
        best = (np.inf, -1)
        for i in range(n):
            v = u(i, grid) - th
            above = np.flatnonzero(v[1:] >= 0)
            if above.size:
                k = above[0] + 1
                tk = brentq(lambda t: u(i, np.array([t]))[0] - th, grid[k - 1], grid[k],
                            xtol=1e-15, rtol=1e-15, maxiter=500)
                best = min(best, (tk, i))
            elif v[1:].max() > -margin:
                raise AssertionError("near touch of the threshold: choose another seed")
        if best[1] < 0:
            t_cur = t_next
            continue
        tk, i = best
        spikes.append((tk, i))
        t_last[i] = tk
        for j in range(n):
            if w_rec[j, i] != 0:
                ev[j].append((tk, w_rec[j, i]))
        t_cur = tk
    return spikes


@pytest.mark.parametrize("seed", [0, 1])
def test_recurrent_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n, n_in, t_end = 6, 4, 10.0
    w_in = rng.uniform(0.5, 2.5, (n, n_in)) * (rng.random((n, n_in)) < 0.6)
    w_in[5] = 0.0  # neuron 5 is driven by the recurrent connections only
    w_rec = rng.normal(0.3, 1.0, (n, n)) * (rng.random((n, n)) < 0.6)
    w_rec[5, :3] = 1.2
    w_rec[0, 1], w_rec[1, 0] = 1.5, 1.5  # an excitatory loop
    np.fill_diagonal(w_rec, rng.normal(0, 2, n))  # self-connections (no effect)
    ext_t = np.sort(np.concatenate([rng.uniform(0, 8, 12), [0.0, 0.0, 2.0, 2.0, 2.0]]))
    ext_t = np.append(ext_t, 11.0)  # after t_end: ignored
    ext_j = rng.integers(0, n_in, ext_t.size)
    ext_a = np.ones(ext_t.size)
    inputs = SpikeTrains(ext_t, ext_j, ext_a, [0, ext_t.size], n_in)

    out = run_network(w_in, w_rec, inputs, PARAMS, t_end)
    ref = reference_network(w_in, w_rec, ext_t, ext_j, ext_a, PARAMS, t_end)
    assert 10 <= len(ref) <= 200
    assert 5 in out.neurons  # purely recurrent spikes occur
    ref_t = np.array([t for t, _ in ref])
    ref_n = np.array([i for _, i in ref])
    np.testing.assert_array_equal(out.neurons, ref_n)
    np.testing.assert_allclose(out.times, ref_t, rtol=1e-10, atol=0)

    # the recurrent connections matter
    off = run_network(w_in, np.zeros((n, n)), inputs, PARAMS, t_end)
    assert off.n_events != out.n_events or not np.array_equal(off.times, out.times)
    # self-connections have no effect (a neuron's own spike arrives at its spike time)
    no_self = w_rec.copy()
    np.fill_diagonal(no_self, 0.0)
    assert run_network(w_in, no_self, inputs, PARAMS, t_end).equals(out)


# ----------------------------------------------------------------------------------
# (3) an input exactly at a spike time is forgotten
# ----------------------------------------------------------------------------------
def one_sample(times, neurons, amps, n_in):
    return SpikeTrains(times, neurons, amps, [0, len(times)], n_in)


def test_external_input_at_spike_time_is_forgotten():
    w_in = np.array([[3.0, 5.0]])
    w_rec = np.zeros((1, 1))
    base = run_network(w_in, w_rec, one_sample([0.0], [0], [1.0], 2), PARAMS, 10.0)
    assert base.n_events == 1
    tk = float(base.times[0])
    # a strong input exactly at t_k is forgotten: nothing changes
    at = run_network(w_in, w_rec, one_sample([0.0, tk], [0, 1], [1.0, 1.0], 2), PARAMS, 10.0)
    assert at.equals(base)
    # one ulp later it is kept and makes a second spike
    later = np.nextafter(tk, np.inf)
    after = run_network(w_in, w_rec, one_sample([0.0, later], [0, 1], [1.0, 1.0], 2), PARAMS, 10.0)
    assert after.n_events == 2 and after.times[0] == tk and after.times[1] > later


@pytest.mark.parametrize("source, target", [(0, 1), (1, 0)])
def test_spike_at_target_spike_time_is_forgotten(source, target):
    # two identical neurons fire at exactly the same time; a strong connection
    # between them delivers a spike exactly at the target's own spike time
    w_in = np.array([[3.0], [3.0]])
    w_rec = np.zeros((2, 2))
    inp = one_sample([0.0], [0], [1.0], 1)
    base = run_network(w_in, w_rec, inp, PARAMS, 10.0)
    assert base.n_events == 2 and base.times[0] == base.times[1]
    w_rec[target, source] = 8.0
    out = run_network(w_in, w_rec, inp, PARAMS, 10.0)
    assert out.equals(base)
    np.testing.assert_array_equal(out.neurons, [0, 1])
    # control: when the target fires a little earlier, the source's spike
    # arrives after the target's spike, is kept and makes a second spike
    w_in2 = w_in.copy()
    w_in2[target] = 3.1
    out2 = run_network(w_in2, w_rec, inp, PARAMS, 10.0)
    assert out2.counts()[0, target] >= 2


def test_spike_delivered_to_targets_without_delay():
    # neuron 1 has no external input; neuron 0's spike is its only input
    w_in = np.array([[3.0], [0.0]])
    w_rec = np.array([[0.0, 0.0], [4.0, 0.0]])
    out = run_network(w_in, w_rec, one_sample([0.0], [0], [1.0], 1), PARAMS, 10.0)
    t0 = out.times[0]
    np.testing.assert_array_equal(out.neurons, [0, 1])
    # neuron 1 alone with an external input of efficacy 4 at t0 fires at the same time
    ref = run_network([[4.0]], [[0.0]], one_sample([t0], [0], [1.0], 1), PARAMS, 10.0)
    assert out.times[1] == pytest.approx(ref.times[0], rel=1e-13)


# ----------------------------------------------------------------------------------
# (4) runaway activity
# ----------------------------------------------------------------------------------
def test_max_spikes_guard():
    w_in = np.array([[3.0], [0.0]])
    w_rec = np.array([[0.0, 50.0], [50.0, 0.0]])
    inp = SpikeTrains([0.0, 0.0], [0, 0], [1.0, 1.0], [0, 1, 2], 1)
    full = run_network(w_in, w_rec, inp, PARAMS, 10.0)
    n1 = int(full.offsets[1])
    assert n1 > 100  # runaway ping-pong between neurons 0 and 1
    np.testing.assert_array_equal(full.neurons[:6], [0, 1, 0, 1, 0, 1])
    assert run_network(w_in, w_rec, inp, PARAMS, 10.0, max_spikes=n1).equals(full)
    with pytest.raises(RuntimeError, match=r"sample 0 exceeded max_spikes=50: spike number 51"):
        run_network(w_in, w_rec, inp, PARAMS, 10.0, max_spikes=50)
    with pytest.raises(RuntimeError, match="max_spikes=0"):
        run_network(w_in, w_rec, inp, PARAMS, 10.0, max_spikes=0)


# ----------------------------------------------------------------------------------
# (5) edge cases and validation
# ----------------------------------------------------------------------------------
def test_empty_and_degenerate():
    w_in, w_rec = np.ones((3, 2)), np.zeros((3, 3))
    out = run_network(w_in, w_rec, SpikeTrains.empty(4, 2), PARAMS, 5.0)
    assert out.n_samples == 4 and out.n_events == 0 and out.n_neurons == 3
    # zero weights: no spikes; events after t_end: ignored
    inp = one_sample([0.0, 6.0], [0, 1], [1.0, 1.0], 2)
    assert run_network(np.zeros((3, 2)), w_rec, inp, PARAMS, 5.0).n_events == 0
    late = run_network(10 * np.ones((3, 2)), w_rec, one_sample([6.0], [0], [1.0], 2), PARAMS, 5.0)
    assert late.n_events == 0
    # no neuron at all
    none = run_network(np.zeros((0, 2)), np.zeros((0, 0)), inp, PARAMS, 5.0)
    assert none.n_events == 0 and none.n_neurons == 0 and none.n_samples == 1


def test_crossing_at_t_end():
    # a spike is found in (0, t_end], t_end included, and never after t_end
    inp = one_sample([0.0], [0], [1.0], 1)
    tk = float(run_network([[3.0]], [[0.0]], inp, PARAMS, 10.0).times[0])
    again = run_network([[3.0]], [[0.0]], inp, PARAMS, tk)
    assert again.n_events == 1 and again.times[0] <= tk
    assert again.times[0] == pytest.approx(tk, rel=1e-13)
    before = run_network([[3.0]], [[0.0]], inp, PARAMS, tk * (1 - 1e-9))
    assert before.n_events == 0


def test_batch_equals_samples_one_by_one():
    rng = np.random.default_rng(7)
    n, n_in, t_end = 8, 6, 6.0
    inputs = random_inputs(rng, 4, n_in, t_end, n_random=10, n_shared=4)
    w_in = rng.uniform(0.0, 1.5, (n, n_in))
    w_rec = rng.normal(0.0, 1.0, (n, n))
    out = run_network(w_in, w_rec, inputs, PARAMS, t_end)
    assert out.n_events > 10
    for s in range(inputs.n_samples):
        one = run_network(w_in, w_rec, inputs.sample(s), PARAMS, t_end)
        assert one.equals(out.sample(s))


def test_validation_errors():
    inp = one_sample([0.0, 1.0], [0, 1], [1.0, 1.0], 2)
    w_in, w_rec = np.ones((3, 2)), np.zeros((3, 3))
    run_network(w_in, w_rec, inp, PARAMS, 5.0)  # valid
    with pytest.raises(ValueError, match=r"weights_in must have shape \(3, 2\)"):
        run_network(np.ones((3, 3)), w_rec, inp, PARAMS, 5.0)
    with pytest.raises(ValueError, match="weights_in must have shape"):
        run_network(np.ones(2), w_rec, inp, PARAMS, 5.0)
    with pytest.raises(ValueError, match=r"weights_rec must have shape \(3, 3\)"):
        run_network(w_in, np.zeros((3, 4)), inp, PARAMS, 5.0)
    with pytest.raises(ValueError, match="weights_rec must be a 2-D"):
        run_network(w_in, np.zeros(3), inp, PARAMS, 5.0)
    bad = w_in.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="weights_in contains NaN"):
        run_network(bad, w_rec, inp, PARAMS, 5.0)
    bad = w_rec.copy()
    bad[0, 2] = np.inf
    with pytest.raises(ValueError, match="weights_rec contains NaN or inf"):
        run_network(w_in, bad, inp, PARAMS, 5.0)
    with pytest.raises(ValueError, match="weights_in must be a 2-D array of numbers"):
        run_network([["a", "b"]] * 3, w_rec, inp, PARAMS, 5.0)
    for t_end in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="t_end"):
            run_network(w_in, w_rec, inp, PARAMS, t_end)
    with pytest.raises(ValueError, match="input event times must be >= 0"):
        run_network(w_in, w_rec, one_sample([-1.0], [0], [1.0], 2), PARAMS, 5.0)
    with pytest.raises(TypeError, match="inputs must be a SpikeTrains"):
        run_network(w_in, w_rec, [0.0, 1.0], PARAMS, 5.0)
    with pytest.raises(TypeError, match="params must be a NeuronParams"):
        run_network(w_in, w_rec, inp, {"tau_m": 5.0}, 5.0)
    for kw, match in [({"rtol": 0.0}, "rtol"), ({"rtol": np.nan}, "rtol"),
                      ({"max_iter": 0}, "max_iter"), ({"max_iter": 2.5}, "max_iter"),
                      ({"max_spikes": -1}, "max_spikes"), ({"max_spikes": 1.5}, "max_spikes")]:
        with pytest.raises(ValueError, match=match):
            run_network(w_in, w_rec, inp, PARAMS, 5.0, **kw)
    # NaN in event times or amplitudes is refused by SpikeTrains itself
    with pytest.raises(ValueError, match="finite"):
        one_sample([np.nan], [0], [1.0], 2)
    with pytest.raises(ValueError, match="finite"):
        one_sample([0.0], [0], [np.nan], 2)
