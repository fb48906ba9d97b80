"""The public network API: gradients of ``Network.backward`` against central
finite differences of ``Network.forward`` (weights, weight-standardisation
gain/offset, input event times), conservation of the gradient sum through the
whole network (Eq. 8), and the weight standardisation of ``layers.py``
against a numpy reference and finite differences.

The loss is L = sum_k g_k t_k over the output spikes, with g_k a fixed random
number attached to the identity of spike k (sample, neuron, n-th spike of that
neuron), so that L stays the same smooth function when two output spikes of
one sample swap their order.
"""

from __future__ import annotations

import numpy as np
import pytest

from eventsnn.layers import DenseLayer, standardise, standardise_backward
from eventsnn.network import Network
from eventsnn.spikes import SpikeTrains

H = 1e-6  # finite-difference step (spike times are solved to ~1e-15)
T_END = 10.0


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------
def random_inputs(rng, n_samples, n_in, n_events, t_max):
    """Events at random times in [0, t_max), random sources, amplitudes of both signs."""
    times, neurons, amps, samples = [], [], [], []
    for s in range(n_samples):
        times.append(rng.uniform(0.0, t_max, n_events))
        neurons.append(rng.integers(0, n_in, n_events))
        amps.append(rng.uniform(-1.0, 2.0, n_events))
        samples.append(np.full(n_events, s))
    st = SpikeTrains.from_unsorted(np.concatenate(times), np.concatenate(neurons),
                                   np.concatenate(amps), np.concatenate(samples), n_samples, n_in)
    assert np.any(st.amplitudes < 0) and np.any(st.amplitudes > 0)
    return st


def occurrence(st: SpikeTrains) -> np.ndarray:
    """n-th spike of its (sample, neuron) for every event, by a plain loop."""
    out = np.zeros(st.n_events, dtype=np.int64)
    seen = {}
    smp = st.samples
    for k in range(st.n_events):
        key = (int(smp[k]), int(st.neurons[k]))
        out[k] = seen.get(key, 0)
        seen[key] = out[k] + 1
    return out


class Objective:
    """L = sum_k g(sample_k, neuron_k, n_k) t_k over the output spikes."""

    def __init__(self, rng, n_samples, n_classes, max_spikes=64):
        self.table = rng.normal(size=(n_samples, n_classes, max_spikes))

    def g(self, result):
        out = result.spikes[-1]
        return self.table[out.samples, out.neurons, occurrence(out)]

    def __call__(self, result):
        return float(np.sum(self.g(result) * result.spikes[-1].times))


def all_counts(result):
    return [s.counts() for s in result.spikes]


