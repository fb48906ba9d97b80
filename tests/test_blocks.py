"""Dropout and SEW residual blocks: forward against compositions, backward against
finite differences, Eq. 8 conservation, and training/checkpoint round trips."""

from __future__ import annotations

import numpy as np
import pytest
from spike_refs import spike_ranks

from eventsnn.arch import parse_arch
from eventsnn.blocks import DropoutLayer, ResidualBlock
from eventsnn.checkpoint import load_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.network import Network
from eventsnn.params import GradParams, NeuronParams
from eventsnn.spikes import SpikeTrains
from eventsnn.train import train

PARAMS = NeuronParams(5.0, 3.0, 1.0)
EXACT = GradParams(kernel="depsilon")


def spike_batch(rng, n_samples, in_shape, n_events, t_end=8.0):
    n_in = int(np.prod(in_shape))
    n = n_samples * n_events
    times = rng.uniform(0.0, t_end - 1.0, n)
    times[::4] = np.round(times[::4])  # shared times
    return SpikeTrains.from_unsorted(times, rng.integers(0, n_in, n), np.ones(n),
                                     np.repeat(np.arange(n_samples), n_events), n_samples, n_in), t_end


# ----------------------------------------------------------------------------- dropout
def test_dropout_identity_when_inactive():
    rng = np.random.default_rng(0)
    x, _ = spike_batch(rng, 3, (4, 3, 3), 30)
    layer = DropoutLayer((4, 3, 3), 0.5)
    out, rec = layer.forward(x)
    assert out is x
    np.testing.assert_array_equal(layer.backward(rec, np.arange(x.n_events)).events, np.arange(x.n_events))


