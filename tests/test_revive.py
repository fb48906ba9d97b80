"""Recycling of silent units (eventsnn.revive, ``--revive``).

Checked: which rows are recycled and how (hand-built ``fired`` masks, dense and
conv), that nothing else changes (bit for bit), that AdamW forgets the recycled
rows, that a neuron killed on purpose fires again afterwards (a forward pass),
and that a run with ``revive=True`` resumes bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from eventsnn.config import TrainConfig
from eventsnn.network import Network
from eventsnn.optim import AdamW
from eventsnn.revive import revive_silent
from eventsnn.train import encode_images, train
from toy_run import assert_same_params


def make(arch="36-20", shape=(1, 6, 6), seed=1, **kw):
    net = Network.from_arch(arch, 3, input_shape=shape, seed=seed, **kw)
    opt = AdamW([a for _, a in net.parameters()])
    return net, opt


def snapshot(net):
    return {name: a.copy() for name, a in net.parameters()}


def fill_moments(opt):
    for m, v in zip(opt.m, opt.v):
        m[...] = 0.25
        v[...] = 0.5


def test_dense_rows_recycled_and_nothing_else():
    net, opt = make()
    hidden, out = net.layers
    hidden.gain[:] = np.linspace(0.1, 0.3, 20)
    hidden.offset[:] = 0.01
    fill_moments(opt)
    before = snapshot(net)
    fired = [np.ones(20, bool), np.ones(3, bool)]
    dead = [2, 7, 19]
    fired[0][dead] = False
    counts = revive_silent(net, opt, fired, np.random.default_rng(5))
    assert counts == [1 * len(dead), 0]
    alive = np.setdiff1d(np.arange(20), dead)
    w = hidden._weight
    # recycled rows: redrawn within the initialisation bounds, different from before
    assert np.all(np.abs(w[dead]) <= 1 / np.sqrt(36)) and not np.any(w[dead] == before["layers.0.weight"][dead])
    assert np.all(hidden.gain[dead] == np.median(before["layers.0.gain"][alive]))
    assert np.all(hidden.offset[dead] == 0.0)
    # everything else bit for bit
    assert w[alive].tobytes() == before["layers.0.weight"][alive].tobytes()
    assert hidden.gain[alive].tobytes() == before["layers.0.gain"][alive].tobytes()
    assert hidden.offset[alive].tobytes() == before["layers.0.offset"][alive].tobytes()
    for name in ("layers.1.weight", "layers.1.gain", "layers.1.offset"):
        assert dict(net.parameters())[name].tobytes() == before[name].tobytes()
    # AdamW forgets exactly the recycled rows
    for p, m, v in zip(opt.params, opt.m, opt.v):
        rows = dead if p is w or p is hidden.gain or p is hidden.offset else []
        keep = np.setdiff1d(np.arange(p.shape[0]), rows)
        assert np.all(m[rows] == 0) and np.all(v[rows] == 0)
        assert np.all(m[keep] == 0.25) and np.all(v[keep] == 0.5)


def test_same_generator_same_draw():
    fired = [np.r_[np.zeros(4, bool), np.ones(16, bool)], np.ones(3, bool)]
    nets = []
    for _ in range(2):
        net, opt = make()
        revive_silent(net, opt, fired, np.random.default_rng([3, 7, 2]))
        nets.append(snapshot(net))
    for k in nets[0]:
        assert nets[0][k].tobytes() == nets[1][k].tobytes()


def test_conv_channel_recycled_only_when_silent_at_every_position():
    net, opt = make("4C3-10", shape=(1, 6, 6))
    conv = net.layers[0]
    assert conv.n_out == 4 * 4 * 4
    fired = np.zeros((4, 16), bool)
    fired[0, :] = True      # channel 0: fires everywhere
    fired[1, 5] = True      # channel 1: fires at one position only -> alive
    # channels 2 and 3: silent everywhere -> recycled
    before = snapshot(net)
    counts = revive_silent(net, opt, [fired.ravel(), np.ones(10, bool), np.ones(3, bool)],
                           np.random.default_rng(0))
    assert counts[0] == 2
    w = conv._weight
    assert w[:2].tobytes() == before["layers.0.weight"][:2].tobytes()
    assert not np.any(w[2:] == before["layers.0.weight"][2:])
    assert np.all(np.abs(w[2:]) <= 1 / np.sqrt(9))


def test_layers_without_standardisation_or_without_firing_units_are_left_alone():
    net, opt = make(weight_norm=False)
    before = snapshot(net)
    counts = revive_silent(net, opt, [np.zeros(20, bool), np.zeros(3, bool)], np.random.default_rng(0))
    assert counts == [0, 0]
    for k, a in snapshot(net).items():
        assert a.tobytes() == before[k].tobytes()
    net, opt = make()
    before = snapshot(net)
    # a wholly silent layer has no gain to copy: untouched (the trainer warns instead)
    assert revive_silent(net, opt, [np.zeros(20, bool), np.ones(3, bool)], np.random.default_rng(0)) == [0, 0]
    assert snapshot(net)["layers.0.weight"].tobytes() == before["layers.0.weight"].tobytes()
    with pytest.raises(ValueError, match="2 layers"):
        revive_silent(net, opt, [np.zeros(20, bool)], np.random.default_rng(0))


def test_killed_neuron_fires_again():
    """Turn neuron 0 against every input (as silent MNIST neurons are), then recycle it."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (60, 6, 6))
    cfg = TrainConfig(dataset="toy", arch="36-20", epochs=1, batch_size=10)
    net, opt = make()
    hidden = net.layers[0]
    hidden.gain[:] = 0.4
    inputs = encode_images(x, cfg)

    def fired_of():
        sp = net.forward(inputs).spikes[0]
        return np.bincount(sp.neurons, minlength=20) > 0

    assert fired_of().sum() > 10
    hidden._weight[0] = -1.0
    hidden._weight[0, 0] = 1.0  # standardised row: -1/6 everywhere but one input
    hidden.offset[0] = -1.0
    f = fired_of()
    assert not f[0]
    revive_silent(net, opt, [f, np.ones(3, bool)], np.random.default_rng(1))
    assert fired_of()[0]


def test_revive_run_resumes_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (40, 6, 6)), rng.integers(0, 3, 40)
    xt, yt = rng.uniform(0, 1, (12, 6, 6)), rng.integers(0, 3, 12)
    # gains initialised to a low rate so that hidden neurons go silent and get recycled
    base = dict(dataset="toy", arch="36-30", batch_size=10, revive=True, avg_spike_init=0.05, lr=5e-3)

    def go(out, epochs, resume=False):
        return train(TrainConfig(epochs=epochs, **base) if not resume else TrainConfig(epochs=3, **base), out,
                     train_data=(x, y), test_data=(xt, yt), dataset_checksum="t", n_classes=3,
                     resume=resume, progress=False, log=lambda s: None)

    full = go(tmp_path / "a", 3)
    assert sum(sum(h["revived"]) for h in full["history"]) > 0, "nothing recycled: the test needs silent units"
    assert all(h["revived"][0] == h["silent_neurons"][0] for h in full["history"])
    go(tmp_path / "b", 1)
    part = go(tmp_path / "b", 3, resume=True)
    assert_same_params(full["network"], part["network"])
    assert [h["revived"] for h in full["history"]] == [h["revived"] for h in part["history"]]
