"""Weight averaging of checkpoints (``eventsnn average``, a uniform model soup).

Sources are toy runs (``toy_run.py``); the expected averages are computed from
the arrays read straight from the HDF5 files with h5py and averaged with numpy.
"""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from eventsnn.checkpoint import (CheckpointError, average_checkpoints, checkpoint_sha256, load_checkpoint,
                                 save_checkpoint)
from eventsnn.train import evaluate
from toy_run import assert_same_params, toy_config, toy_data, toy_run


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """A source run and three fine-tuning runs of it (other augmentation, learning rate, dropout)."""
    root = tmp_path_factory.mktemp("runs")
    toy_run(toy_config(seed=5), root / "src", data)
    src = root / "src" / "checkpoint.h5"
    ft = dict(init_from=str(src), init_from_sha256=checkpoint_sha256(src), epochs=1)
    toy_run(toy_config(lr=1e-3, **ft), root / "a", data)
    toy_run(toy_config(lr=3e-3, augment="shift1", **ft), root / "b", data)
    toy_run(toy_config(lr=2e-3, dropout=0.2, **ft), root / "c", data)
    return root


def h5_params(path):
    with h5py.File(path, "r") as f:
        return {name: ds[()] for name, ds in f["params"].items()}


def test_average_is_the_mean_of_the_stored_arrays(runs):
    paths = [runs / n / "checkpoint.h5" for n in "ab"]
    ck = average_checkpoints(paths)
    stored = [h5_params(p) for p in paths]
    got = dict(ck.network.parameters())
    assert sorted(got) == sorted(stored[0])
    for name, arr in got.items():
        want = np.mean([s[name] for s in stored], axis=0)
        np.testing.assert_allclose(arr, want, rtol=1e-15, atol=1e-300)
        assert not np.array_equal(arr, stored[0][name]) or np.array_equal(stored[0][name], stored[1][name])
    assert ck.epoch == 0 and ck.history == [] and ck.optim_state is None
    assert ck.config == load_checkpoint(paths[0]).config
    assert [s["sha256"] for s in ck.averaged_from] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert [s["epoch"] for s in ck.averaged_from] == [1, 1]


def test_average_with_a_dropout_run_matches_layers_in_order(runs):
    """Run c has a dropout layer (other layer indices); its weighted layers still pair with a's."""
    ck = average_checkpoints([runs / "a", runs / "c"])
    a, c = h5_params(runs / "a" / "checkpoint.h5"), h5_params(runs / "c" / "checkpoint.h5")
    assert "layers.2.weight" in c and "layers.1.weight" in a  # hidden, dropout, output vs hidden, output
    got = dict(ck.network.parameters())
    np.testing.assert_allclose(got["layers.0.weight"], (a["layers.0.weight"] + c["layers.0.weight"]) / 2,
                               rtol=1e-15)
    np.testing.assert_allclose(got["layers.1.gain"], (a["layers.1.gain"] + c["layers.2.gain"]) / 2, rtol=1e-15)


def test_average_of_copies_is_the_network_itself(runs, tmp_path, data):
    copy = tmp_path / "copy.h5"
    copy.write_bytes((runs / "a" / "checkpoint.h5").read_bytes())
    ck = average_checkpoints([runs / "a", copy])  # (w + w) / 2 == w exactly
    orig = load_checkpoint(runs / "a")
    assert_same_params(ck.network, orig.network)
    _, (xt, yt) = data
    assert evaluate(ck.network, xt, yt, ck.config) == evaluate(orig.network, xt, yt, orig.config)


def test_saved_average_round_trips_and_refuses_resume(runs, tmp_path, data):
    ck = average_checkpoints([runs / n for n in "abc"])
    out = tmp_path / "soup"
    out.mkdir()
    save_checkpoint(out / "checkpoint.h5", config=ck.config, network=ck.network, epoch=0, history=[],
                    optim_state=None, dataset_checksum=ck.dataset_checksum, rng_state=None,
                    averaged_from=ck.averaged_from)
    back = load_checkpoint(out)
    assert back.averaged_from == ck.averaged_from and len(back.averaged_from) == 3
    assert_same_params(back.network, ck.network)
    with pytest.raises(ValueError, match="averaged network"):
        toy_run(ck.config, out, data, resume=True)
    # a plain checkpoint has no sources
    assert load_checkpoint(runs / "a").averaged_from is None


@pytest.mark.parametrize("change, field", [(dict(arch="36-21"), "arch"), (dict(tau_m=6.0), "tau_m"),
                                           (dict(pool="max"), "pool"), (dict(steps=4), "steps")])
def test_other_networks_are_refused(runs, tmp_path, change, field):
    ck = load_checkpoint(runs / "a")
    cfg = type(ck.config)(**{**json.loads(ck.config.to_json()), **change})
    net = ck.network
    if "arch" in change:
        from eventsnn.checkpoint import build_network

        net = build_network(cfg, 3, (6, 6))
    other = tmp_path / "other.h5"
    save_checkpoint(other, config=cfg, network=net, epoch=1, history=[], optim_state=None,
                    dataset_checksum="toy-v1", rng_state=None)
    with pytest.raises(CheckpointError, match=field):
        average_checkpoints([runs / "a", other])


def test_bad_inputs_are_refused(runs, tmp_path):
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([runs / "a"])
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        average_checkpoints([runs / "a", tmp_path / "missing.h5"])
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n junk")
    with pytest.raises(CheckpointError):
        average_checkpoints([runs / "a", tmp_path / "junk.h5"])
