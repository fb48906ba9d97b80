"""The backward walks only the samples that carry a gradient (``sweep.gradient_samples``).

A sample none of whose output spikes (nor its supervisory spike) has a nonzero
dL/dt contributes exact zeros to every gradient, so leaving its windows out must
not change a single bit of the weight, gain, offset or input gradients. Checked
on whole networks (every layer kind: the first convolution's dense path, pooling,
the second convolution's sparse path and unit walks, dense layers on image and on
event inputs, the output layer with supervisory spikes), with some samples' output
gradients set to zero, against the same backward with every sample walked (the
previous behaviour). The flags of the skipped spikes say so; those of the others
are unchanged. The same holds on the clock (``time="discrete"``: the official
backward, whose input gradients are formed only for the walked samples' events).
"""

from __future__ import annotations

import numpy as np
import pytest
from toy_run import stroke_images

from eventsnn.checkpoint import build_network
from eventsnn.config import TrainConfig
from eventsnn.engine import discrete, sweep
from eventsnn.engine.sweep import FLAG_NO_GRADIENT, ForcedSpikes
from eventsnn.loss import count_loss
from eventsnn.train import encode_images, init_gains


def every_sample(n_samples, spike_samples, grad, forced=None):
    return np.ones(n_samples, dtype=np.bool_)


def run_backward(net, result, grad, forced, cfg, monkeypatch, restrict: bool):
    fn = sweep.__dict__["gradient_samples"] if restrict else every_sample
    with monkeypatch.context() as m:
        m.setattr(sweep, "gradient_samples", fn)  # with_gradient looks it up here
        m.setattr(discrete, "gradient_samples", fn)  # clock_backward's own reference
        gp = cfg.grad_params()
        return net.backward(result, grad, kernel=gp.kernel, tau_grad=gp.tau_grad, max_dt_du=gp.max_dt_du,
                            input_grad_scale=gp.input_grad_scale, drop_nonpositive=gp.drop_nonpositive,
                            forced=forced, input_grad=True)


@pytest.mark.parametrize("arch, kernel, time", [
    ("8C5-P2-12C5-P2-30", "exp", "continuous"), ("8C5-P2-12C5-P2-30", "depsilon", "continuous"),
    ("784-40", "exp", "continuous"), ("8C5-P2-12C5-P2-30", "exp", "discrete"),
    ("8C5-P2-12C5-P2-30", "depsilon", "discrete"), ("784-40", "exp", "discrete")])
