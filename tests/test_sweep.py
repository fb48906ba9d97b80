"""Dense layer sweep: forward against per-neuron simulations, backward against
finite differences of the forward and against a formula-by-formula reference
(Eqs. 6, 8, 12-14 and the official stabilisers)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spike_refs import spike_ranks

from eventsnn import GradParams, NeuronParams, SpikeTrains, neuron_spike_times
from eventsnn.engine import sweep
from eventsnn.engine.sweep import dense_backward, dense_forward

PARAMS = NeuronParams(5.0, 3.0, 1.0)


# ----------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------
def random_batch(rng, n_samples=4, n_in=10, n_out=6, n_events=28, t_end=20.0):
    """Spikes at random times (some rounded: shared times), amplitude 1 or random."""
    counts = rng.integers(n_events // 2, n_events + 1, n_samples)
    samples = np.repeat(np.arange(n_samples), counts)
    n = samples.size
    times = rng.uniform(0.0, t_end - 1.0, n)
    times[::5] = np.round(times[::5])
    neurons = rng.integers(0, n_in, n)
    amps = np.where(rng.uniform(size=n) < 0.5, 1.0, rng.uniform(0.3, 1.5, n))
    inputs = SpikeTrains.from_unsorted(times, neurons, amps, samples, n_samples, n_in)
    weight = rng.normal(0.45, 0.6, (n_out, n_in))
    return inputs, weight, t_end


def image_batch(rng, n_samples=3, n_pix=20, n_out=5, T=5):
    """Static images: T current impulses of amplitude x_j at t = 0..T-1 per non-zero pixel."""
    x = rng.uniform(0, 1, (n_samples, n_pix)) * (rng.uniform(size=(n_samples, n_pix)) < 0.7)
    s_idx, j_idx = np.nonzero(x)
    times = np.repeat(np.arange(float(T))[None, :], s_idx.size, axis=0).reshape(-1)
    inputs = SpikeTrains.from_unsorted(times, np.repeat(j_idx, T), np.repeat(x[s_idx, j_idx], T),
                                       np.repeat(s_idx, T), n_samples, n_pix)
    weight = rng.normal(0.15, 0.3, (n_out, n_pix))
    return inputs, weight, float(T)


BATCHES = {"random": random_batch, "image": image_batch}


@pytest.fixture(params=["dense", "sparse"])
def path(request, monkeypatch):
    """Force the dense-BLAS or the sparse-gather computation of the input currents."""
    monkeypatch.setattr(sweep, "DENSE_INPUT_DENSITY", -1.0 if request.param == "dense" else np.inf)
    return request.param


def check_path(record, path):
    assert (record.X is not None) == (path == "dense")


def per_neuron(inputs, weight, s, i, t_end, params=PARAMS):
    st = inputs.sample(s)
    c = weight[i, st.neurons] * st.amplitudes
    return neuron_spike_times(st.times, c, tau_m=params.tau_m, tau_s=params.tau_s,
                              threshold=params.threshold, t_end=t_end)


def spikes_of(out, s, i):
    st = out.sample(s)
    return st.times[st.neurons == i]


# ----------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "image"])
def test_forward_matches_per_neuron(ref, kind, path):
    rng = np.random.default_rng(41 if kind == "random" else 42)
    inputs, weight, t_end = BATCHES[kind](rng)
    out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    check_path(rec, path)
    n_out = weight.shape[0]
    assert out.n_samples == inputs.n_samples and out.n_neurons == n_out
    assert np.all(out.amplitudes == 1.0)
    assert out.n_events >= 10
    for s in range(inputs.n_samples):
        st = out.sample(s)
        # sorted by time, ties by neuron
        assert np.all((np.diff(st.times) > 0) | ((np.diff(st.times) == 0) & (np.diff(st.neurons) > 0)))
        assert np.all((st.times > 0) & (st.times <= t_end))
        for i in range(n_out):
            want = per_neuron(inputs, weight, s, i, t_end)
            ref.assert_times_close(spikes_of(out, s, i), want, 1e-12, f"sample {s}, neuron {i}")
    # a few neurons straight against the brute-force reference
    st = inputs.sample(0)
    for i in range(n_out):
        c = weight[i, st.neurons] * st.amplitudes
        want = ref.spike_times(st.times, c, PARAMS.tau_m, PARAMS.tau_s, PARAMS.threshold, t_end)
        ref.assert_times_close(spikes_of(out, 0, i), want, 1e-12, f"reference, neuron {i}")


def test_many_spikes_per_neuron(ref, path):
    """Neurons that fire far more often than the engine plans for (one spike after
    almost every input group) in one sample, next to a quiet sample."""
    rng = np.random.default_rng(48)
    n_busy = 80
    t_busy = np.cumsum(rng.uniform(1.0, 2.0, n_busy))
    times = np.concatenate([t_busy, [1.0, 2.0]])
    neurons = np.concatenate([np.zeros(n_busy, np.int64), [1, 1]])
    samples = np.concatenate([np.zeros(n_busy, np.int64), [1, 1]])
    inputs = SpikeTrains.from_unsorted(times, neurons, np.ones(times.size), samples, 2, 2)
    weight = np.array([[6.0, 0.1], [4.0, 0.2], [0.0, 5.0]])
    t_end = float(t_busy[-1] + 5.0)
    out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    check_path(rec, path)
    assert out.sample(0).n_events >= 2 * n_busy - 10
    for s in range(2):
        for i in range(3):
            st = inputs.sample(s)
            c = weight[i, st.neurons] * st.amplitudes
            want = ref.spike_times(st.times, c, PARAMS.tau_m, PARAMS.tau_s, PARAMS.threshold, t_end)
            ref.assert_times_close(spikes_of(out, s, i), want, 1e-12, f"sample {s}, neuron {i}")
    gr = dense_backward(rec, np.ones(out.n_events), GradParams(kernel="depsilon"))
    assert gr.d_times.sum() == pytest.approx(out.n_events, rel=1e-9)


@pytest.mark.parametrize("kind", ["random", "image"])
def test_dense_and_sparse_paths_agree(kind, monkeypatch):
    rng = np.random.default_rng(43)
    inputs, weight, t_end = BATCHES[kind](rng)
    monkeypatch.setattr(sweep, "DENSE_INPUT_DENSITY", -1.0)
    out_d, rec_d = dense_forward(inputs, weight, PARAMS, t_end)
    monkeypatch.setattr(sweep, "DENSE_INPUT_DENSITY", np.inf)
    out_s, rec_s = dense_forward(inputs, weight, PARAMS, t_end)
    assert rec_d.X is not None and rec_s.X is None
    np.testing.assert_array_equal(out_d.offsets, out_s.offsets)
    np.testing.assert_array_equal(out_d.neurons, out_s.neurons)
    np.testing.assert_allclose(out_d.times, out_s.times, rtol=1e-13)
    g = np.random.default_rng(44).uniform(-1, 1, out_d.n_events)
    for kernel in ("exp", "depsilon"):
        gd = dense_backward(rec_d, g, GradParams(kernel=kernel))
        gs = dense_backward(rec_s, g, GradParams(kernel=kernel))
        np.testing.assert_allclose(gd.d_weight, gs.d_weight, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gd.d_times, gs.d_times, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gd.d_amplitudes, gs.d_amplitudes, rtol=1e-10, atol=1e-12)


def test_default_path_choice():
    """Image impulses (many events per time) take the dense path, sparse spikes the gather."""
    rng = np.random.default_rng(45)
    inputs, weight, t_end = image_batch(rng)
    assert dense_forward(inputs, weight, PARAMS, t_end)[1].X is not None
    sparse = SpikeTrains(np.sort(rng.uniform(0, 10, 30)), rng.integers(0, 200, 30), np.ones(30), [0, 30], 200)
    assert dense_forward(sparse, rng.normal(size=(3, 200)), PARAMS, 10.0)[1].X is None


def test_samples_are_independent(path):
    rng = np.random.default_rng(46)
    inputs, weight, t_end = random_batch(rng)
    out, _ = dense_forward(inputs, weight, PARAMS, t_end)
    for order in ([2], [3, 0], [1, 1, 2]):
        sub, _ = dense_forward(inputs.select(order), weight, PARAMS, t_end)
        want = out.select(order)
        np.testing.assert_array_equal(sub.offsets, want.offsets)
        np.testing.assert_array_equal(sub.neurons, want.neurons)
        np.testing.assert_allclose(sub.times, want.times, rtol=1e-13)


def test_events_after_t_end_are_ignored(path):
    rng = np.random.default_rng(47)
    inputs, weight, t_end = random_batch(rng)
    extra_t = rng.uniform(t_end, t_end + 5, 10)
    extra_t[0] = np.nextafter(t_end, np.inf)
    more = SpikeTrains.from_unsorted(
        np.concatenate([inputs.times, extra_t]),
        np.concatenate([inputs.neurons, rng.integers(0, inputs.n_neurons, 10)]),
        np.concatenate([inputs.amplitudes, np.full(10, 5.0)]),
        np.concatenate([inputs.samples, rng.integers(0, inputs.n_samples, 10)]),
        inputs.n_samples, inputs.n_neurons)
    out, _ = dense_forward(inputs, weight, PARAMS, t_end)
    out2, rec2 = dense_forward(more, weight, PARAMS, t_end)
    assert out2.equals(out) or (np.array_equal(out2.neurons, out.neurons)
                                and np.allclose(out2.times, out.times, rtol=1e-14))
    g = dense_backward(rec2, np.ones(out2.n_events), GradParams())
    late = more.times > t_end
    assert late.sum() == 10
    assert np.all(g.d_times[late] == 0.0) and np.all(g.d_amplitudes[late] == 0.0)


def test_empty_inputs_and_empty_samples(path):
    weight = np.ones((3, 4))
    out, rec = dense_forward(SpikeTrains.empty(2, 4), weight, PARAMS, 5.0)
    assert out.n_events == 0 and out.n_samples == 2 and out.n_neurons == 3
    g = dense_backward(rec, np.zeros(0), GradParams())
    assert g.d_weight.shape == (3, 4) and np.all(g.d_weight == 0.0)
    assert g.d_times.shape == (0,) and g.flags.shape == (0,)
    # one silent sample between two active ones
    st = SpikeTrains([0.0, 1.0, 0.0], [0, 1, 2], [1.0, 1.0, 1.0], [0, 2, 2, 3], 4)
    out, _ = dense_forward(st, 3.0 * weight, PARAMS, 5.0)
    assert out.sample(1).n_events == 0 and out.sample(0).n_events > 0 and out.sample(2).n_events > 0


def test_forward_validation():
    st = SpikeTrains([0.5, 1.0], [0, 1], [1.0, 1.0], [0, 2], 2)
    with pytest.raises(ValueError, match="weight"):
        dense_forward(st, np.ones((3, 3)), PARAMS, 5.0)
    with pytest.raises(ValueError, match="weight"):
        dense_forward(st, np.ones(2), PARAMS, 5.0)
    with pytest.raises(ValueError, match="weight"):
        dense_forward(st, np.array([[1.0, np.nan]]), PARAMS, 5.0)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="t_end"):
            dense_forward(st, np.ones((1, 2)), PARAMS, bad)
    neg = SpikeTrains([-0.5, 1.0], [0, 1], [1.0, 1.0], [0, 2], 2)
    with pytest.raises(ValueError, match="times"):
        dense_forward(neg, np.ones((1, 2)), PARAMS, 5.0)
    out, rec = dense_forward(st, 3 * np.ones((1, 2)), PARAMS, 5.0)
    assert out.n_events >= 1
    with pytest.raises(ValueError, match="grad_out"):
        dense_backward(rec, np.ones(out.n_events + 1))
    with pytest.raises(ValueError, match="grad_out"):
        dense_backward(rec, np.full(out.n_events, np.nan))


# ----------------------------------------------------------------------------------
# backward: reference and finite differences
# ----------------------------------------------------------------------------------


def loss_grads(out, gtab):
    """G_k for L = sum_k g[s, i, rank] t_k: a fixed random weight per (sample, neuron, rank)."""
    return gtab[out.samples, out.neurons, spike_ranks(out)]


def ref_backward(ref, inputs, weight, out, grad, t_end, params=PARAMS, kernel="exp", tau_grad=2.5,
                 max_dt_du=None, scale=1.0, drop=False):
    """Eqs. 12-14 with the stabilisers, spike by spike, from the definitions."""
    n_out, n_in = weight.shape
    d_times = np.zeros(inputs.n_events)
    d_amps = np.zeros(inputs.n_events)
    d_w = np.zeros((n_out, n_in))
    flags = np.zeros(out.n_events, dtype=np.int64)
    slopes = np.zeros(out.n_events)
    last = {}
    tm, ts = params.tau_m, params.tau_s
    for k in range(out.n_events):
        s, i, tk = int(out.samples[k]), int(out.neurons[k]), float(out.times[k])
        prev = last.get((s, i), -np.inf)
        last[(s, i)] = tk
        a0, a1 = inputs.offsets[s], inputs.offsets[s + 1]
        idx = a0 + np.flatnonzero((inputs.times[a0:a1] > prev) & (inputs.times[a0:a1] <= tk)
                                  & (inputs.times[a0:a1] <= t_end))
        j, a, lag = inputs.neurons[idx], inputs.amplitudes[idx], tk - inputs.times[idx]
        c = weight[i, j] * a
        hv = ref.h(lag, kernel, tm, ts, tau_grad)
        denom = np.sum(c * hv)
        slope = slopes[k] = np.sum(c * ref.deps(lag, tm, ts))
        f = 0
        if denom <= 0:
            f |= 2
            if drop or denom == 0:
                f |= 1
        dtdu = -1.0 / slope
        if max_dt_du is not None and dtdu < -max_dt_du:
            dtdu = -max_dt_du
            f |= 4
        flags[k] = f
        G = grad[k]
        if not f & 1:
            np.add.at(d_times, idx, scale * G * c * hv / denom)
        e = ref.eps(lag, tm, ts)
        np.add.at(d_amps, idx, G * dtdu * weight[i, j] * e)
        np.add.at(d_w[i], j, G * dtdu * a * e)
    return d_times, d_amps, d_w, flags, slopes


@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
@pytest.mark.parametrize("kind", ["random", "image"])
def test_backward_matches_reference(ref, kind, kernel, path):
    rng = np.random.default_rng(51 if kind == "random" else 52)
    inputs, weight, t_end = BATCHES[kind](rng)
    out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    check_path(rec, path)
    grad = rng.uniform(-1, 1, out.n_events)
    gr = dense_backward(rec, grad, GradParams(kernel=kernel))
    d_times, d_amps, d_w, flags, _ = ref_backward(ref, inputs, weight, out, grad, t_end, kernel=kernel)
    scale = np.abs(grad).sum()
    assert gr.d_times.shape == (inputs.n_events,) and gr.d_weight.shape == weight.shape
    np.testing.assert_array_equal(gr.flags, flags)
    np.testing.assert_allclose(gr.d_weight, d_w, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(gr.d_times, d_times, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(gr.d_amplitudes, d_amps, rtol=1e-9, atol=1e-12 * scale)


def _perturbed(inputs, times=None, amps=None):
    return SpikeTrains.from_unsorted(inputs.times if times is None else times, inputs.neurons,
                                     inputs.amplitudes if amps is None else amps, inputs.samples,
                                     inputs.n_samples, inputs.n_neurons)


@pytest.mark.parametrize("kind", ["random", "image"])
def test_backward_equals_finite_differences(kind, path):
    """With h = d eps/dt and no stabiliser, d_weight, d_times and d_amplitudes are the
    exact derivatives of L = sum_k g_k t_k (perturbations that change a spike count are
    skipped and counted)."""
    rng = np.random.default_rng(61 if kind == "random" else 62)
    inputs, weight, t_end = BATCHES[kind](rng)
    gtab = rng.uniform(-1, 1, (inputs.n_samples, weight.shape[0], 64))
    out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    check_path(rec, path)
    counts = out.counts()
    assert out.n_events >= 10
    gr = dense_backward(rec, loss_grads(out, gtab), GradParams(kernel="depsilon"))
    assert gr.n_dropped == 0

    def loss(inp=inputs, w=weight):
        o, _ = dense_forward(inp, w, PARAMS, t_end)
        if not np.array_equal(o.counts(), counts):
            return None
        return float(np.sum(loss_grads(o, gtab) * o.times))

    dx = 1e-6
    checked = skipped = 0

    def compare(got, f_plus, f_minus, what, f_0=None, f_2=None):
        nonlocal checked, skipped
        if f_0 is not None:  # one-sided, second order (events at t = 0)
            vals = (f_0, f_plus, f_2)
            fd = None if None in vals else (-3 * f_0 + 4 * f_plus - f_2) / (2 * dx)
        else:
            fd = None if f_plus is None or f_minus is None else (f_plus - f_minus) / (2 * dx)
        if fd is None:
            skipped += 1
            return
        checked += 1
        assert got == pytest.approx(fd, rel=1e-5, abs=2e-6), what

    for i in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            wp, wm = weight.copy(), weight.copy()
            wp[i, j] += dx
            wm[i, j] -= dx
            compare(gr.d_weight[i, j], loss(w=wp), loss(w=wm), f"d_weight[{i}, {j}]")
    events = rng.choice(inputs.n_events, size=min(40, inputs.n_events), replace=False)
    for m in events:
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
        ap, am = inputs.amplitudes.copy(), inputs.amplitudes.copy()
        ap[m] += dx
        am[m] -= dx
        compare(gr.d_amplitudes[m], loss(_perturbed(inputs, amps=ap)),
                loss(_perturbed(inputs, amps=am)), f"d_amplitudes[{m}]")
    assert checked >= 100
    assert skipped <= 0.05 * (checked + skipped), f"{skipped} of {checked + skipped} skipped"


@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
@pytest.mark.parametrize("kind", ["random", "image"])
def test_eq8_gradient_conserved(kind, kernel, path):
    """Without stabilisers and dropped windows, sum_m dL/dt_m = sum_k G_k (Eq. 8)."""
    rng = np.random.default_rng(71 if kind == "random" else 72)
    inputs, weight, t_end = BATCHES[kind](rng)
    out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    check_path(rec, path)
    for grad in (rng.uniform(0.1, 1.0, out.n_events), rng.uniform(-1.0, 1.0, out.n_events)):
        gr = dense_backward(rec, grad, GradParams(kernel=kernel))
        assert gr.n_dropped == 0
        assert gr.d_times.sum() == pytest.approx(grad.sum(), rel=1e-9, abs=1e-9 * np.abs(grad).sum())


def test_backward_long_window(ref):
    """A window reaching thousands of units back with tau_m < tau_s stays finite."""
    params = NeuronParams(3.0, 5.0, 1.0)
    st = SpikeTrains([0.0, 6000.0], [0, 1], [1.0, 1.0], [0, 2], 2)
    weight = np.array([[0.5, 5.0]])
    out, rec = dense_forward(st, weight, params, 6100.0)
    assert out.n_events == 1
    for kernel in ("exp", "depsilon"):
        gr = dense_backward(rec, np.ones(1), GradParams(kernel=kernel))
        assert np.all(np.isfinite(gr.d_weight)) and np.all(np.isfinite(gr.d_times))
        assert np.all(np.isfinite(gr.d_amplitudes))
        d_times, d_amps, d_w, _, _ = ref_backward(ref, st, weight, out, np.ones(1), 6100.0, params, kernel)
        np.testing.assert_allclose(gr.d_weight, d_w, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(gr.d_times, d_times, rtol=1e-9, atol=1e-300)


# ----------------------------------------------------------------------------------
# stabilisers
# ----------------------------------------------------------------------------------
TAU_GRAD_STAB = 20.0


@pytest.fixture(scope="module")
def stab_case():
    """A random batch plus a sample in which strong old inhibition (source 10 at t = 0)
    and recent excitation (source 11 at t = 15) make the exp-kernel denominator of
    Eq. 12 negative for tau_grad = 20 while the neurons still fire."""
    rng = np.random.default_rng(81)
    base, _, t_end = random_batch(rng, n_samples=4, n_in=10, n_events=40)
    n_in = 12
    times = np.concatenate([base.times, [0.0, 15.0]])
    neurons = np.concatenate([base.neurons, [10, 11]])
    amps = np.concatenate([base.amplitudes, [1.0, 1.0]])
    samples = np.concatenate([base.samples, [4, 4]])
    inputs = SpikeTrains.from_unsorted(times, neurons, amps, samples, 5, n_in)
    weight = rng.normal(0.45, 0.6, (8, n_in))
    weight[:, 10] = -20.0 * rng.uniform(0.8, 1.2, 8)
    weight[:, 11] = 8.0 * rng.uniform(0.8, 1.2, 8)
    out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    grad = rng.uniform(0.1, 1.0, out.n_events)
    return inputs, weight, t_end, out, rec, grad


def test_stabiliser_max_dt_du(ref, stab_case):
    inputs, weight, t_end, out, rec, grad = stab_case
    base = dense_backward(rec, grad, GradParams(kernel="exp"))
    inv_slope = 1.0 / ref_backward(ref, inputs, weight, out, grad, t_end)[4]
    cap = float(np.median(inv_slope))
    gr = dense_backward(rec, grad, GradParams(kernel="exp", max_dt_du=cap))
    d_times, d_amps, d_w, flags, _ = ref_backward(ref, inputs, weight, out, grad, t_end, max_dt_du=cap)
    assert 0 < gr.n_clamped < out.n_events
    np.testing.assert_array_equal(gr.flags, flags)
    np.testing.assert_array_equal(gr.flags & 4 > 0, inv_slope > cap)
    np.testing.assert_allclose(gr.d_weight, d_w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gr.d_amplitudes, d_amps, rtol=1e-9, atol=1e-12)
    # the cap only touches the weight/amplitude path, and only shrinks |dt/du|
    np.testing.assert_array_equal(gr.d_times, base.d_times)
    huge = dense_backward(rec, grad, GradParams(kernel="exp", max_dt_du=1e300))
    assert huge.n_clamped == 0
    np.testing.assert_array_equal(huge.d_weight, base.d_weight)


def test_stabiliser_input_grad_scale(stab_case):
    inputs, weight, t_end, out, rec, grad = stab_case
    base = dense_backward(rec, grad, GradParams(kernel="exp"))
    gr = dense_backward(rec, grad, GradParams(kernel="exp", input_grad_scale=0.85))
    np.testing.assert_allclose(gr.d_times, 0.85 * base.d_times, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(gr.d_weight, base.d_weight)
    np.testing.assert_array_equal(gr.d_amplitudes, base.d_amplitudes)
    np.testing.assert_array_equal(gr.flags, base.flags)
    assert gr.d_times.sum() == pytest.approx(0.85 * base.d_times.sum(), rel=1e-12)


def test_stabiliser_drop_nonpositive(ref, stab_case):
    inputs, weight, t_end, out, rec, grad = stab_case
    keep = dense_backward(rec, grad, GradParams(kernel="exp", tau_grad=TAU_GRAD_STAB))
    drop = dense_backward(rec, grad, GradParams(kernel="exp", tau_grad=TAU_GRAD_STAB, drop_nonpositive=True))
    assert keep.n_nonpositive > 0, "the case must contain windows with a denominator <= 0"
    assert keep.n_dropped == 0
    nonpos = (keep.flags & 2) > 0
    np.testing.assert_array_equal(drop.flags & 2, keep.flags & 2)
    np.testing.assert_array_equal((drop.flags & 1) > 0, nonpos)
    assert drop.n_dropped == keep.n_nonpositive
    # Eq. 8 with the dropped windows left out; the kept form conserves everything
    assert keep.d_times.sum() == pytest.approx(grad.sum(), rel=1e-9)
    assert drop.d_times.sum() == pytest.approx(grad[~nonpos].sum(), rel=1e-9)
    d_times, _, _, flags, _ = ref_backward(ref, inputs, weight, out, grad, t_end, tau_grad=TAU_GRAD_STAB,
                                   drop=True)
    np.testing.assert_array_equal(drop.flags, flags)
    np.testing.assert_allclose(drop.d_times, d_times, rtol=1e-9, atol=1e-12)
    # dropping only concerns the input path
    np.testing.assert_array_equal(drop.d_weight, keep.d_weight)
    np.testing.assert_array_equal(drop.d_amplitudes, keep.d_amplitudes)
    # with h = d eps/dt the denominator is u'(t_k) > 0: nothing to drop
    dep = dense_backward(rec, grad, GradParams(kernel="depsilon", drop_nonpositive=True))
    assert dep.n_nonpositive == 0 and dep.n_dropped == 0


def test_need_input_grad_false(stab_case):
    inputs, weight, t_end, out, rec, grad = stab_case
    full = dense_backward(rec, grad, GradParams(kernel="depsilon"))
    part = dense_backward(rec, grad, GradParams(kernel="depsilon"), need_input_grad=False)
    np.testing.assert_array_equal(part.d_weight, full.d_weight)
    np.testing.assert_array_equal(part.flags, full.flags)
    assert np.all(part.d_times == 0.0) and np.all(part.d_amplitudes == 0.0)
    assert part.d_times.shape == full.d_times.shape


def test_default_grad_params_is_exp(stab_case):
    inputs, weight, t_end, out, rec, grad = stab_case
    a = dense_backward(rec, grad)
    b = dense_backward(rec, grad, GradParams(kernel="exp", tau_grad=2.5))
    np.testing.assert_array_equal(a.d_times, b.d_times)
    np.testing.assert_array_equal(a.d_weight, b.d_weight)


# ----------------------------------------------------------------------------------
# properties (hypothesis)
# ----------------------------------------------------------------------------------
@st.composite
def layer_cases(draw):
    """Small batches on a 1/16 grid (times, weights): ties are common, currents are exact."""
    n_samples = draw(st.integers(1, 3))
    n_in = draw(st.integers(1, 6))
    n_out = draw(st.integers(1, 4))
    ev = []
    for s in range(n_samples):
        n = draw(st.integers(0, 14))
        for _ in range(n):
            ev.append((draw(st.integers(0, 12 * 16)) / 16.0, draw(st.integers(0, n_in - 1)),
                       draw(st.sampled_from([0.5, 1.0, 1.5])), s))
    weight = np.array(draw(st.lists(st.integers(-32, 48), min_size=n_in * n_out,
                                    max_size=n_in * n_out)), dtype=np.float64).reshape(n_out, n_in) / 16.0
    t_end = draw(st.sampled_from([4.0, 12.5]))
    dense = draw(st.booleans())
    if ev:
        t, j, a, s = (np.array(x) for x in zip(*ev))
    else:
        t, j, a, s = np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    inputs = SpikeTrains.from_unsorted(t, j, a, s, n_samples, n_in)
    return inputs, weight, t_end, dense


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(layer_cases())
def test_prop_layer_matches_neurons_and_conserves_gradient(ref, case):
    inputs, weight, t_end, dense = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep, "DENSE_INPUT_DENSITY", -1.0 if dense else np.inf)
        out, rec = dense_forward(inputs, weight, PARAMS, t_end)
    assert out.n_samples == inputs.n_samples and out.n_neurons == weight.shape[0]
    for s in range(inputs.n_samples):
        for i in range(weight.shape[0]):
            got, want = spikes_of(out, s, i), per_neuron(inputs, weight, s, i, t_end)
            assert got.size == want.size
            np.testing.assert_allclose(got, want, rtol=1e-13)
            assert np.all((got > 0) & (got <= t_end))
    grad = np.random.default_rng(out.n_events).uniform(0.1, 1.0, out.n_events)
    for kernel in ("exp", "depsilon"):
        gr = dense_backward(rec, grad, GradParams(kernel=kernel))
        if gr.n_dropped:
            continue
        # conditioning of each Eq. 12 denominator, for an honest rounding bound
        cond = np.zeros(out.n_events)
        last = {}
        for k in range(out.n_events):
            s, i, tk = int(out.samples[k]), int(out.neurons[k]), float(out.times[k])
            prev = last.get((s, i), -np.inf)
            last[(s, i)] = tk
            smp = inputs.sample(s)
            win = (smp.times > prev) & (smp.times <= tk)
            ch = weight[i, smp.neurons[win]] * smp.amplitudes[win] * ref.h(
                tk - smp.times[win], kernel, PARAMS.tau_m, PARAMS.tau_s, 2.5)
            cond[k] = np.abs(ch).sum() / abs(ch.sum())
        tol = 1e-9 * grad.sum() + 1e-13 * np.sum(grad * cond)
        assert abs(gr.d_times.sum() - grad.sum()) <= tol


@settings(deadline=None)
@given(st.lists(st.integers(0, 9), max_size=300))
def test_by_neuron_is_the_stable_argsort(keys):
    """The counting sort behind the backward's per-neuron spike lists."""
    k = np.array(keys, dtype=np.int64)
    offsets, order = sweep._by_neuron(k, 10)
    np.testing.assert_array_equal(order, np.argsort(k, kind="stable"))
    np.testing.assert_array_equal(np.diff(offsets), np.bincount(k, minlength=10))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200), st.integers(0, 300), st.integers(0, 2**31))
def test_prop_take_is_fancy_indexing(n, m, seed):
    """sweep.take gathers like ``a[idx]`` for every dtype it is used with, strided input too."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, m)
    arrays = (rng.normal(size=2 * n)[::2], rng.integers(-5, 5, n), rng.integers(0, 3, n).astype(np.int8),
              rng.normal(size=n) > 0)
    got = sweep.take(arrays, idx)
    for a, g in zip(arrays, got):
        assert g.dtype == a.dtype and g.flags.c_contiguous
        np.testing.assert_array_equal(g, a[idx])
