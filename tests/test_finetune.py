"""Fine-tuning: a new run started from another run's checkpoint (``TrainConfig.init_from``).

The tiny synthetic problem of ``toy_run.py`` (40 random 6x6 images, 3
classes, 36-20), as in ``test_train.py``. The source weights are read back straight from the HDF5 file
with h5py, independently of the library's loader.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from eventsnn.checkpoint import (CheckpointError, build_network, checkpoint_sha256, init_from_checkpoint,
                                 load_checkpoint)
from eventsnn.optim import cosine_lr
from eventsnn.train import evaluate
from toy_run import assert_same_params, toy_config, toy_data, toy_run


@pytest.fixture(scope="module")
def data():
    return toy_data()


config = toy_config
run = toy_run


def finetune_config(src_dir, **kw):
    path = src_dir / "checkpoint.h5"
    return config(init_from=str(path), init_from_sha256=checkpoint_sha256(path), **kw)


def stored_weights(path):
    """{layer index: {name: array}} read with h5py from a checkpoint's ``params`` group."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, ds in f["params"].items():
            _, layer, key = name.split(".", 2)
            out.setdefault(int(layer), {})[key] = ds[()]
    return [out[k] for k in sorted(out)]


def weighted(net):
    return [layer.parameters() for layer in net.layers if layer.parameters()]


@pytest.fixture(scope="module")
def source(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("source")
    run(config(seed=5), out, data)
    return out


def test_weights_are_copied_exactly(source):
    net = build_network(config(seed=11), 3, (6, 6))  # other seed: other initial weights
    want = stored_weights(source / "checkpoint.h5")
    assert any(not np.array_equal(a["weight"], b["weight"]) for a, b in zip(weighted(net), want))
    src = init_from_checkpoint(net, source)
    assert src.epoch == 2 and src.config.seed == 5
    got = weighted(net)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w) == ["gain", "offset", "weight"]
        for k in g:
            assert g[k].tobytes() == w[k].tobytes()


def test_dropout_network_takes_the_weights_of_one_without(source):
    net = build_network(config(dropout=0.3), 3, (6, 6))
    assert [layer.kind for layer in net.layers].count("dropout") == 1
    init_from_checkpoint(net, source / "checkpoint.h5")
    for g, w in zip(weighted(net), stored_weights(source / "checkpoint.h5")):
        for k in g:
            np.testing.assert_array_equal(g[k], w[k])


@pytest.mark.parametrize("arch, needle", [("36-21", "weighted layer 0"), ("36-20-8", "has 2 weighted layers, .36-20-8. has 3")])
def test_network_that_does_not_fit_is_refused(source, arch, needle):
    net = build_network(config(arch=arch), 3, (6, 6))
    before = [{k: v.copy() for k, v in p.items()} for p in weighted(net)]
    with pytest.raises(CheckpointError, match=needle):
        init_from_checkpoint(net, source)
    for b, p in zip(before, weighted(net)):  # nothing half-copied
        for k in p:
            np.testing.assert_array_equal(b[k], p[k])


def test_changed_or_missing_source_is_refused(source, tmp_path):
    copy = tmp_path / "copy.h5"
    copy.write_bytes((source / "checkpoint.h5").read_bytes())
    sha = checkpoint_sha256(copy)
    net = build_network(config(), 3, (6, 6))
    init_from_checkpoint(net, copy, sha)  # the expected file: fine
    with h5py.File(copy, "r+") as f:
        f["params/layers.0.weight"][0, 0] += 1.0
    with pytest.raises(CheckpointError, match="sha256"):
        init_from_checkpoint(net, copy, sha)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        init_from_checkpoint(net, tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError):
        init_from_checkpoint(net, tmp_path / "junk.h5")


def test_config_needs_both_fields():
    with pytest.raises(ValueError, match="init_from"):
        config(init_from="x.h5")
    with pytest.raises(ValueError, match="init_from"):
        config(init_from_sha256="0" * 64)


def test_finetune_starts_from_the_source_network(source, data, tmp_path):
    """With a vanishing learning rate and no weight decay the fine-tuned network is the
    source network: same test accuracy, same output spikes (no gain re-initialisation)."""
    cfg = finetune_config(source, lr=1e-300, weight_decay=0.0, epochs=1)
    res, lines = run(cfg, tmp_path / "ft", data)
    assert any(ln.startswith("weights from") for ln in lines)
    assert not any(ln.startswith("initial gains") for ln in lines)
    src = load_checkpoint(source)
    (_, _), (xt, yt) = data
    want = evaluate(src.network, xt, yt, src.config)
    assert res["history"][0]["test_accuracy"] == want["accuracy"]
    for g, w in zip(weighted(res["network"]), weighted(src.network)):
        for k in g:
            np.testing.assert_allclose(g[k], w[k], rtol=0, atol=1e-200)


def test_finetune_has_its_own_optimiser_and_schedule(source, data, tmp_path):
    cfg = finetune_config(source, lr=2e-4, epochs=3)
    res, _ = run(cfg, tmp_path / "ft", data)
    ck = load_checkpoint(tmp_path / "ft")
    assert ck.optim_state["t"] == 12  # 3 epochs x 4 batches of its own, not the source's 8 on top
    assert [h["lr"] for h in res["history"]] == [cosine_lr(2e-4, e, 3) for e in range(3)]
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3]
    assert ck.config.init_from == str(source / "checkpoint.h5")
    assert ck.config.init_from_sha256 == checkpoint_sha256(source)


def test_finetune_resumes_exactly(source, data, tmp_path):
    """A fine-tuning run stopped after epoch 1 and resumed equals the uninterrupted one,
    and resuming reads its own checkpoint, not the source again."""
    full, _ = run(finetune_config(source, epochs=2, lr=1e-3), tmp_path / "full", data)
    out = tmp_path / "part"
    run(finetune_config(source, epochs=1, lr=1e-3), out, data)
    resumed, lines = run(finetune_config(source, epochs=2, lr=1e-3), out, data, resume=True)
    assert not any(ln.startswith("weights from") for ln in lines)
    assert_same_params(full["network"], resumed["network"])
