"""The GPU engine (eventsnn.engine.cuda) against the CPU engine, kernel by kernel.

Runs under the CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1
unless it is set; =0 on a GPU machine runs the same tests on the GPU). The CPU
engine is the reference (tested against slow references in test_sweep.py and
test_conv.py): identical spike counts, neurons, rows and window starts, times
within 1e-12, gradients within 1e-10 (atomic adds sum in another order).
Blocks are made small so that every launch spans several blocks; one test
makes a layer overflow its first spike buffer.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'eventsnn[gpu]')")

from eventsnn import GradParams, NeuronParams, SpikeTrains  # noqa: E402
from eventsnn.device import cuda_status, set_device  # noqa: E402

if not cuda_status()[0]:
    pytest.skip(f"no CUDA backend: {cuda_status()[2]}", allow_module_level=True)

from eventsnn.conv_layers import ConvLayer  # noqa: E402
from eventsnn.engine import conv, sweep  # noqa: E402
from eventsnn.engine import cuda as gpu  # noqa: E402
from eventsnn.engine.sweep import ForcedSpikes, last_rise_times  # noqa: E402
from eventsnn.layers import DenseLayer  # noqa: E402
from eventsnn.loss import count_loss  # noqa: E402
from eventsnn.network import Network  # noqa: E402

pytestmark = pytest.mark.cuda

PARAMS = NeuronParams(5.0, 3.0, 1.0)
GRAD_RULES = {
    "exp": GradParams(),
    "depsilon": GradParams("depsilon"),
    # the official stabilisers; tau_grad 20 makes some Eq. 12 denominators negative
    "stabilised": GradParams("exp", 20.0, max_dt_du=2.0, input_grad_scale=0.85, drop_nonpositive=True),
}
TPB = 8


@pytest.fixture(autouse=True)
def launches(monkeypatch):
    """Small blocks (multi-block launches) and a log of (kernel, threads, blocks)."""
    monkeypatch.setattr(gpu, "THREADS_PER_BLOCK", TPB)
    log = []
    launch = gpu._launch

    def logged(kernel, n, *args):
        name = getattr(kernel, "__name__", None) or getattr(kernel, "py_func", kernel).__name__
        log.append((name, n, -(-n // TPB)))
        return launch(kernel, n, *args)

    monkeypatch.setattr(gpu, "_launch", logged)
    return log


# ----------------------------------------------------------------------------------
# batches (small: the simulator runs every thread in Python)
# ----------------------------------------------------------------------------------
def spike_batch(rng, n_samples, n_in, n_events, t_end=10.0):
    """Spikes at random times, every 4th rounded (shared times), some amplitudes != 1."""
    n = n_samples * n_events
    times = rng.uniform(0.0, t_end - 0.5, n)
    times[::4] = np.round(times[::4])
    amps = np.where(rng.uniform(size=n) < 0.7, 1.0, rng.uniform(0.3, 1.5, n))
    return SpikeTrains.from_unsorted(times, rng.integers(0, n_in, n), amps,
                                     np.repeat(np.arange(n_samples), n_events), n_samples, n_in), t_end


def image_batch(rng, n_samples, n_in, T=4):
    """Static images: T impulses of amplitude x (some negative, some zero) at t = 0..T-1."""
    x = rng.normal(0.3, 0.8, (n_samples, n_in)) * (rng.uniform(size=(n_samples, n_in)) < 0.8)
    s_idx, j_idx = np.nonzero(x)
    times = np.tile(np.arange(float(T)), s_idx.size)
    return SpikeTrains.from_unsorted(times, np.repeat(j_idx, T), np.repeat(x[s_idx, j_idx], T),
                                     np.repeat(s_idx, T), n_samples, n_in), float(T)


def forced_spikes(rng, n_samples, n_out, t_end, n=5):
    return ForcedSpikes(rng.integers(0, n_samples, n), rng.integers(0, n_out, n),
                        rng.uniform(0.5, t_end, n), rng.uniform(-1, 1, n))


# ----------------------------------------------------------------------------------
# parity checks
# ----------------------------------------------------------------------------------
def assert_same_forward(out_c, rec_c, out_g, rec_g):
    np.testing.assert_array_equal(out_g.offsets, out_c.offsets)
    np.testing.assert_array_equal(out_g.neurons, out_c.neurons)
    np.testing.assert_allclose(out_g.times, out_c.times, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out_g.amplitudes, out_c.amplitudes)
    for name in ("out_sample", "out_row", "out_wstart"):
        np.testing.assert_array_equal(getattr(rec_g, name), getattr(rec_c, name), err_msg=name)
    np.testing.assert_allclose(rec_g.out_slope, rec_c.out_slope, rtol=1e-12, atol=1e-12)
    assert type(rec_g) is type(rec_c) and rec_g.dense == rec_c.dense


def assert_same_grads(g_g, g_c):
    np.testing.assert_array_equal(g_g.flags, g_c.flags)
    for name in ("d_times", "d_amplitudes", "d_weight"):
        a, b = getattr(g_g, name), getattr(g_c, name)
        assert a.shape == b.shape, name
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * scale, err_msg=name)


def multi_block(launches, kernel):
    return any(name == kernel and blocks > 1 for name, _, blocks in launches)


# ----------------------------------------------------------------------------------
# dense layer
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["image", "spikes"])
def test_dense_parity(kind, launches):
    """Forward (dense BLAS currents / sparse event path) and backward with every grad
    rule, forced spikes, and without the input gradient."""
    rng = np.random.default_rng(1 if kind == "image" else 2)
    if kind == "image":
        inputs, t_end = image_batch(rng, 3, 12)
        W = rng.normal(0.3, 0.3, (7, 12))
    else:
        inputs, t_end = spike_batch(rng, 3, 40, 22)
        W = rng.normal(0.35, 0.6, (7, 40))
    out_c, rec_c = sweep.dense_forward(inputs, W, PARAMS, t_end)
    out_g, rec_g = gpu.dense_forward(inputs, W, PARAMS, t_end)
    assert out_c.n_events > 8 and rec_c.dense == (kind == "image")
    assert_same_forward(out_c, rec_c, out_g, rec_g)
    grad = rng.uniform(-1, 1, out_c.n_events)
    forced = forced_spikes(rng, 3, 7, t_end)
    for rule, gp in GRAD_RULES.items():
        for f in (None, forced):
            assert_same_grads(gpu.dense_backward(rec_g, grad, gp, forced=f),
                              sweep.dense_backward(rec_c, grad, gp, forced=f))
    assert_same_grads(gpu.dense_backward(rec_g, grad, GRAD_RULES["exp"], need_input_grad=False),
                      sweep.dense_backward(rec_c, grad, GRAD_RULES["exp"], need_input_grad=False))
    stab = sweep.dense_backward(rec_c, grad, GRAD_RULES["stabilised"])
    assert stab.n_clamped > 0, "the stabiliser case must clamp some |dt/du|"
    assert multi_block(launches, "_scan_kernel")
    bw = "_backward_dense_kernel" if kind == "image" else "_backward_sparse_kernel"
    assert multi_block(launches, bw)


def test_dense_dropped_windows():
    """A window whose Eq. 12 denominator is negative: dropped (flag 1) on both engines,
    and its weight path still counted."""
    # old inhibition (input 0 at t = 0) and recent excitation (input 1 at t = 15)
    inputs = SpikeTrains.from_unsorted([0.0, 15.0, 0.0, 15.0], [0, 1, 0, 1], [1.0] * 4, [0, 0, 1, 1], 2, 2)
    W = np.array([[-20.0, 8.0], [-20.0, 9.0]])
    out_c, rec_c = sweep.dense_forward(inputs, W, PARAMS, 20.0)
    out_g, rec_g = gpu.dense_forward(inputs, W, PARAMS, 20.0)
    assert_same_forward(out_c, rec_c, out_g, rec_g)
    grad = np.ones(out_c.n_events)
    g_c = sweep.dense_backward(rec_c, grad, GRAD_RULES["stabilised"])
    assert g_c.n_dropped > 0
    assert_same_grads(gpu.dense_backward(rec_g, grad, GRAD_RULES["stabilised"]), g_c)


def test_overflowing_first_buffer(monkeypatch, launches):
    """A neuron that fires far more often than planned: the first launch overflows its
    buffer, the layer is re-run with exact sizes, nothing is truncated."""
    rng = np.random.default_rng(3)
    inputs, t_end = spike_batch(rng, 2, 4, 40, t_end=20.0)
    W = np.full((5, 4), 3.0)
    W[0] = 0.2  # a quiet neuron: its thread's region stays partly empty
    out_c, rec_c = sweep.dense_forward(inputs, W, PARAMS, t_end)
    per_neuron = np.bincount(out_c.samples * 5 + out_c.neurons, minlength=10)
    assert per_neuron.max() > sweep.PLANNED_SPIKES_PER_NEURON
    out_g, rec_g = gpu.dense_forward(inputs, W, PARAMS, t_end)
    assert_same_forward(out_c, rec_c, out_g, rec_g)
    assert sum(name == "_scan_kernel" for name, _, _ in launches) == 2
    # the sparse convolution path overflows likewise (plan cut down to 1 spike per thread)
    monkeypatch.setattr(gpu, "PLANNED_SPIKES_PER_NEURON", 1)
    geom = conv.ConvGeometry(1, 5, 5, 2, 3, 1, 1)
    inputs, t_end = spike_batch(rng, 2, geom.n_in, 30)
    K = rng.normal(0.9, 0.4, geom.weight_shape)
    out_c, rec_c = conv.conv_forward(inputs, K, geom, PARAMS, t_end, path="sparse")
    assert np.bincount(out_c.samples * geom.n_out + out_c.neurons).max() > 1
    launches.clear()
    out_g, rec_g = gpu.conv_forward(inputs, K, geom, PARAMS, t_end, path="sparse")
    assert_same_forward(out_c, rec_c, out_g, rec_g)
    np.testing.assert_array_equal(rec_g.out_unit, rec_c.out_unit)
    assert sum(name == "_scan_units_kernel" for name, _, _ in launches) == 2


def test_empty_and_silent():
    """Samples without events, a layer without any output spike, events after t_end."""
    inputs = SpikeTrains.from_unsorted([1.0, 2.0, 30.0], [0, 1, 1], [1.0, 1.0, 5.0], [1, 1, 2], 3, 2)
    for W in (np.full((3, 2), 0.01), np.full((3, 2), 2.0)):
        out_c, rec_c = sweep.dense_forward(inputs, W, PARAMS, 10.0)
        out_g, rec_g = gpu.dense_forward(inputs, W, PARAMS, 10.0)
        assert_same_forward(out_c, rec_c, out_g, rec_g)
        grad = np.ones(out_c.n_events)
        assert_same_grads(gpu.dense_backward(rec_g, grad), sweep.dense_backward(rec_c, grad))
    empty = SpikeTrains.from_unsorted([], [], [], [], 2, 2)
    out_g, rec_g = gpu.dense_forward(empty, np.ones((3, 2)), PARAMS, 10.0)
    assert out_g.n_events == 0 and out_g.n_samples == 2
    assert gpu.dense_backward(rec_g, np.zeros(0)).d_weight.shape == (3, 2)


# ----------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------
# (in_shape, c_out, k, stride, padding)
GEOMS = {"s1p0": ((2, 5, 4), 3, 3, 1, 0), "s2p2": ((2, 6, 5), 2, 3, 2, 2)}


@pytest.mark.parametrize("path", ["dense", "sparse"])
@pytest.mark.parametrize("kind", ["image", "spikes"])
@pytest.mark.parametrize("name", list(GEOMS))
def test_conv_parity(name, kind, path, launches):
    """Both paths (im2col currents / per-position lists), padding and stride, every grad
    rule with forced spikes."""
    in_shape, c_out, k, stride, pad = GEOMS[name]
    geom = conv.ConvGeometry(*in_shape, c_out, k, stride, pad)
    rng = np.random.default_rng(len(name) + 7 * (kind == "image"))
    if kind == "image":
        inputs, t_end = image_batch(rng, 2, geom.n_in)
        K = rng.normal(0.15, 0.35, geom.weight_shape)
    else:
        inputs, t_end = spike_batch(rng, 2, geom.n_in, 24)
        K = rng.normal(0.5, 0.6, geom.weight_shape)
    out_c, rec_c = conv.conv_forward(inputs, K, geom, PARAMS, t_end, path=path)
    out_g, rec_g = gpu.conv_forward(inputs, K, geom, PARAMS, t_end, path=path)
    assert out_c.n_events > 5
    assert_same_forward(out_c, rec_c, out_g, rec_g)
    if path == "sparse":
        np.testing.assert_array_equal(rec_g.out_unit, rec_c.out_unit)
        np.testing.assert_array_equal(rec_g.out_channel, rec_c.out_channel)
    grad = rng.uniform(-1, 1, out_c.n_events)
    forced = forced_spikes(rng, 2, geom.n_out, t_end)
    rules = GRAD_RULES if name == "s2p2" else {"stabilised": GRAD_RULES["stabilised"]}
    for gp in rules.values():
        for f in (None, forced):
            assert_same_grads(gpu.conv_backward(rec_g, grad, gp, forced=f),
                              conv.conv_backward(rec_c, grad, gp, forced=f))
    assert_same_grads(gpu.conv_backward(rec_g, grad, need_input_grad=False),
                      conv.conv_backward(rec_c, grad, need_input_grad=False))
    kernels = ("_scan_kernel", "_backward_dense_kernel") if path == "dense" else (
        "_scan_units_kernel", "_backward_units_kernel")
    assert all(multi_block(launches, kn) for kn in kernels)


# ----------------------------------------------------------------------------------
# layers and networks on device "cuda"
# ----------------------------------------------------------------------------------
def test_layers_and_network_on_cuda():
    """set_device(net, "cuda") runs every conv/dense layer on the GPU engine: a training
    step (forward, count loss with a last-rise supervisory spike, backward with the
    trainer's stabilisers) gives the CPU's spikes and parameter gradients."""
    rng = np.random.default_rng(5)
    net = Network.from_arch("2C3-P2-6", 3, input_shape=(1, 6, 6), seed=3, t_end=4.0)
    for layer in net.layers:
        if layer.parameters():
            layer.gain[:] = 3.0
    images = rng.uniform(0, 1, (2, 36)) * (rng.uniform(size=(2, 36)) < 0.7)
    s_idx, j_idx = np.nonzero(images)
    inputs = SpikeTrains.from_unsorted(np.tile(np.arange(4.0), s_idx.size), np.repeat(j_idx, 4),
                                       np.repeat(images[s_idx, j_idx], 4), np.repeat(s_idx, 4), 2, 36)
    labels = np.array([0, 2])
    runs = {}
    for device in ("cpu", "cuda"):
        assert set_device(net, device) == device
        assert all(layer.device == device for layer in net.layers)
        res = net.forward(inputs)
        sup = last_rise_times(res.records[-1].engine, np.arange(2), labels)
        cl = count_loss(res.spikes[-1], labels, steps=4, t_end=4.0, supervision="last-rise",
                        supervision_times=sup)
        grads = net.backward(res, cl.grad, max_dt_du=4.0, input_grad_scale=0.85,
                             drop_nonpositive=True, forced=cl.forced, input_grad=False)
        runs[device] = (res, grads, sup)
    (rc, gc, sc), (rg, gg, sg) = runs["cpu"], runs["cuda"]
    assert isinstance(net.layers[0], ConvLayer) and isinstance(net.layers[-1], DenseLayer)
    assert rc.spikes[0].n_events > 0 and rc.spikes[-1].n_events > 0
    for a, b in zip(rg.spikes, rc.spikes):
        np.testing.assert_array_equal(a.neurons, b.neurons)
        np.testing.assert_allclose(a.times, b.times, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sg, sc, rtol=1e-12)
    for a, b in zip(gg.parameter_grads(), gc.parameter_grads()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(b).max()))
    for a, b in zip(gg.layers, gc.layers):
        np.testing.assert_array_equal(a.raw.flags, b.raw.flags)


def test_training_run_on_cuda(tmp_path):
    """eventsnn.train.train(..., device="cuda"): gain initialisation, one epoch of steps
    (stabilisers, supervisory spikes) and evaluation on the GPU engine end where the CPU
    run ends; the device is not part of the configuration."""
    from eventsnn.config import TrainConfig
    from eventsnn.train import train

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.0, 1.0, (8, 6, 6)), rng.integers(0, 3, 8)
    cfg = TrainConfig(dataset="toy", arch="2C3-P2-6", epochs=1, batch_size=4, steps=3)
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = train(cfg, tmp_path / device, train_data=(x, y), test_data=(x[:4], y[:4]),
                             dataset_checksum="toy", n_classes=3, progress=False, log=lambda line: None,
                             device=device)
    net_c, net_g = runs["cpu"]["network"], runs["cuda"]["network"]
    assert all(layer.device == "cuda" for layer in net_g.layers)
    for (name, a), (_, b) in zip(net_g.parameters(), net_c.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
    hc, hg = runs["cpu"]["history"][-1], runs["cuda"]["history"][-1]
    assert hc["spikes_per_neuron"] == pytest.approx(hg["spikes_per_neuron"], rel=1e-12)
    assert hc["test_accuracy"] == hg["test_accuracy"] and hc["train_loss"] == pytest.approx(hg["train_loss"])