def test_skipping_samples_without_gradient_changes_no_bit(arch, kernel, time, monkeypatch):
    rng = np.random.default_rng(4)
    n = 8
    x = stroke_images(rng, n)
    y = rng.integers(0, 10, n)
    cfg = TrainConfig(arch=arch, grad_kernel=kernel, time=time)
    net = build_network(cfg, 10, x.shape[1:])
    assert net.time == time
    init_gains(net, encode_images(x, cfg), cfg.avg_spike_init)
    result = net.forward(encode_images(x, cfg))
    out = result.spikes[-1]
    cl = count_loss(out, y, steps=cfg.steps, t_end=cfg.t_end, desired=cfg.desired, undesired=cfg.undesired,
                    supervision=cfg.supervision, supervision_times=net.supervision_times(result, y, cfg.supervision))
    # samples 1, 4, 5 and 7 carry no gradient (as if their count loss were zero)
    silent = np.array([1, 4, 5, 7])
    spike_sample = np.repeat(np.arange(n), np.diff(out.offsets))
    grad = np.where(np.isin(spike_sample, silent), 0.0, cl.grad)
    f = cl.forced
    forced = ForcedSpikes(f.samples, f.neurons, f.times, np.where(np.isin(f.samples, silent), 0.0, f.grads),
                          max_dt_du=f.max_dt_du)
    active = np.setdiff1d(np.arange(n), silent)
    assert np.any(grad[np.isin(spike_sample, active)] != 0.0)
    assert sweep.gradient_samples(n, spike_sample, grad, forced).tolist() == [i not in silent for i in range(n)]

    engines = [getattr(r, "engine", r) for r in result.records]
    if time == "discrete":
        assert all(isinstance(e, (discrete.ClockRecord, discrete.ClockPoolRecord)) for e in engines)
    elif "C" in arch:  # both convolution paths: dense (image input) and sparse (unit walks)
        assert engines[0].dense and engines[2].units is not None
    full = run_backward(net, result, grad, forced, cfg, monkeypatch, restrict=False)
    part = run_backward(net, result, grad, forced, cfg, monkeypatch, restrict=True)
    a, b = full.parameter_grads(), part.parameter_grads()
    assert len(a) == len(b) and any(np.any(g != 0.0) for g in a)
    for ga, gb in zip(a, b):
        np.testing.assert_array_equal(ga, gb)
    walked_kinds = set()
    for l, (la, lb) in enumerate(zip(full.layers, part.layers)):
        np.testing.assert_array_equal(la.events, lb.events)  # dL/dt of the layer's input events
        fa, fb = la.raw.flags, lb.raw.flags
        smp = np.repeat(np.arange(n), np.diff(result.spikes[l].offsets))
        if not fa.size or fa.size != smp.size:  # no windows of its own (pooling)
            continue
        # the layer's own output gradient decides (a sample's gradient may die out below the top)
        g_out = grad if l == len(net.layers) - 1 else full.layers[l + 1].events
        with_grad = np.zeros(n, bool)
        with_grad[smp[g_out != 0.0]] = True
        if l == len(net.layers) - 1:
            with_grad[forced.samples[forced.grads != 0.0]] = True
        skipped = ~with_grad[smp]
        assert not with_grad[silent].any() and skipped.any() and not skipped.all()
        assert np.all(fb[skipped] == FLAG_NO_GRADIENT) and not np.any(fa & FLAG_NO_GRADIENT)
        np.testing.assert_array_equal(fa[~skipped], fb[~skipped])
        walked_kinds.add(net.layers[l].kind)
    assert walked_kinds >= ({"conv", "dense"} if "C" in arch else {"dense"})


def test_helpers_on_a_hand_made_case():
    samples = np.array([0, 0, 1, 2, 2, 3])
    grad = np.array([0.0, 0.0, 0.5, 0.0, -0.0, 0.0])
    forced = ForcedSpikes(np.array([0, 3]), np.array([1, 1]), np.array([0.5, 0.7]), np.array([0.0, 2.0]))
    active = sweep.gradient_samples(5, samples, grad, forced)
    assert active.tolist() == [False, True, False, True, False]
    spikes = (samples, np.arange(6), np.arange(6) * 0.5)
    idx, kept, g = sweep.restrict_to_samples(active, samples, spikes, grad)
    assert idx.tolist() == [2, 5] and kept[1].tolist() == [2, 5] and g.tolist() == [0.5, 0.0]
    assert sweep.restrict_to_samples(np.ones(5, bool), samples, spikes, grad)[0] is None
    fk = sweep.restrict_forced(active, forced)
    assert fk.samples.tolist() == [3] and fk.grads.tolist() == [2.0] and fk.max_dt_du == forced.max_dt_du
    assert sweep.restrict_forced(np.zeros(5, bool), forced) is None
    flags = sweep.all_flags(idx, np.array([4, 1], dtype=np.int8), 6)
    assert flags.tolist() == [8, 8, 4, 8, 8, 1]


def test_forced_spikes_are_cast_and_checked():
    f = ForcedSpikes([0, 2], [1, 3], [2, 4], [0.5, 0])
    assert f.samples.dtype == np.int64 and f.neurons.dtype == np.int64
    assert f.times.dtype == np.float64 and f.grads.tolist() == [0.5, 0.0]
    assert sweep.gradient_samples(3, np.array([0, 1]), np.array([0.0, 0.0]), f).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="one entry per supervisory spike"):
        ForcedSpikes([0, 1], [1], [2.0], [0.5])
