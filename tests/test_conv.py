"""Convolution and pooling: forward against per-neuron simulations of the receptive
fields and against the equivalent dense layer, backward against finite differences
and the dense layer, Eq. 8 through conv and pooling, the coincident-spike rule of
pooling, and a conv -> pool -> conv -> pool -> dense stack."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spike_refs import spike_ranks

from eventsnn import GradParams, NeuronParams, SpikeTrains, neuron_spike_times
from eventsnn.conv_layers import ConvLayer, PoolLayer
from eventsnn.engine.conv import (
    ConvGeometry,
    conv_backward,
    conv_forward,
    dense_equivalent,
)
from eventsnn.engine.sweep import ForcedSpikes, dense_backward, dense_forward
from eventsnn.layers import DenseLayer

PARAMS = NeuronParams(5.0, 3.0, 1.0)


# ----------------------------------------------------------------------------------
# references written from the definitions
# ----------------------------------------------------------------------------------
def out_hw(h, w, k, stride, pad):
    return (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


def ref_full_weight(K, in_shape, stride, pad):
    """Dense (n_out, n_in) matrix of the convolution and, per entry, the flat index of
    the kernel entry it holds (-1 outside the receptive fields), by plain loops."""
    c_out, c_in, k, _ = K.shape
    _, h, w = in_shape
    ho, wo = out_hw(h, w, k, stride, pad)
    full = np.zeros((c_out * ho * wo, c_in * h * w))
    tap = np.full(full.shape, -1, dtype=np.int64)
    for co in range(c_out):
        for oy in range(ho):
            for ox in range(wo):
                i = (co * ho + oy) * wo + ox
                for ci in range(c_in):
                    for dy in range(k):
                        for dx in range(k):
                            y, x = oy * stride - pad + dy, ox * stride - pad + dx
                            if 0 <= y < h and 0 <= x < w:
                                j = (ci * h + y) * w + x
                                full[i, j] = K[co, ci, dy, dx]
                                tap[i, j] = np.ravel_multi_index((co, ci, dy, dx), K.shape)
    return full, tap


def fold(d_full, tap, shape):
    """dL/dK from dL/dW of the dense equivalent (weight sharing: sum over positions)."""
    dK = np.zeros(int(np.prod(shape)))
    m = tap >= 0
    np.add.at(dK, tap[m], d_full[m])
    return dK.reshape(shape)


def image_batch(rng, n_samples, in_shape, T=5):
    """Static images: T impulses of amplitude x at t = 0..T-1 per non-zero pixel
    (normalised-looking values, some zero, some negative)."""
    n_in = int(np.prod(in_shape))
    x = rng.normal(0.3, 0.8, (n_samples, n_in)) * (rng.uniform(size=(n_samples, n_in)) < 0.85)
    s_idx, j_idx = np.nonzero(x)
    times = np.tile(np.arange(float(T)), s_idx.size)
    return SpikeTrains.from_unsorted(times, np.repeat(j_idx, T), np.repeat(x[s_idx, j_idx], T),
                                     np.repeat(s_idx, T), n_samples, n_in), float(T)


def spike_batch(rng, n_samples, in_shape, n_events, t_end=10.0, rounded=5):
    """Spikes at random times (every ``rounded``-th time rounded: shared times), some
    events with a non-unit amplitude."""
    n_in = int(np.prod(in_shape))
    n = n_samples * n_events
    times = rng.uniform(0.0, t_end - 0.5, n)
    times[::rounded] = np.round(times[::rounded])
    amps = np.where(rng.uniform(size=n) < 0.8, 1.0, rng.uniform(0.3, 1.5, n))
    return SpikeTrains.from_unsorted(times, rng.integers(0, n_in, n), amps,
                                     np.repeat(np.arange(n_samples), n_events), n_samples, n_in), t_end


def spikes_of(out, s, i):
    smp = out.sample(s)
    return smp.times[smp.neurons == i]


# (in_shape, c_out, k, stride, padding)
GEOMS = {
    "s1p0": ((2, 7, 6), 3, 3, 1, 0),
    "s2p2": ((2, 8, 7), 3, 3, 2, 2),
    "k5p2": ((1, 9, 8), 2, 5, 1, 2),
    "s2k2": ((3, 6, 6), 2, 2, 2, 0),
}


def make_case(name, kind, seed):
    rng = np.random.default_rng(seed)
    in_shape, c_out, k, stride, pad = GEOMS[name]
    geom = ConvGeometry(*in_shape, c_out, k, stride, pad)
    if kind == "image":
        inputs, t_end = image_batch(rng, 3, in_shape)
        K = rng.normal(0.12, 0.35, geom.weight_shape)
    else:
        inputs, t_end = spike_batch(rng, 3, in_shape, 70)
        K = rng.normal(0.45, 0.6, geom.weight_shape)
    return geom, K, inputs, t_end, rng


# ----------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GEOMS))
@pytest.mark.parametrize("kind", ["image", "sparse"])
def test_forward_matches_per_neuron(ref, name, kind):
    """Every output neuron spikes as neuron_spike_times on its receptive-field events;
    both computation paths agree."""
    geom, K, inputs, t_end, rng = make_case(name, kind, 11)
    out, rec = conv_forward(inputs, K, geom, PARAMS, t_end)
    assert rec.dense == (kind == "image"), "auto path: images dense, spikes sparse"
    other, rec_o = conv_forward(inputs, K, geom, PARAMS, t_end, path="sparse" if rec.dense else "dense")
    assert rec_o.dense != rec.dense
    np.testing.assert_array_equal(other.offsets, out.offsets)
    np.testing.assert_array_equal(other.neurons, out.neurons)
    np.testing.assert_allclose(other.times, out.times, rtol=1e-13)
    assert out.n_neurons == geom.n_out and out.n_samples == inputs.n_samples
    assert np.all(out.amplitudes == 1.0)
    assert out.n_events >= 20
    for s in range(inputs.n_samples):
        st_ = out.sample(s)
        dt, dn = np.diff(st_.times), np.diff(st_.neurons)
        assert np.all((dt > 0) | ((dt == 0) & (dn > 0))), "sorted by time, then neuron"
        assert np.all((st_.times > 0) & (st_.times <= t_end))
    # per-neuron simulations of the receptive fields: 16 neurons that fire, 8 at random
    # (all neurons are compared with the equivalent dense layer below)
    full, tap = ref_full_weight(K, geom.in_shape, geom.stride, geom.padding)
    fired = np.unique(out.samples * geom.n_out + out.neurons)
    picks = np.concatenate([rng.choice(fired, size=min(16, fired.size), replace=False),
                            rng.integers(0, inputs.n_samples * geom.n_out, 8)])
    for s, i in zip(*np.divmod(picks, geom.n_out)):
        smp = inputs.sample(s)
        rf = tap[i, smp.neurons] >= 0  # the events of the receptive field
        want = neuron_spike_times(smp.times[rf], full[i, smp.neurons[rf]] * smp.amplitudes[rf],
                                  tau_m=PARAMS.tau_m, tau_s=PARAMS.tau_s,
                                  threshold=PARAMS.threshold, t_end=t_end)
        ref.assert_times_close(spikes_of(out, s, i), want, 1e-12, f"{name} sample {s} neuron {i}")
    od, _ = dense_forward(inputs, full, PARAMS, t_end)
    np.testing.assert_array_equal(out.offsets, od.offsets)
    np.testing.assert_array_equal(out.neurons, od.neurons)
    np.testing.assert_allclose(out.times, od.times, rtol=1e-12)


def test_forward_brute_force_reference(ref):
    """A few neurons straight against the brute-force reference of conftest."""
    geom, K, inputs, t_end, _ = make_case("s2p2", "sparse", 12)
    out, _ = conv_forward(inputs, K, geom, PARAMS, t_end)
    full, _ = ref_full_weight(K, geom.in_shape, geom.stride, geom.padding)
    smp = inputs.sample(0)
    for i in range(0, geom.n_out, 7):
        c = full[i, smp.neurons] * smp.amplitudes
        want = ref.spike_times(smp.times, c, PARAMS.tau_m, PARAMS.tau_s, PARAMS.threshold, t_end)
        ref.assert_times_close(spikes_of(out, 0, i), want, 1e-12, f"neuron {i}")


def test_many_spikes_per_unit():
    """Neurons firing after almost every input (far more than the planned buffer):
    the forward re-runs with exact sizes and loses nothing."""
    rng = np.random.default_rng(13)
    geom = ConvGeometry(1, 3, 3, 4, 2, 1, 0)
    n = 120
    times = np.cumsum(rng.uniform(1.0, 2.0, n))
    inputs = SpikeTrains(times, rng.integers(0, 9, n), np.ones(n), [0, n], 9)
    K = rng.uniform(4.0, 7.0, geom.weight_shape)
    t_end = float(times[-1] + 5.0)
    for path in ("sparse", "dense"):
        out, _ = conv_forward(inputs, K, geom, PARAMS, t_end, path=path)
        od, _ = dense_forward(inputs, ref_full_weight(K, geom.in_shape, 1, 0)[0], PARAMS, t_end)
        assert out.n_events == od.n_events and out.n_events > 4 * geom.n_out * 4
        np.testing.assert_array_equal(out.neurons, od.neurons)
        np.testing.assert_allclose(out.times, od.times, rtol=1e-12)


def test_empty_and_late_inputs():
    geom = ConvGeometry(2, 5, 5, 3, 3, 1, 1)
    K = np.ones(geom.weight_shape)
    for path in ("sparse", "dense"):
        out, rec = conv_forward(SpikeTrains.empty(2, geom.n_in), K, geom, PARAMS, 5.0, path=path)
        assert out.n_events == 0 and out.n_samples == 2 and out.n_neurons == geom.n_out
        g = conv_backward(rec, np.zeros(0))
        assert g.d_weight.shape == geom.weight_shape and np.all(g.d_weight == 0)
        assert g.d_times.shape == (0,) and g.flags.shape == (0,)
    # events after t_end change nothing and get no gradient
    rng = np.random.default_rng(14)
    inputs, t_end = spike_batch(rng, 2, geom.in_shape, 40, t_end=8.0)
    late = SpikeTrains.from_unsorted(
        np.concatenate([inputs.times, [8.0 + 1e-9, 9.0, 12.0]]),
        np.concatenate([inputs.neurons, [0, 12, 24]]), np.concatenate([inputs.amplitudes, [5.0] * 3]),
        np.concatenate([inputs.samples, [0, 1, 1]]), 2, geom.n_in)
    for path in ("sparse", "dense"):
        out, _ = conv_forward(inputs, 0.7 * K, geom, PARAMS, t_end, path=path)
        out2, rec2 = conv_forward(late, 0.7 * K, geom, PARAMS, t_end, path=path)
        assert out.n_events > 0
        np.testing.assert_array_equal(out2.neurons, out.neurons)
        np.testing.assert_allclose(out2.times, out.times, rtol=1e-14)
        g = conv_backward(rec2, np.ones(out2.n_events))
        assert np.all(g.d_times[late.times > t_end] == 0.0)


def test_validation():
    geom = ConvGeometry(1, 4, 4, 2, 3)
    st_ = SpikeTrains([0.5, 1.0], [0, 5], [1.0, 1.0], [0, 2], 16)
    K = np.ones(geom.weight_shape)
    with pytest.raises(ValueError, match="expects 16 inputs"):
        conv_forward(SpikeTrains([0.5], [0], [1.0], [0, 1], 15), K, geom, PARAMS, 5.0)
    with pytest.raises(ValueError, match="weight"):
        conv_forward(st_, np.ones((2, 1, 2, 2)), geom, PARAMS, 5.0)
    with pytest.raises(ValueError, match="weight"):
        conv_forward(st_, np.full(geom.weight_shape, np.nan), geom, PARAMS, 5.0)
    with pytest.raises(ValueError, match="path"):
        conv_forward(st_, K, geom, PARAMS, 5.0, path="gpu")
    for bad in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="t_end"):
            conv_forward(st_, K, geom, PARAMS, bad)
    neg = SpikeTrains([-0.5, 1.0], [0, 5], [1.0, 1.0], [0, 2], 16)
    for path in ("sparse", "dense"):
        with pytest.raises(ValueError, match="times"):
            conv_forward(neg, K, geom, PARAMS, 5.0, path=path)
    with pytest.raises(ValueError, match="does not fit"):
        ConvGeometry(1, 4, 4, 2, 5)
    with pytest.raises(ValueError, match="stride"):
        ConvGeometry(1, 4, 4, 2, 3, 0)
    out, rec = conv_forward(st_, 3 * K, geom, PARAMS, 5.0)
    with pytest.raises(ValueError, match="grad_out"):
        conv_backward(rec, np.ones(out.n_events + 1))
    with pytest.raises(ValueError, match="grad_out"):
        conv_backward(rec, np.full(out.n_events, np.nan))


# ----------------------------------------------------------------------------------
# backward: the equivalent dense layer, finite differences, Eq. 8
# ----------------------------------------------------------------------------------
GRAD_RULES = {
    "exp": GradParams(kernel="exp"),
    "depsilon": GradParams(kernel="depsilon"),
    "stabilised": GradParams(kernel="exp", tau_grad=20.0, max_dt_du=0.8, input_grad_scale=0.85,
                             drop_nonpositive=True),
}


@pytest.mark.parametrize("rule", list(GRAD_RULES))
@pytest.mark.parametrize("path", ["dense", "sparse"])
@pytest.mark.parametrize("kind", ["image", "sparse"])
def test_backward_matches_dense_equivalent(kind, path, rule):
    """Forward and backward (Eqs. 12-14, stabilisers, forced spikes) equal those of a
    dense layer whose weight matrix is the convolution's; dL/dK is dL/dW summed over
    the shared entries."""
    geom, K, inputs, t_end, rng = make_case("s2p2", kind, 21)
    if kind == "sparse":
        # an extra sample in which old inhibition (input (0, 3, 3) at t = 0) and recent
        # excitation ((1, 3, 3) at t = 15) make the exp-kernel denominator of Eq. 12
        # negative for tau_grad = 20 while the neurons still fire
        t_end = 20.0
        K[:, 0, 1, 1], K[:, 1, 1, 1] = -20.0, 8.0
        a, b = (0 * 8 + 3) * 7 + 3, (1 * 8 + 3) * 7 + 3
        inputs = SpikeTrains.from_unsorted(
            np.concatenate([inputs.times, [0.0, 15.0]]), np.concatenate([inputs.neurons, [a, b]]),
            np.concatenate([inputs.amplitudes, [1.0, 1.0]]), np.concatenate([inputs.samples, [3, 3]]),
            4, geom.n_in)
    full, tap = ref_full_weight(K, geom.in_shape, geom.stride, geom.padding)
    out, rec = conv_forward(inputs, K, geom, PARAMS, t_end, path=path)
    od, rd = dense_forward(inputs, full, PARAMS, t_end)
    np.testing.assert_array_equal(out.neurons, od.neurons)
    np.testing.assert_allclose(out.times, od.times, rtol=1e-12)
    grad = rng.uniform(-1, 1, out.n_events)
    n_f = 6
    forced = ForcedSpikes(rng.integers(0, inputs.n_samples, n_f), rng.integers(0, geom.n_out, n_f),
                          rng.uniform(1.0, t_end, n_f), rng.uniform(-1, 1, n_f))
    gp = GRAD_RULES[rule]
    for f in (None, forced):
        gc = conv_backward(rec, grad, gp, forced=f)
        gd = dense_backward(rd, grad, gp, forced=f)
        scale = np.abs(grad).sum() + np.abs(forced.grads).sum()
        np.testing.assert_array_equal(gc.flags, gd.flags)
        np.testing.assert_allclose(gc.d_times, gd.d_times, rtol=1e-9, atol=1e-12 * scale)
        np.testing.assert_allclose(gc.d_amplitudes, gd.d_amplitudes, rtol=1e-9, atol=1e-12 * scale)
        np.testing.assert_allclose(gc.d_weight, fold(gd.d_weight, tap, K.shape), rtol=1e-9,
                                   atol=1e-12 * scale)
    if rule == "stabilised":
        assert gc.n_clamped > 0
        assert gc.n_dropped > 0 or kind == "image", "the spike case must drop windows"
    part = conv_backward(rec, grad, gp, need_input_grad=False)
    np.testing.assert_allclose(part.d_weight, conv_backward(rec, grad, gp).d_weight, rtol=1e-13, atol=1e-15)
    assert np.all(part.d_times == 0.0) and part.d_times.shape == (inputs.n_events,)


def _perturbed(inputs, times=None, amps=None):
    return SpikeTrains.from_unsorted(inputs.times if times is None else times, inputs.neurons,
                                     inputs.amplitudes if amps is None else amps, inputs.samples,
                                     inputs.n_samples, inputs.n_neurons)


@pytest.mark.parametrize("name,kind", [("s1p0", "image"), ("s2p2", "sparse"), ("k5p2", "sparse")])
def test_backward_equals_finite_differences(name, kind):
    """With h = d eps/dt and no stabiliser, dL/dK and dL/dt of the input events are the
    exact derivatives of L = sum_k g_k t_k (perturbations that change a spike count are
    skipped and counted)."""
    geom, K, inputs, t_end, rng = make_case(name, kind, 31)
    out, rec = conv_forward(inputs, K, geom, PARAMS, t_end)
    assert rec.dense == (kind == "image")
    gtab = rng.uniform(-1, 1, (inputs.n_samples, geom.n_out, 64))
    counts = out.counts()
    gr = conv_backward(rec, gtab[out.samples, out.neurons, spike_ranks(out)],
                       GradParams(kernel="depsilon"))
    assert gr.n_dropped == 0 and out.n_events >= 20

    def loss(inp=inputs, k=K):
        o, _ = conv_forward(inp, k, geom, PARAMS, t_end)
        if not np.array_equal(o.counts(), counts):
            return None
        return float(np.sum(gtab[o.samples, o.neurons, spike_ranks(o)] * o.times))

    dx = 1e-6
    checked = skipped = 0

    def compare(got, f_plus, f_minus, what, f_0=None, f_2=None):
        nonlocal checked, skipped
        if f_0 is not None:  # one-sided, second order (events at t = 0)
            fd = None if None in (f_0, f_plus, f_2) else (-3 * f_0 + 4 * f_plus - f_2) / (2 * dx)
        else:
            fd = None if f_plus is None or f_minus is None else (f_plus - f_minus) / (2 * dx)
        if fd is None:
            skipped += 1
            return
        checked += 1
        assert got == pytest.approx(fd, rel=1e-5, abs=2e-6), what

    for flat in rng.choice(K.size, size=min(K.size, 20), replace=False):
        idx = np.unravel_index(flat, K.shape)
        kp, km = K.copy(), K.copy()
        kp[idx] += dx
        km[idx] -= dx
        compare(gr.d_weight[idx], loss(k=kp), loss(k=km), f"d_weight{idx}")
    for m in rng.choice(inputs.n_events, size=min(24, inputs.n_events), replace=False):
        tp, tm_ = inputs.times.copy(), inputs.times.copy()
        tp[m] += dx
        tm_[m] -= dx
        if inputs.times[m] - dx < 0:
            t2 = inputs.times.copy()
            t2[m] += 2 * dx
            compare(gr.d_times[m], loss(_perturbed(inputs, times=tp)), None, f"d_times[{m}] (t=0)",
                    f_0=loss(), f_2=loss(_perturbed(inputs, times=t2)))
        else:
            compare(gr.d_times[m], loss(_perturbed(inputs, times=tp)),
                    loss(_perturbed(inputs, times=tm_)), f"d_times[{m}]")
    for m in rng.choice(inputs.n_events, size=min(8, inputs.n_events), replace=False):
        ap, am = inputs.amplitudes.copy(), inputs.amplitudes.copy()
        ap[m] += dx
        am[m] -= dx
        compare(gr.d_amplitudes[m], loss(_perturbed(inputs, amps=ap)),
                loss(_perturbed(inputs, amps=am)), f"d_amplitudes[{m}]")
    assert checked >= 45
    assert skipped <= 0.1 * (checked + skipped), f"{skipped} of {checked + skipped} skipped"


@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
@pytest.mark.parametrize("path", ["dense", "sparse"])
@pytest.mark.parametrize("kind", ["image", "sparse"])
def test_eq8_conv(kind, path, kernel):
    """Without stabilisers sum_m dL/dt_m = sum_k G_k (Eq. 8), and sum_m dt_k/dt_m = 1 for
    every spike (Eq. 6: a unit gradient on one spike at a time)."""
    geom, K, inputs, t_end, rng = make_case("s1p0", kind, 41)
    out, rec = conv_forward(inputs, K, geom, PARAMS, t_end, path=path)
    for grad in (rng.uniform(0.1, 1.0, out.n_events), rng.uniform(-1.0, 1.0, out.n_events)):
        gr = conv_backward(rec, grad, GradParams(kernel=kernel))
        assert gr.n_dropped == 0
        assert gr.d_times.sum() == pytest.approx(grad.sum(), rel=1e-9, abs=1e-9 * np.abs(grad).sum())
    for k in rng.choice(out.n_events, size=5, replace=False):
        one = np.zeros(out.n_events)
        one[k] = 1.0
        eq6 = conv_backward(rec, one, GradParams(kernel=kernel)).d_times.sum()
        assert eq6 == pytest.approx(1.0, rel=1e-9)


@st.composite
def conv_cases(draw):
    """Small convolutions on a 1/16 grid (times, weights): ties are common."""
    c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    k, stride, pad = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(k, 6)), draw(st.integers(k, 6))
    geom = ConvGeometry(c_in, h, w, c_out, k, stride, pad)
    n_samples = draw(st.integers(1, 2))
    ev = []
    for s in range(n_samples):
        for _ in range(draw(st.integers(0, 25))):
            ev.append((draw(st.integers(0, 10 * 16)) / 16.0, draw(st.integers(0, geom.n_in - 1)),
                       draw(st.sampled_from([0.5, 1.0, 1.5])), s))
    n_k = int(np.prod(geom.weight_shape))
    K = np.array(draw(st.lists(st.integers(-16, 40), min_size=n_k, max_size=n_k)), float)
    K = K.reshape(geom.weight_shape) / 16
    t, j, a, s = (np.array(x) for x in zip(*ev)) if ev else (np.zeros(0), np.zeros(0, np.int64),
                                                            np.zeros(0), np.zeros(0, np.int64))
    return geom, K, SpikeTrains.from_unsorted(t, j, a, s, n_samples, geom.n_in)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_prop_paths_agree_with_dense_layer(case):
    geom, K, inputs = case
    full, tap = ref_full_weight(K, geom.in_shape, geom.stride, geom.padding)
    od, rd = dense_forward(inputs, full, PARAMS, 8.0)
    grad = np.random.default_rng(od.n_events).uniform(0.1, 1.0, od.n_events)
    gd = dense_backward(rd, grad, GradParams(kernel="depsilon"))
    for path in ("sparse", "dense"):
        out, rec = conv_forward(inputs, K, geom, PARAMS, 8.0, path=path)
        np.testing.assert_array_equal(out.neurons, od.neurons)
        np.testing.assert_allclose(out.times, od.times, rtol=1e-12)
        gc = conv_backward(rec, grad, GradParams(kernel="depsilon"))
        scale = grad.sum() + 1.0
        np.testing.assert_allclose(gc.d_times, gd.d_times, rtol=1e-8, atol=1e-10 * scale)
        np.testing.assert_allclose(gc.d_weight, fold(gd.d_weight, tap, K.shape), rtol=1e-8,
                                   atol=1e-10 * scale)


# ----------------------------------------------------------------------------------
# ConvLayer
# ----------------------------------------------------------------------------------
def test_conv_layer_interface():
    layer = ConvLayer((2, 7, 6), 3, 3, stride=2, padding=1, rng=np.random.default_rng(0))
    assert layer.in_shape == (2, 7, 6) and layer.out_shape == (3, 4, 3)
    assert layer.n_in == 84 and layer.n_out == 36 and layer.kind == "conv"
    assert layer.weight.shape == (3, 2, 3, 3)
    ref_w = layer.weight
    layer.weight = np.arange(54.0).reshape(3, 2, 3, 3)
    assert layer.weight is ref_w and layer.weight[2, 1, 2, 2] == 53.0
    with pytest.raises(ValueError, match="shape"):
        layer.weight = np.ones((3, 18))
    with pytest.raises(ValueError, match="NaN"):
        layer.weight = np.full((3, 2, 3, 3), np.inf)
    assert set(layer.parameters()) == {"weight", "gain", "offset"}
    assert layer.parameters()["weight"] is ref_w
    # standardisation per output channel, then gain/offset
    layer.gain[:] = [1.0, 2.0, 0.5]
    layer.offset[:] = [0.0, 0.1, -0.2]
    eff = layer.effective_weight.reshape(3, -1)
    w = layer.weight.reshape(3, -1)
    want = (w - w.mean(1, keepdims=True)) / np.sqrt(w.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(eff, want * layer.gain[:, None] + layer.offset[:, None], rtol=1e-12)
    plain = ConvLayer((1, 5, 5), 2, 3, weight_norm=False, rng=np.random.default_rng(1))
    assert plain.effective_weight is plain.weight and set(plain.parameters()) == {"weight"}
    src, wts = layer.receptive_field(5)
    full, _ = ref_full_weight(layer.effective_weight, layer.in_shape, 2, 1)
    np.testing.assert_array_equal(dense_equivalent(layer.effective_weight, layer.geometry), full)
    np.testing.assert_array_equal(src, np.flatnonzero(full[5]))
    np.testing.assert_allclose(wts, full[5, src], rtol=1e-15)
    with pytest.raises(ValueError, match="expects 84 inputs"):
        layer.forward(SpikeTrains.empty(1, 83), PARAMS, 5.0)
    with pytest.raises(ValueError, match="in_shape"):
        ConvLayer((2, 7, 6, 1), 3, 3)


def test_conv_layer_gradients_finite_differences():
    """dL/dweight, dL/dgain, dL/doffset through weight standardisation (depsilon kernel)."""
    rng = np.random.default_rng(51)
    layer = ConvLayer((2, 6, 6), 2, 3, padding=1, rng=rng)
    layer.gain[:] = [1.3, 0.9]
    layer.offset[:] = [0.15, 0.05]
    inputs, t_end = spike_batch(rng, 2, layer.in_shape, 60)
    out, rec = layer.forward(inputs, PARAMS, t_end)
    counts = out.counts()
    gtab = rng.uniform(-1, 1, (2, layer.n_out, 64))
    lg = layer.backward(rec, gtab[out.samples, out.neurons, spike_ranks(out)], GradParams(kernel="depsilon"))
    assert lg.weight.shape == layer.weight.shape and out.n_events >= 10

    def loss():
        o, _ = layer.forward(inputs, PARAMS, t_end)
        if not np.array_equal(o.counts(), counts):
            return None
        return float(np.sum(gtab[o.samples, o.neurons, spike_ranks(o)] * o.times))

    dx = 1e-6
    checked = 0
    for arr, got in [(layer.weight, lg.weight), (layer.gain, lg.gain), (layer.offset, lg.offset)]:
        for flat in rng.choice(arr.size, size=min(arr.size, 8), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            v = arr[idx]
            arr[idx] = v + dx
            fp = loss()
            arr[idx] = v - dx
            fm = loss()
            arr[idx] = v
            if fp is None or fm is None:
                continue
            checked += 1
            assert got[idx] == pytest.approx((fp - fm) / (2 * dx), rel=1e-5, abs=2e-6)
    assert checked >= 11


# ----------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------
def ref_pool(inputs, in_shape, k, kind):
    """Pooled events by dictionaries: one per (sample, window, distinct time)."""
    _, h, w = in_shape
    ho, wo = h // k, w // k
    events = {}
    for m in range(inputs.n_events):
        j = int(inputs.neurons[m])
        ci, y, x = j // (h * w), (j % (h * w)) // w, j % w
        if y // k >= ho or x // k >= wo:
            continue
        o = (ci * ho + y // k) * wo + x // k
        events.setdefault((int(inputs.samples[m]), float(inputs.times[m]), o), []).append(m)
    keys = sorted(events)
    amp = [max(inputs.amplitudes[events[q]]) if kind == "max" else sum(inputs.amplitudes[events[q]]) / k**2
           for q in keys]
    return keys, np.array(amp), [events[q] for q in keys]


POOL_SHAPES = [((2, 6, 6), 2), ((3, 7, 5), 2), ((1, 9, 9), 3)]


@pytest.mark.parametrize("kind", ["max", "avg", "adjusted-avg"])
@pytest.mark.parametrize("shape,k", POOL_SHAPES)
def test_pool_forward_and_backward_rule(kind, shape, k):
    rng = np.random.default_rng(61)
    inputs, _ = spike_batch(rng, 3, shape, 80, rounded=2)  # many coincident spikes
    layer = PoolLayer(shape, k, kind)
    assert layer.out_shape == (shape[0], shape[1] // k, shape[2] // k) and layer.parameters() == {}
    out, rec = layer.forward(inputs, PARAMS, 10.0)
    keys, amp, members = ref_pool(inputs, shape, k, kind)
    got = list(zip(out.samples.tolist(), out.times.tolist(), out.neurons.tolist()))
    assert got == keys, "one pooled event per (window, distinct time), sorted by time then neuron"
    np.testing.assert_allclose(out.amplitudes, amp, rtol=1e-15)
    assert max(len(q) for q in members) >= 2, "the case must contain coincident spikes"
    grad = rng.uniform(-1, 1, out.n_events)
    lg = layer.backward(rec, grad, GradParams())
    assert lg.weight is None and lg.gain is None and np.all(lg.amplitudes == 0.0)
    want = np.zeros(inputs.n_events)
    for g, mem in zip(grad, members):
        want[mem] = g / (k * k) if kind == "avg" else g / len(mem)
    np.testing.assert_allclose(lg.events, want, rtol=1e-15, atol=0)
    n = np.array([len(q) for q in members])
    if kind == "avg":
        # the loss is exactly the share of the silent positions of each window
        lost = np.sum(grad * (k * k - n) / (k * k))
        assert grad.sum() - lg.events.sum() == pytest.approx(lost, rel=1e-9, abs=1e-12)
    else:
        assert lg.events.sum() == pytest.approx(grad.sum(), rel=1e-9, abs=1e-12)


def test_pool_coincident_rule_by_hand():
    """2x2 pooling of a 1x4x4 input: three spikes of window 0 at t = 1, one at t = 2,
    one spike of window 3 at t = 1, and one spike in no window (remainder of 1x5x4)."""
    shape = (1, 5, 4)
    nrn = [0, 1, 4, 10, 5, 16]    # (0,0),(0,1),(1,0) -> window 0; (2,2) -> window 3; (1,1); row 4 dropped
    tms = [1.0, 1.0, 1.0, 1.0, 2.0, 1.0]
    inputs = SpikeTrains.from_unsorted(tms, nrn, np.ones(6), np.zeros(6, np.int64), 1, 20)
    for kind, a3 in [("max", 1.0), ("avg", 0.75), ("adjusted-avg", 0.75)]:
        layer = PoolLayer(shape, 2, kind)
        assert layer.out_shape == (1, 2, 2)
        out, rec = layer.forward(inputs)
        np.testing.assert_array_equal(out.times, [1.0, 1.0, 2.0])
        np.testing.assert_array_equal(out.neurons, [0, 3, 0])
        np.testing.assert_array_equal(out.amplitudes, [a3, 1.0 if kind == "max" else 0.25,
                                                       1.0 if kind == "max" else 0.25])
        g = np.array([0.6, 0.2, -0.4])
        d = layer.backward(rec, g).events
        by_input = dict(zip(inputs.neurons.tolist(), d.tolist()))
        if kind == "avg":
            want = {0: 0.15, 1: 0.15, 4: 0.15, 10: 0.05, 5: -0.1, 16: 0.0}
        else:
            want = {0: 0.2, 1: 0.2, 4: 0.2, 10: 0.2, 5: -0.4, 16: 0.0}
        for j, v in want.items():
            assert by_input[j] == pytest.approx(v, abs=1e-15), (kind, j)
    with pytest.raises(ValueError, match="kind"):
        PoolLayer(shape, 2, "median")
    with pytest.raises(ValueError, match="does not fit"):
        PoolLayer((1, 3, 3), 4)
    with pytest.raises(ValueError, match="expects 20 inputs"):
        PoolLayer(shape, 2).forward(SpikeTrains.empty(1, 16))
    with pytest.raises(ValueError, match="force"):
        PoolLayer(shape, 2).backward(rec, g, forced=ForcedSpikes([0], [0], [1.0], [1.0]))
    out, rec = PoolLayer(shape, 2).forward(SpikeTrains.empty(2, 20))
    assert out.n_events == 0 and out.n_samples == 2
    assert PoolLayer(shape, 2).backward(rec, np.zeros(0)).events.shape == (0,)


# ----------------------------------------------------------------------------------
# a stack: conv -> pool -> conv -> pool -> dense
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["max", "adjusted-avg", "avg"])
def test_stack_eq8_end_to_end(pool):
    """Layer by layer forward and backward through conv(3C3) -> P2 -> conv(4C3p1) -> P2 ->
    dense(5) on image input; the second pooling drops a remainder row/column.
    Eq. 8 holds end to end for max and adjusted-avg pooling with both kernels; with
    plain avg pooling each pooling loses exactly its silent share."""
    rng = np.random.default_rng(71)
    images, T = image_batch(rng, 4, (1, 12, 12))
    layers = [ConvLayer((1, 12, 12), 3, 3, rng=rng), PoolLayer((3, 10, 10), 2, pool),
              ConvLayer((3, 5, 5), 4, 3, padding=1, rng=rng), PoolLayer((4, 5, 5), 2, pool),
              DenseLayer(16, 5, rng=rng)]
    layers[0].gain[:] = 0.6
    layers[2].gain[:] = 5.0
    layers[4].gain[:] = 6.0
    x, recs, outs = images, [], []
    for layer in layers:
        x, r = layer.forward(x, PARAMS, T)
        outs.append(x)
        recs.append(r)
        assert x.n_events >= 8, f"{layer!r} is too quiet for the test"
    assert recs[0].engine.dense and not recs[2].engine.dense
    for kernel in ("exp", "depsilon"):
        grad = rng.uniform(0.1, 1.0, outs[-1].n_events)
        g = grad
        lost = 0.0
        for layer, r in zip(layers[::-1], recs[::-1]):
            lg = layer.backward(r, g, GradParams(kernel=kernel))
            if isinstance(layer, PoolLayer) and pool == "avg":
                k2 = layer.k ** 2
                lost += np.sum(g * (k2 - r.count) / k2)
            elif not isinstance(layer, PoolLayer):
                assert lg.raw.n_dropped == 0
            g = lg.events
        assert g.shape == (images.n_events,)
        assert g.sum() + lost == pytest.approx(grad.sum(), rel=1e-9)
        if pool == "avg":
            assert lost > 0.01 * grad.sum()