@pytest.mark.parametrize("shape", [(4, 3, 3), (20,)])
def test_dropout_drops_whole_channels_and_rescales(shape):
    rng = np.random.default_rng(1)
    x, _ = spike_batch(rng, 5, shape, 40)
    layer = DropoutLayer(shape, 0.4)
    layer.rng = np.random.default_rng(7)
    out, rec = layer.forward(x)
    per = int(np.prod(shape[1:])) if len(shape) == 3 else 1
    keep = np.random.default_rng(7).random((5, int(np.prod(shape)) // per)) >= 0.4  # same draw
    want = [m for m in range(x.n_events) if keep[x.samples[m], x.neurons[m] // per]]
    np.testing.assert_array_equal(out.times, x.times[want])
    np.testing.assert_array_equal(out.neurons, x.neurons[want])
    np.testing.assert_allclose(out.amplitudes, x.amplitudes[want] / 0.6, rtol=1e-15)
    np.testing.assert_array_equal(out.samples, x.samples[want])
    g = rng.normal(size=out.n_events)
    d = layer.backward(rec, g).events
    np.testing.assert_array_equal(d[want], g)
    assert np.count_nonzero(np.delete(d, want)) == 0


def test_dropout_validation():
    with pytest.raises(ValueError, match="dropout probability"):
        DropoutLayer((4,), 1.0)
    with pytest.raises(ValueError, match="dropout must be"):
        TrainConfig(dropout=-0.1)


# ---------------------------------------------------------------------------- residual
@pytest.mark.parametrize("c_in", [3, 2])  # identity shortcut, projection shortcut
def test_block_forward_is_the_union_of_both_paths(c_in):
    rng = np.random.default_rng(2)
    block = ResidualBlock((c_in, 5, 5), 3, 3, rng=rng)
    assert (block.shortcut is None) == (c_in == 3)
    for lay in block.sublayers:
        lay.gain[:] = 3.0
    x, t_end = spike_batch(rng, 3, block.in_shape, 40)
    out, _ = block.forward(x, PARAMS, t_end)
    y2, _ = block.conv2.forward(block.conv1.forward(x, PARAMS, t_end)[0], PARAMS, t_end)
    s = x if block.shortcut is None else block.shortcut.forward(x, PARAMS, t_end)[0]
    want = sorted(zip(np.r_[y2.samples, s.samples].tolist(), np.r_[y2.times, s.times].tolist(),
                      np.r_[y2.neurons, s.neurons].tolist(), np.r_[y2.amplitudes, s.amplitudes].tolist()))
    got = list(zip(out.samples.tolist(), out.times.tolist(), out.neurons.tolist(), out.amplitudes.tolist()))
    assert got == want and y2.n_events > 0
    assert out.n_neurons == block.n_out == 3 * 25


@pytest.mark.parametrize("c_in", [3, 2])
def test_block_gradients_match_finite_differences(c_in):
    """dL/dW of every convolution and dL/dt of the input events, h = d eps/dt, no stabiliser."""
    rng = np.random.default_rng(3)
    block = ResidualBlock((c_in, 5, 5), 3, 3, rng=rng)
    for lay in block.sublayers:
        lay.gain[:] = 2.5
    x, t_end = spike_batch(rng, 2, block.in_shape, 30)
    out, rec = block.forward(x, PARAMS, t_end)
    counts = out.counts()
    gtab = rng.uniform(-1, 1, (2, block.n_out, 32))
    bg = block.backward(rec, gtab[out.samples, out.neurons, spike_ranks(out)], EXACT)

    def loss(inputs=x):
        o, _ = block.forward(inputs, PARAMS, t_end)
        if not np.array_equal(o.counts(), counts):
            return None
        return float(np.sum(gtab[o.samples, o.neurons, spike_ranks(o)] * o.times))

    dx, checked = 1e-6, 0
    for lay, lg in zip(block.sublayers, bg.sublayers):
        for flat in rng.choice(lay.weight.size, 6, replace=False):
            idx = np.unravel_index(flat, lay.weight.shape)
            v = lay.weight[idx]
            lay.weight[idx] = v + dx
            fp = loss()
            lay.weight[idx] = v - dx
            fm = loss()
            lay.weight[idx] = v
            if fp is not None and fm is not None:
                checked += 1
                assert lg.weight[idx] == pytest.approx((fp - fm) / (2 * dx), rel=1e-5, abs=2e-6)
    # input event times (only events with a distinct time: moving a shared one splits a group)
    uniq = [m for m in range(x.n_events) if np.sum(x.times == x.times[m]) == 1]
    for m in rng.choice(uniq, 8, replace=False):
        tp, tm = x.times.copy(), x.times.copy()
        tp[m] += dx
        tm[m] -= dx
        fp = loss(SpikeTrains(tp, x.neurons, x.amplitudes, x.offsets, x.n_neurons))
        fm = loss(SpikeTrains(tm, x.neurons, x.amplitudes, x.offsets, x.n_neurons))
        if fp is not None and fm is not None:
            checked += 1
            assert bg.events[m] == pytest.approx((fp - fm) / (2 * dx), rel=1e-5, abs=2e-6)
    assert checked >= 14


def test_block_conserves_the_gradient_sum():
    """Eq. 8 through a block: every output event's gradient reaches the input events."""
    rng = np.random.default_rng(4)
    block = ResidualBlock((2, 5, 5), 2, 3, rng=rng)
    for lay in block.sublayers:
        lay.gain[:] = 3.0
    x, t_end = spike_batch(rng, 2, block.in_shape, 40)
    out, rec = block.forward(x, PARAMS, t_end)
    g = rng.normal(size=out.n_events)
    for kernel in ("exp", "depsilon"):
        bg = block.backward(rec, g, GradParams(kernel=kernel))
        assert bg.events.sum() == pytest.approx(g.sum(), rel=1e-9, abs=1e-12)


def test_sew_resnet14_preset():
    spec = parse_arch("sew-resnet14")
    assert [ls.kind for ls in spec.layers].count("residual") == 6
    net = Network.from_arch("sew-resnet14", 10, input_shape=(3, 32, 32), seed=0)
    blocks = [lay for lay in net.layers if lay.kind == "residual"]
    assert [b.shortcut is None for b in blocks] == [True, True, False, True, False, True]
    assert sum(1 + len(b.sublayers) - (b.shortcut is not None) for b in blocks) - len(blocks) + 2 == 14
    assert net.layers[-1].n_in == 512 * 4 * 4
    with pytest.raises(ValueError, match="odd kernel"):
        parse_arch("R8C4")


# ------------------------------------------------------------------------- training
def test_residual_dropout_network_trains_and_round_trips(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.random((24, 6, 6)), rng.integers(0, 3, 24)
    cfg = TrainConfig(dataset="toy", arch="4C3p1-R4C3-P2-R6C3-12", epochs=2, batch_size=8, dropout=0.2,
                      steps=5)
    res = train(cfg, tmp_path, train_data=(x, y), test_data=(x[:6], y[:6]), dataset_checksum="t",
                n_classes=3, progress=False, log=lambda *_: None)
    kinds = [lay.kind for lay in res["network"].layers]
    assert kinds.count("dropout") == 4 and kinds.count("residual") == 2
    assert all(lay.rng is None for lay in res["network"].layers if lay.kind == "dropout")
    assert np.isfinite(res["history"][-1]["train_loss"])
    ck = load_checkpoint(tmp_path)
    for (na, a), (nb, b) in zip(res["network"].parameters(), ck.network.parameters()):
        assert na == nb and np.array_equal(a, b)
    assert any(".R" not in n and "conv2.gain" in n for n, _ in ck.network.parameters())


def test_invariance_through_residual_and_dropout_network():
    """Eq. 8 layer by layer through dropout and residual blocks (inspect.verify_invariance)."""
    from eventsnn.encode import current
    from eventsnn.inspect import gradcheck, verify_invariance

    net = Network.from_arch("4C3p1-R4C3-P2-R6C3-12", 3, input_shape=(1, 6, 6), seed=0, dropout=0.2)
    for lay in net.layers:
        for sub in getattr(lay, "sublayers", [lay]):
            if hasattr(sub, "gain"):
                sub.gain[:] = 3.0
        if lay.kind == "dropout":
            lay.rng = np.random.default_rng(1)
    x = current(np.random.default_rng(0).random((3, 36)), steps=5)
    res = net.forward(x)
    assert all(s.n_events > 0 for s in res.spikes)
    g = np.random.default_rng(2).normal(size=res.spikes[-1].n_events)
    for kernel in ("exp", "depsilon"):
        rep = verify_invariance(net, res, g, kernel=kernel)
        assert rep.conserved and rep.matches_theory
        assert {"residual", "dropout"} <= {row.kind for row in rep.layers}
    with pytest.raises(ValueError, match="residual"):
        gradcheck(net, x)
