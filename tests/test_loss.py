"""Count loss, readout and the supervisory (forced) spike.

Loss values, counts and per-spike gradients are checked on hand-built output
spike trains with hand-computed numbers; the forced spike's contribution to
the backward pass is compared with a reference written here from the rule in
``ForcedSpikes``' docstring: window (t_prev, t] after the neuron's last real
spike before t, Eq. 12 shares with h, weight path with
-1/max(u'(t), 1/max_dt_du). Real spike times come from the slow reference
neuron of ``conftest.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from eventsnn.engine.sweep import ForcedSpikes
from eventsnn.layers import DenseLayer
from eventsnn.loss import count_loss, readout
from eventsnn.network import Network
from eventsnn.params import GradParams, NeuronParams
from eventsnn.spikes import SpikeTrains

TAU_M, TAU_S, TAU_GRAD = 5.0, 3.0, 2.5


def trains(per_sample, n_neurons):
    """SpikeTrains from [[(time, neuron), ...] per sample] (amplitude 1)."""
    times, neurons, samples = [], [], []
    for s, events in enumerate(per_sample):
        for t, i in events:
            times.append(t)
            neurons.append(i)
            samples.append(s)
    return SpikeTrains.from_unsorted(times, neurons, np.ones(len(times)), samples, len(per_sample), n_neurons)


# ----------------------------------------------------------------------------------
# count loss
# ----------------------------------------------------------------------------------
@pytest.fixture
def batch():
    # sample 0, label 0: neuron 0 x2 (+1 supervisory = 3 < 5), neuron 1 x3 (> 1), neuron 2 silent (< 1)
    # sample 1, label 2: neuron 2 x6 (+1 = 7 > 5), neuron 0 x1 (= 1), neuron 1 x2 (> 1)
    s0 = [(0.5, 0), (2.0, 0), (0.7, 1), (1.1, 1), (3.9, 1)]
    s1 = [(0.2, 2), (0.9, 2), (1.4, 2), (2.2, 2), (3.0, 2), (4.4, 2), (1.0, 0), (0.3, 1), (2.5, 1)]
    return trains([s0, s1], 3), np.array([0, 2])


def test_count_loss_counts_value_and_gradients(batch):
    out, labels = batch
    cl = count_loss(out, labels, steps=5, t_end=5.0, desired=5.0, undesired=1.0)
    np.testing.assert_array_equal(cl.counts, [[3, 3, 0], [1, 2, 7]])
    # delta = (N - target)/T, one-sided zeroing:
    #   s0: n0 (3-5)/5 = -0.4 kept (label, too few); n1 (3-1)/5 = 0.4 kept; n2 (0-1)/5 zeroed (too few)
    #   s1: n0 0; n1 (2-1)/5 = 0.2 kept; n2 (7-5)/5 zeroed (label, too many)
    assert cl.loss == pytest.approx(0.5 * (0.4 ** 2 + 0.4 ** 2 + 0.2 ** 2), rel=1e-14)
    G = {(0, 0): 0.4, (0, 1): -0.4, (0, 2): 0.0, (1, 0): 0.0, (1, 1): -0.2, (1, 2): 0.0}
    want = np.array([G[(s, i)] for s, i in zip(out.samples, out.neurons)])
    np.testing.assert_allclose(cl.grad, want, rtol=1e-14, atol=0)
    assert cl.grad.shape == (out.n_events,)
    # the supervisory spikes: label neuron at t_end, carrying the label neuron's G
    f = cl.forced
    np.testing.assert_array_equal(f.samples, [0, 1])
    np.testing.assert_array_equal(f.neurons, [0, 2])
    np.testing.assert_array_equal(f.times, [5.0, 5.0])
    np.testing.assert_allclose(f.grads, [0.4, 0.0], rtol=1e-14, atol=0)


def test_count_loss_is_sum_over_batch(batch):
    out, labels = batch
    total = count_loss(out, labels, steps=5, t_end=5.0).loss
    parts = [count_loss(out.sample(s), labels[s:s + 1], steps=5, t_end=5.0).loss for s in range(2)]
    assert total == pytest.approx(sum(parts), rel=1e-14)


def test_count_loss_without_supervision(batch):
    out, labels = batch
    cl = count_loss(out, labels, steps=4, t_end=4.0, desired=3.0, undesired=0.0, supervision="none")
    assert cl.forced is None
    np.testing.assert_array_equal(cl.counts, [[2, 3, 0], [1, 2, 6]])
    # s0: n0 (2-3)/4 = -0.25 kept; n1 3/4 kept; n2 0.  s1: n0 1/4; n1 2/4; n2 (6-3)/4 zeroed
    d = {(0, 0): -0.25, (0, 1): 0.75, (0, 2): 0.0, (1, 0): 0.25, (1, 1): 0.5, (1, 2): 0.0}
    assert cl.loss == pytest.approx(0.5 * sum(v * v for v in d.values()), rel=1e-14)
    np.testing.assert_allclose(cl.grad, [-d[(s, i)] for s, i in zip(out.samples, out.neurons)], rtol=1e-14)


def test_one_sided_zeroing_both_directions():
    # label neuron with too many spikes -> no gradient; other neuron with too few -> no gradient
    out = trains([[(t, 0) for t in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)]], 2)
    cl = count_loss(out, [0], steps=5, t_end=5.0, desired=2.0, undesired=1.0, supervision="none")
    assert cl.loss == 0.0
    assert np.all(cl.grad == 0.0)
    # and the opposite side is kept: label too few, other too many
    cl = count_loss(out, [1], steps=5, t_end=5.0, desired=2.0, undesired=1.0, supervision="none")
    # n0 (6 - 1)/5 = 1, n1 (0 - 2)/5 = -0.4
    assert cl.loss == pytest.approx(0.5 * (1.0 + 0.16), rel=1e-14)
    np.testing.assert_allclose(cl.grad, -1.0, rtol=1e-14)


def test_silent_outputs_loss():
    out = SpikeTrains.empty(2, 3)
    cl = count_loss(out, [1, 2], steps=5, t_end=5.0)
    np.testing.assert_array_equal(cl.counts, [[0, 1, 0], [0, 0, 1]])
    assert cl.grad.shape == (0,)
    assert cl.loss == pytest.approx(2 * 0.5 * (4 / 5) ** 2, rel=1e-14)
    np.testing.assert_allclose(cl.forced.grads, [0.8, 0.8], rtol=1e-14)


def test_count_loss_rejects_bad_labels(batch):
    out, _ = batch
    with pytest.raises(ValueError):
        count_loss(out, [0, 3], steps=5, t_end=5.0)
    with pytest.raises(ValueError):
        count_loss(out, [0], steps=5, t_end=5.0)
    with pytest.raises(ValueError):
        count_loss(out, [0, 1], steps=5, t_end=5.0, supervision="last")


# ----------------------------------------------------------------------------------
# readout
# ----------------------------------------------------------------------------------
def test_readout_rules():
    out = trains([
        [(1.0, 0), (2.0, 0), (3.0, 1)],                       # largest count wins: 0
        [(3.0, 0), (4.0, 0), (1.0, 1), (4.5, 1), (0.5, 2)],   # tie 0/1: earlier first spike, 1
        [(2.0, 2), (3.0, 2), (2.0, 1), (3.5, 1)],             # tie, same first time: lower index, 1
        [],                                                   # silent: all tie -> lowest index 0
        [(4.9, 3)],                                           # one spike
    ], 4)
    np.testing.assert_array_equal(readout(out), [0, 1, 1, 0, 3])
    assert readout(out).dtype == np.int64


# ----------------------------------------------------------------------------------
# supervisory spikes: window and gradient against a hand-written reference
# ----------------------------------------------------------------------------------
T_END = 5.0
# two samples of events (time, source, amplitude) into a layer of 3 neurons
EVENTS = [
    [(0.2, 0, 1.0), (0.5, 1, 1.0), (1.7, 2, 0.6), (3.0, 2, 0.8), (4.1, 3, -0.5), (4.6, 0, 0.7)],
    [(0.3, 1, 1.0), (1.0, 2, 1.0), (2.0, 3, 1.0), (2.6, 0, 0.4), (4.8, 3, -1.0)],
]
W = np.array([[2.5, 1.0, 0.9, 1.2],     # sample 0: real spike early, rising again at t_end (u' > 1/4)
              [0.3, 3.0, 0.5, 0.3],     # sample 0: u'(t_end) small positive; sample 1: negative
              [15.0, 0.0, 0.0, 0.0]])   # sample 0: last real spike after the last input: empty window


def layer_inputs():
    per = [[(t, j) for t, j, _ in ev] for ev in EVENTS]
    st = SpikeTrains.from_unsorted(
        [t for ev in EVENTS for t, _, _ in ev], [j for ev in EVENTS for _, j, _ in ev],
        [a for ev in EVENTS for _, _, a in ev], [s for s, ev in enumerate(EVENTS) for _ in ev],
        len(EVENTS), 4)
    assert len(per) == st.n_samples
    return st


def h_ref(s, kernel, ref):
    return np.exp(-s / TAU_GRAD) if kernel == "exp" else ref.deps(s, TAU_M, TAU_S)


def forced_reference(ref, inputs, real, forced, kernel, drop=False):
    """dL/dW and dL/dt of the input events due to the forced spikes only.

    ``real[s][i]`` are the real spike times of neuron i in sample s.
    """
    dW = np.zeros_like(W)
    dt = np.zeros(inputs.n_events)
    info = []
    for s, i, t, G in zip(forced.samples, forced.neurons, forced.times, forced.grads):
        a, b = inputs.offsets[s], inputs.offsets[s + 1]
        tm, src, amp = inputs.times[a:b], inputs.neurons[a:b], inputs.amplitudes[a:b]
        before = [tk for tk in real[s][i] if tk < t]
        t_prev = max(before) if before else -np.inf
        win = np.flatnonzero((tm > t_prev) & (tm <= t))
        info.append((t_prev, win.size))
        if win.size == 0:
            continue
        c = W[i, src[win]] * amp[win]
        hv = h_ref(t - tm[win], kernel, ref)
        D = np.sum(c * hv)
        if not (D == 0 or (drop and D <= 0)):
            dt[a + win] += G * c * hv / D
        slope = np.sum(c * ref.deps(t - tm[win], TAU_M, TAU_S))
        dtdu = -1.0 / max(slope, 1.0 / forced.max_dt_du)
        for m in win:
            dW[i, src[m]] += G * dtdu * amp[m] * ref.eps(t - tm[m], TAU_M, TAU_S)
        info[-1] += (slope,)
    return dW, dt, info


def real_spikes(ref, inputs):
    out = []
    for s in range(inputs.n_samples):
        a, b = inputs.offsets[s], inputs.offsets[s + 1]
        tm, src, amp = inputs.times[a:b], inputs.neurons[a:b], inputs.amplitudes[a:b]
        out.append([ref.spike_times(tm, W[i, src] * amp, TAU_M, TAU_S, 1.0, T_END) for i in range(3)])
    return out


def forced_layer():
    layer = DenseLayer(4, 3, weight_norm=False, rng=np.random.default_rng(0))
    layer.weight = W
    inputs = layer_inputs()
    out, rec = layer.forward(inputs, NeuronParams(TAU_M, TAU_S, 1.0), T_END)
    return layer, inputs, out, rec


@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
@pytest.mark.parametrize("cap", [4.0, 2.0])
@pytest.mark.parametrize("drop", [False, True])
def test_forced_spike_window_and_gradient(ref, kernel, cap, drop):
    layer, inputs, out, rec = forced_layer()
    real = real_spikes(ref, inputs)
    # the library's real spikes are the reference neuron's
    for s in range(2):
        o = out.sample(s)
        for i in range(3):
            ref.assert_times_close(o.times[o.neurons == i], real[s][i], 1e-12, f"sample {s} neuron {i}")
    forced = ForcedSpikes(samples=np.array([0, 0, 0, 1, 1, 1]), neurons=np.array([0, 1, 2, 1, 2, 0]),
                          times=np.array([T_END, T_END, T_END, T_END, 3.0, 3.5]),
                          grads=np.array([0.7, -1.3, 0.9, 0.6, -0.4, 1.1]), max_dt_du=cap)
    dW, dt, info = forced_reference(ref, inputs, real, forced, kernel, drop)
    # the scenario covers what it is meant to: u' > 1/cap, 0 < u' < 1/cap, u' < 0, empty
    # windows (last real spike after the last input), and a forced spike before the
    # neuron's first real spike (window from the start, ending at the forced time)
    slopes = [x[2] for x in info if x[1]]
    assert info[2][1] == 0 and info[5][1] == 0
    assert any(sl > 1 / cap for sl in slopes) and any(0 < sl < 1 / cap for sl in slopes)
    assert any(sl < 0 for sl in slopes)
    assert info[4][0] == -np.inf and real[1][2][0] > 3.0 and info[4][1] == 4
    if drop and kernel == "depsilon":
        # h = u' there: the forced spike on a falling potential (u' < 0) loses its input path
        assert not np.array_equal(dt, forced_reference(ref, inputs, real, forced, kernel, False)[1])
    gp = GradParams(kernel=kernel, tau_grad=TAU_GRAD, drop_nonpositive=drop)
    lg = layer.backward(rec, np.zeros(out.n_events), gp, forced=forced)
    np.testing.assert_allclose(lg.weight, dW, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(lg.events, dt, rtol=1e-11, atol=1e-13)
    # the forced spikes add to the real spikes' gradient (linearity)
    g = np.random.default_rng(5).normal(size=out.n_events)
    only_real = layer.backward(rec, g, gp)
    both = layer.backward(rec, g, gp, forced=forced)
    np.testing.assert_allclose(both.weight, only_real.weight + dW, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(both.events, only_real.events + dt, rtol=1e-11, atol=1e-13)


def test_forced_spike_from_count_loss_through_network(ref):
    """count_loss's supervisory spikes reach the backward of the output layer only."""
    net = Network.from_arch("4", n_classes=3, weight_norm=False, t_end=T_END, seed=0)
    net.layers[0].weight = W
    inputs = layer_inputs()
    result = net.forward(inputs)
    labels = np.array([0, 1])
    cl = count_loss(result.spikes[-1], labels, steps=5, t_end=T_END)
    real = real_spikes(ref, inputs)
    counts = [[len(real[s][i]) for i in range(3)] for s in range(2)]
    np.testing.assert_array_equal(cl.counts - np.eye(3, dtype=int)[labels], counts)
    grads = net.backward(result, cl.grad, kernel="exp", input_grad=True, forced=cl.forced)
    plain = net.backward(result, cl.grad, kernel="exp", input_grad=True)
    dW, dt, _ = forced_reference(ref, inputs, real, cl.forced, "exp")
    np.testing.assert_allclose(grads.weights[0] - plain.weights[0], dW, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads.events[0] - plain.events[0], dt, rtol=1e-10, atol=1e-13)
    # Eq. 8 with supervision: the input events receive the real and the forced spikes' G
    assert np.sum(grads.events[0]) == pytest.approx(np.sum(cl.grad) + np.sum(cl.forced.grads), rel=1e-12)
    # the label neuron's G is (desired - N)/T with N including the forced spike
    np.testing.assert_allclose(cl.forced.grads,
                               [(5 - (counts[s][labels[s]] + 1)) / 5 for s in range(2)], rtol=1e-14)