def same_counts(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def central_difference(net, inputs, objective, counts0, set_value, old):
    """(fd or None if a spike count changes in any layer) of L w.r.t. one scalar."""
    set_value(old + H)
    rp = net.forward(inputs)
    set_value(old - H)
    rm = net.forward(inputs)
    set_value(old)
    if not (same_counts(all_counts(rp), counts0) and same_counts(all_counts(rm), counts0)):
        return None
    return (objective(rp) - objective(rm)) / (2.0 * H)


def assert_grad_close(fd, an, what, scale):
    # the FD noise is ~1e-16 * |L| / H; the analytic value is exact (kernel "depsilon")
    tol = 1e-6 * scale + 1e-5 * abs(fd)
    assert abs(fd - an) <= tol, f"{what}: finite difference {fd!r}, backward {an!r}"


def active_network(arch, seed, weight_norm, scale, shift=0.0):
    net = Network.from_arch(arch, n_classes=4, weight_norm=weight_norm, seed=seed, t_end=T_END)
    for layer in net.layers:
        if weight_norm:
            layer.gain[:] = scale
        else:
            layer.weight = layer.weight * scale + shift
    return net


# Networks tuned (by seed and scale) to fire in every layer.
CASES = {
    "3 layers": dict(arch="20-15-8", seed=1, scale=4.0, shift=0.3),
    "2 layers": dict(arch="20-12", seed=2, scale=4.0, shift=0.3),
}


def build_case(name, weight_norm=False):
    c = CASES[name]
    rng = np.random.default_rng(100 + c["seed"])
    if weight_norm:
        net = active_network(c["arch"], c["seed"], True, 0.9)
        for layer in net.layers:
            layer.offset[:] = rng.uniform(0.1, 0.4, layer.n_out)
    else:
        net = active_network(c["arch"], c["seed"], False, c["scale"], c["shift"])
    inputs = random_inputs(rng, 4, net.n_inputs, 60, 9.0)
    objective = Objective(rng, 4, 4)
    result = net.forward(inputs)
    for l, s in enumerate(result.spikes):
        assert s.n_events >= 8, f"layer {l} too quiet for a meaningful test ({s.n_events} spikes)"
    return net, inputs, objective, result, rng


# ----------------------------------------------------------------------------------
# 1. weights against finite differences
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_weight_gradients_match_finite_differences(case):
    net, inputs, objective, result, rng = build_case(case)
    g = objective.g(result)
    grads = net.backward(result, g, kernel="depsilon")
    assert len(grads.weights) == len(net.layers)
    for l, layer in enumerate(net.layers):
        assert grads.weights[l].shape == layer.weight.shape
        assert grads.gains[l] is None and grads.offsets[l] is None
    counts0 = all_counts(result)
    scale = max(np.abs(gw).max() for gw in grads.weights)
    n_tried = n_skipped = n_nonzero = 0
    for l, layer in enumerate(net.layers):
        w = layer.weight  # the live array: perturbed in place
        # every output row that takes part (non-zero gradient) first, then random ones
        rows = np.flatnonzero(np.any(grads.weights[l] != 0, axis=1))
        picks = [(int(rng.choice(rows)), int(rng.integers(layer.n_in))) for _ in range(8)] if rows.size else []
        picks += [(int(rng.integers(layer.n_out)), int(rng.integers(layer.n_in))) for _ in range(4)]
        for i, j in picks:
            n_tried += 1

            def set_w(v, w=w, i=i, j=j):
                w[i, j] = v

            fd = central_difference(net, inputs, objective, counts0, set_w, float(w[i, j]))
            if fd is None:
                n_skipped += 1
                continue
            an = grads.weights[l][i, j]
            n_nonzero += an != 0
            assert_grad_close(fd, an, f"layer {l} weight[{i}, {j}]", scale)
    assert n_skipped <= 0.15 * n_tried, f"{n_skipped}/{n_tried} perturbations changed a spike count"
    assert n_nonzero >= n_tried // 2


def test_weight_norm_gradients_match_finite_differences():
    net, inputs, objective, result, rng = build_case("3 layers", weight_norm=True)
    g = objective.g(result)
    grads = net.backward(result, g, kernel="depsilon")
    counts0 = all_counts(result)
    scale = max(max(np.abs(a).max() for a in grads.weights), max(np.abs(a).max() for a in grads.gains),
                max(np.abs(a).max() for a in grads.offsets))
    n_tried = n_skipped = 0
    for l, layer in enumerate(net.layers):
        assert grads.gains[l].shape == (layer.n_out,) and grads.offsets[l].shape == (layer.n_out,)
        targets = []
        for _ in range(5):
            i, j = int(rng.integers(layer.n_out)), int(rng.integers(layer.n_in))
            targets.append((f"weight[{i}, {j}]", layer.weight, (i, j), grads.weights[l][i, j]))
        for _ in range(3):
            i = int(rng.integers(layer.n_out))
            targets.append((f"gain[{i}]", layer.gain, (i,), grads.gains[l][i]))
            targets.append((f"offset[{i}]", layer.offset, (i,), grads.offsets[l][i]))
        for what, arr, idx, an in targets:
            n_tried += 1

            def set_v(v, arr=arr, idx=idx):
                arr[idx] = v

            fd = central_difference(net, inputs, objective, counts0, set_v, float(arr[idx]))
            if fd is None:
                n_skipped += 1
                continue
            assert_grad_close(fd, an, f"layer {l} {what}", scale)
    assert n_skipped <= 0.2 * n_tried, f"{n_skipped}/{n_tried} perturbations changed a spike count"


def test_input_event_time_gradients_match_finite_differences():
    net, inputs, objective, result, rng = build_case("3 layers")
    g = objective.g(result)
    grads = net.backward(result, g, kernel="depsilon", input_grad=True)
    assert grads.events[0] is not None and grads.events[0].shape == (inputs.n_events,)
    assert net.backward(result, g, kernel="depsilon", input_grad=False).events[0] is None
    counts0 = all_counts(result)
    scale = np.abs(grads.events[0]).max()
    assert scale > 0
    base = inputs.times.copy()
    nz = np.flatnonzero(grads.events[0] != 0)
    picks = list(rng.choice(nz, size=min(15, nz.size), replace=False)) + list(rng.integers(0, inputs.n_events, 5))
    n_skipped = 0
    for m in picks:
        def forward_with(t, m=m):
            times = base.copy()
            times[m] = t
            return net.forward(SpikeTrains(times, inputs.neurons, inputs.amplitudes, inputs.offsets,
                                           inputs.n_neurons))
        rp, rm = forward_with(base[m] + H), forward_with(base[m] - H)
        if not (same_counts(all_counts(rp), counts0) and same_counts(all_counts(rm), counts0)):
            n_skipped += 1
            continue
        fd = (objective(rp) - objective(rm)) / (2 * H)
        assert_grad_close(fd, grads.events[0][m], f"input event {m} (t = {base[m]:.4f})", scale)
    assert n_skipped <= 0.15 * len(picks)


# ----------------------------------------------------------------------------------
# Eq. 8: conservation of the gradient sum through the network
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["depsilon", "exp"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_sum_conserved_through_layers(case, kernel):
    net, inputs, _, result, rng = build_case(case)
    g = rng.uniform(-1.0, 2.0, result.spikes[-1].n_events)
    grads = net.backward(result, g, kernel=kernel, input_grad=True)
    total = g.sum()
    for l in range(len(net.layers)):
        ev = grads.events[l]
        assert ev.shape == ((inputs if l == 0 else result.spikes[l - 1]).n_events,)
        assert abs(total) > 1.0
        assert abs(ev.sum() - total) <= 1e-9 * abs(total), (
            f"{kernel}: sum of dL/dt at the input of layer {l} is {ev.sum()!r}, output sum {total!r}")


@pytest.mark.parametrize("kernel", ["depsilon", "exp"])
def test_input_grad_scale_shrinks_sum_per_layer(kernel):
    net, _, _, result, rng = build_case("3 layers")
    g = rng.uniform(0.5, 1.5, result.spikes[-1].n_events)
    plain = net.backward(result, g, kernel=kernel, input_grad=True)
    scaled = net.backward(result, g, kernel=kernel, input_grad=True, input_grad_scale=0.85)
    n = len(net.layers)
    for l in range(n):
        want = 0.85 ** (n - l) * g.sum()
        assert scaled.events[l].sum() == pytest.approx(want, rel=1e-9), f"layer {l}"
    # the scale touches only the input path: the output layer's weight gradient is unchanged
    np.testing.assert_array_equal(scaled.weights[-1], plain.weights[-1])


# ----------------------------------------------------------------------------------
# 6. weight standardisation (layers.py)
# ----------------------------------------------------------------------------------
def np_standardise(w, gain, offset):
    mean = w.mean(axis=1, keepdims=True)
    var = ((w - mean) ** 2).mean(axis=1, keepdims=True)  # population variance
    w_hat = (w - mean) / np.sqrt(var + 1e-5)
    return gain[:, None] * w_hat + offset[:, None], w_hat, 1.0 / np.sqrt(var[:, 0] + 1e-5)


def test_standardise_matches_numpy_reference():
    rng = np.random.default_rng(7)
    w = rng.normal(size=(6, 9)) * rng.uniform(0.01, 3.0, (6, 1)) + rng.normal(size=(6, 1))
    gain, offset = rng.uniform(0.5, 2.0, 6), rng.normal(size=6)
    w_eff, w_hat, inv_std = standardise(w, gain, offset)
    r_eff, r_hat, r_inv = np_standardise(w, gain, offset)
    np.testing.assert_allclose(w_eff, r_eff, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w_hat, r_hat, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inv_std, r_inv, rtol=1e-12)
    # with gain 1 and offset 0 every row has mean 0 and variance var/(var + 1e-5)
    e1 = standardise(w, np.ones(6), np.zeros(6))[0]
    np.testing.assert_allclose(e1.mean(axis=1), 0.0, atol=1e-12)
    var = w.var(axis=1)
    np.testing.assert_allclose(e1.var(axis=1), var / (var + 1e-5), rtol=1e-10)


def test_standardise_backward_matches_finite_differences():
    rng = np.random.default_rng(8)
    n_out, n_in = 4, 7
    w = rng.normal(size=(n_out, n_in))
    w[2] *= 0.003  # a row whose variance is comparable to the 1e-5 of the formula
    gain, offset = rng.uniform(0.5, 2.0, n_out), rng.normal(size=n_out)
    D = rng.normal(size=(n_out, n_in))  # L = sum(D * W_eff)

    def L(w_, g_, o_):
        return float(np.sum(D * np_standardise(w_, g_, o_)[0]))

    _, w_hat, inv_std = standardise(w, gain, offset)
    d_w, d_gain, d_offset = standardise_backward(D, w_hat, inv_std, gain)
    h = 1e-6
    fd_w = np.zeros_like(w)
    for i in range(n_out):
        for j in range(n_in):
            wp, wm = w.copy(), w.copy()
            wp[i, j] += h * max(abs(w[i, j]), 1e-3)
            wm[i, j] -= h * max(abs(w[i, j]), 1e-3)
            fd_w[i, j] = (L(wp, gain, offset) - L(wm, gain, offset)) / (wp[i, j] - wm[i, j])
    fd_g = np.array([(L(w, gain + h * e, offset) - L(w, gain - h * e, offset)) / (2 * h) for e in np.eye(n_out)])
    fd_o = np.array([(L(w, gain, offset + h * e) - L(w, gain, offset - h * e)) / (2 * h) for e in np.eye(n_out)])
    np.testing.assert_allclose(d_gain, fd_g, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(d_offset, fd_o, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(d_offset, D.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(d_w, fd_w, rtol=1e-5, atol=1e-6 * np.abs(fd_w).max())


def test_layer_weight_assignment_is_validated():
    layer = DenseLayer(5, 3, rng=np.random.default_rng(0))
    live = layer.weight
    with pytest.raises(ValueError):
        layer.weight = np.zeros((5, 3))
    with pytest.raises(ValueError):
        layer.weight = np.zeros(15)
    bad = np.zeros((3, 5))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError):
        layer.weight = bad
    bad[1, 2] = np.inf
    with pytest.raises(ValueError):
        layer.weight = bad
    new = np.arange(15.0).reshape(3, 5)
    layer.weight = new
    np.testing.assert_array_equal(layer.weight, new)
    assert layer.weight is live  # assigned in place (optimisers keep their reference)
    new[0, 0] = -1.0
    assert layer.weight[0, 0] == 0.0  # copied, not aliased


def test_effective_weight():
    rng = np.random.default_rng(3)
    plain = DenseLayer(6, 4, weight_norm=False, rng=rng)
    assert plain.effective_weight is plain.weight
    assert set(plain.parameters()) == {"weight"}
    normed = DenseLayer(6, 4, weight_norm=True, rng=rng)
    normed.gain[:] = rng.uniform(0.5, 2.0, 4)
    normed.offset[:] = rng.normal(size=4)
    np.testing.assert_allclose(normed.effective_weight,
                               np_standardise(normed.weight, normed.gain, normed.offset)[0], rtol=1e-12)
    assert set(normed.parameters()) == {"weight", "gain", "offset"}


def test_from_arch_shapes_and_parameters():
    net = Network.from_arch("20-15-8", n_classes=4, weight_norm=False, seed=0)
    assert [l.weight.shape for l in net.layers] == [(15, 20), (8, 15), (4, 8)]
    assert [name for name, _ in net.parameters()] == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    same = Network.from_arch("20-15-8", n_classes=4, weight_norm=False, seed=0)
    for a, b in zip(net.layers, same.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
    net2 = Network.from_arch("20-15-8", n_classes=4, seed=0)
    assert len(net2.parameters()) == 9
    with pytest.raises(ValueError):
        Network.from_arch("20-x-8", n_classes=4)


# ----------------------------------------------------------------------------------
# more paths: current-encoded images (dense currents, repeated rows), amplitudes
# ----------------------------------------------------------------------------------
def test_weight_gradients_with_current_encoded_images():
    """T impulses per pixel at t = 0..T-1: groups of simultaneous events, identical rows."""
    from eventsnn.encode import current

    rng = np.random.default_rng(11)
    images = rng.uniform(-0.5, 1.5, (6, 16))
    images[rng.random(images.shape) < 0.3] = 0.0
    inputs = current(images, steps=5)
    for weight_norm in (False, True):
        net = Network.from_arch("16-12", n_classes=4, weight_norm=weight_norm, seed=5, t_end=5.0)
        for layer in net.layers:
            if weight_norm:
                layer.gain[:] = 0.6
                layer.offset[:] = 0.3
            else:
                layer.weight = layer.weight * 3.0 + 0.5
        result = net.forward(inputs)
        assert all(s.n_events >= 8 for s in result.spikes), [s.n_events for s in result.spikes]
        eng = result.records[0].engine  # the case covers the dense path with shared rows
        assert eng.X is not None and eng.X.shape[0] < eng.groups.n_groups
        objective = Objective(rng, 6, 4)
        grads = net.backward(result, objective.g(result), kernel="depsilon")
        counts0 = all_counts(result)
        scale = max(np.abs(a).max() for a in grads.weights)
        n_tried = n_skipped = n_nonzero = 0
        for l, layer in enumerate(net.layers):
            w = layer.weight
            for _ in range(8):
                i, j = int(rng.integers(layer.n_out)), int(rng.integers(layer.n_in))
                n_tried += 1

                def set_w(v, w=w, i=i, j=j):
                    w[i, j] = v

                fd = central_difference(net, inputs, objective, counts0, set_w, float(w[i, j]))
                if fd is None:
                    n_skipped += 1
                    continue
                assert_grad_close(fd, grads.weights[l][i, j], f"weight_norm={weight_norm} layer {l} [{i}, {j}]",
                                  scale)
                n_nonzero += fd != 0
        assert n_skipped <= 0.2 * n_tried
        assert n_nonzero >= n_tried // 2


def test_input_amplitude_gradients_match_finite_differences():
    net, inputs, objective, result, rng = build_case("3 layers")
    grads = net.backward(result, objective.g(result), kernel="depsilon", input_grad=True)
    d_amp = grads.layers[0].amplitudes
    assert d_amp.shape == (inputs.n_events,)
    counts0 = all_counts(result)
    scale = np.abs(d_amp).max()
    n_skipped = 0
    picks = rng.choice(inputs.n_events, size=15, replace=False)
    for m in picks:
        def forward_with(a, m=m):
            amps = inputs.amplitudes.copy()
            amps[m] = a
            return net.forward(SpikeTrains(inputs.times, inputs.neurons, amps, inputs.offsets, inputs.n_neurons))
        a0 = inputs.amplitudes[m]
        rp, rm = forward_with(a0 + H), forward_with(a0 - H)
        if not (same_counts(all_counts(rp), counts0) and same_counts(all_counts(rm), counts0)):
            n_skipped += 1
            continue
        fd = (objective(rp) - objective(rm)) / (2 * H)
        assert_grad_close(fd, d_amp[m], f"amplitude of input event {m}", scale)
    assert n_skipped <= 3


# ----------------------------------------------------------------------------------
# one layer against Eqs. 12-14 written out, with the official stabilisers
# ----------------------------------------------------------------------------------
def layer_reference(ref, inputs, W, g_of, kernel, tau_grad, cap, scale, drop, t_end):
    """dL/dW and dL/dt of the input events of one dense layer, from the formulas.

    ``g_of(s, i, k)`` is G of the k-th spike of neuron i in sample s.
    """
    tau_m, tau_s = 5.0, 3.0
    dW = np.zeros_like(W)
    dt = np.zeros(inputs.n_events)
    n_nonpositive = 0
    for s in range(inputs.n_samples):
        a, b = inputs.offsets[s], inputs.offsets[s + 1]
        tm, src, amp = inputs.times[a:b], inputs.neurons[a:b], inputs.amplitudes[a:b]
        for i in range(W.shape[0]):
            c_all = W[i, src] * amp
            spikes = ref.spike_times(tm, c_all, tau_m, tau_s, 1.0, t_end)
            prev = -np.inf
            for k, tk in enumerate(spikes):
                win = np.flatnonzero((tm > prev) & (tm <= tk))
                prev = tk
                G = g_of(s, i, k)
                c, lag = c_all[win], tk - tm[win]
                hv = np.exp(-lag / tau_grad) if kernel == "exp" else ref.deps(lag, tau_m, tau_s)
                D = np.sum(c * hv)
                n_nonpositive += D <= 0
                if not (D == 0 or (drop and D <= 0)):
                    dt[a + win] += scale * G * c * hv / D
                dtdu = -1.0 / np.sum(c * ref.deps(lag, tau_m, tau_s))
                if cap is not None:
                    dtdu = max(dtdu, -cap)
                for m, e in zip(win, ref.eps(lag, tau_m, tau_s)):
                    dW[i, src[m]] += G * dtdu * amp[m] * e
    return dW, dt, n_nonpositive


@pytest.mark.parametrize("kernel,cap,scale,drop", [
    ("exp", None, 1.0, False),
    ("depsilon", None, 1.0, False),
    ("exp", 4.0, 0.85, True),
    ("exp", 1.5, 1.0, False),
    ("depsilon", 2.0, 0.85, True),
])
def test_layer_backward_matches_formulas(ref, kernel, cap, scale, drop):
    from eventsnn.params import GradParams, NeuronParams

    rng = np.random.default_rng(21)
    layer = DenseLayer(10, 6, weight_norm=False, rng=rng)
    layer.weight = rng.uniform(-0.6, 1.4, (6, 10))
    inputs = random_inputs(rng, 3, 10, 30, 9.0)
    out, rec = layer.forward(inputs, NeuronParams(), T_END)
    assert out.n_events >= 15
    table = rng.normal(size=(3, 6, 64))
    g = table[out.samples, out.neurons, occurrence(out)]
    lg = layer.backward(rec, g, GradParams(kernel=kernel, tau_grad=2.5, max_dt_du=cap, input_grad_scale=scale,
                                           drop_nonpositive=drop))
    dW, dt, _ = layer_reference(ref, inputs, layer.weight, lambda s, i, k: table[s, i, k], kernel, 2.5,
                                   cap, scale, drop, T_END)
    # (real threshold crossings almost never have a non-positive denominator in continuous
    # time; the "drop" rule is exercised by the supervisory spikes in test_loss.py)
    np.testing.assert_allclose(lg.weight, dW, rtol=1e-9, atol=1e-11 * np.abs(dW).max())
    np.testing.assert_allclose(lg.events, dt, rtol=1e-9, atol=1e-11 * np.abs(dt).max())
    if cap is not None:
        assert lg.raw.n_clamped > 0


# ----------------------------------------------------------------------------------
# the backward uses the parameters of the forward pass
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_norm", [False, True])
def test_backward_uses_parameters_of_the_forward_pass(weight_norm):
    """``DenseLayer.backward``: "Uses the parameters as they were at the forward pass
    (stored in ``record``)". Changing the parameters between forward and backward
    (e.g. an optimiser step, or assigning ``layer.weight``) must not change the result."""
    net, _, objective, result, _ = build_case("3 layers", weight_norm=weight_norm)
    g = objective.g(result)
    before = net.backward(result, g, kernel="depsilon", input_grad=True)
    for layer in net.layers:
        layer.weight = layer.weight * 1.5 + 0.1  # assigned through the public setter
        layer.gain[:] = 2.0
        layer.offset[:] = -0.2
    after = net.backward(result, g, kernel="depsilon", input_grad=True)
    for l in range(len(net.layers)):
        np.testing.assert_array_equal(after.weights[l], before.weights[l], err_msg=f"dL/dW of layer {l}")
        np.testing.assert_array_equal(after.events[l], before.events[l], err_msg=f"dL/dt into layer {l}")