# ----------------------------------------------------------------------------------
# confusion matrix, ties, most frequent errors
# ----------------------------------------------------------------------------------
def test_confusion_matrix_by_hand():
    from eventsnn.loss import confusion_matrix

    c = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 1, 2], 3)
    assert c.tolist() == [[1, 0, 0], [0, 0, 2], [0, 1, 1]]
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="3 labels but 2"):
        confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match=r"predicted must lie in \[0, 2\)"):
        confusion_matrix([0, 1], [0, 2], 2)
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix([-1, 1], [0, 1], 2)


def test_confusion_matrix_property():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from eventsnn.loss import confusion_matrix

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 6).flatmap(lambda k: st.tuples(
        st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), max_size=40))))
    def check(case):
        k, pairs = case
        want = [[0] * k for _ in range(k)]
        for t, p in pairs:
            want[t][p] += 1
        got = confusion_matrix([t for t, _ in pairs], [p for _, p in pairs], k)
        assert got.tolist() == want

    check()


def test_tied_counts_and_the_readout():
    from eventsnn.loss import tied_counts

    counts = np.array([[2, 1, 0], [2, 2, 0], [0, 0, 0], [1, 3, 3], [0, 0, 5]])
    assert tied_counts(counts).tolist() == [False, True, True, True, False]
    # on tied samples the earlier first spike decides; elsewhere the largest count alone
    # sample 0: counts 2, 1 (class 0, not tied); sample 1: counts 2, 2, tied, class 1 fires
    # first; sample 2: silent, tied at zero, class 0
    out = SpikeTrains.from_unsorted([0.5, 0.7, 0.2, 0.9, 1.0, 0.3, 0.4], [0, 0, 1, 0, 0, 1, 1],
                                    np.ones(7), [0, 0, 0, 1, 1, 1, 1], 3, 3)
    assert tied_counts(out.counts()).tolist() == [False, True, True]
    assert readout(out).tolist() == [0, 1, 0]


def test_most_confused():
    from eventsnn.loss import most_confused

    c = [[5, 2, 0], [3, 4, 2], [0, 2, 9]]
    assert most_confused(c, 3) == [(1, 0, 3), (0, 1, 2), (1, 2, 2)]
    assert most_confused(c, 10) == [(1, 0, 3), (0, 1, 2), (1, 2, 2), (2, 1, 2)]
    assert most_confused(np.diag([3, 4]), 5) == []
    with pytest.raises(ValueError, match="square"):
        most_confused([[1, 2, 3]], 2)
