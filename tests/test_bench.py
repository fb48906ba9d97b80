"""``eventsnn bench``, ``eventsnn dt-convergence`` and ``train --time discrete`` (CLI, in-process),
and the spike comparison of :mod:`eventsnn.convergence`.

The benchmark runs on a tiny network through the hidden ``--arch/--batch/--repeats``
options; dt-convergence and training read a tiny MNIST cache (IDX files written here,
checksums patched, network blocked: see tests/conftest.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from eventsnn.cli.main import main

from eventsnn import Network, SpikeTrains, encode
from eventsnn.checkpoint import load_checkpoint, save_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.convergence import compare_spikes, dt_convergence

ROW_KEYS = {"steps", "continuous_s_per_sample", "discrete_s_per_sample", "continuous_peak_mb", "discrete_peak_mb"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    errors = [l for l in res.stderr.splitlines() if l.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for n in needles:
        assert n in errors[0], errors[0]


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory, fake_mnist_cache):
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(30) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "test_labels": ((np.arange(12) * 7) % 10).astype(np.uint8)}
    data_dir = tmp_path_factory.mktemp("data")
    with fake_mnist_cache(arrays, data_dir):
        yield data_dir


# ----------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------
def test_bench_quick_json_shape():
    res = invoke("bench", "--quick", "--json", "--arch", "16-8", "--batch", "3", "--repeats", "1")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["steps"] for r in data["rows"]] == [5, 20, 100]
    for r in data["rows"]:
        assert ROW_KEYS <= set(r)
        assert all(r[k] > 0 for k in ROW_KEYS)
        assert r["discrete_every_step_s_per_sample"] > 0
    rows = data["rows"]
    # the continuous engine does not see T: the same step, the same memory
    cont = [r["continuous_peak_mb"] for r in rows]
    assert max(cont) < 1.05 * min(cont)
    assert rows[-1]["discrete_peak_mb"] > rows[0]["discrete_peak_mb"]
    assert data["batch"] == 3 and data["machine"]["cores"] >= 1


def test_bench_text_output():
    res = invoke("bench", "--arch", "16-8", "--batch", "2", "--repeats", "1")
    assert res.exit_code == 0, res.output
    assert res.output.count("T = ") == 3 and "machine:" in res.output


@pytest.mark.parametrize("args, needle", [
    (("--arch", "15-8"), "square"),
    (("--arch", "16-8", "--batch", "0"), "batch"),
    (("--arch", "16-8", "--repeats", "0"), "repeats"),
    (("--arch", "4C3-10"), "input size"),
])
def test_bench_errors(args, needle):
    one_line_error(invoke("bench", *args), needle)


# ----------------------------------------------------------------------------------
# dt-convergence
# ----------------------------------------------------------------------------------
def test_compare_spikes_by_hand():
    # sample 0: neuron 0 fires at 1.0, 2.0 (ref) vs 1.25, 2.5; neuron 1 fires once vs twice;
    # sample 1: neuron 2 at 0.5 vs 0.25
    ref = SpikeTrains([1.0, 1.5, 2.0, 0.5], [0, 1, 0, 2], np.ones(4), [0, 3, 4], 3)
    oth = SpikeTrains([1.25, 1.5, 1.75, 2.5, 0.25], [0, 1, 1, 0, 2], np.ones(5), [0, 4, 5], 3)
    c = compare_spikes(ref, oth)
    assert c["pairs_mismatched"] == pytest.approx(1 / 6)
    assert c["count_error"] == pytest.approx(1 / 4)
    assert c["matched"] == 3
    assert c["time_error"] == pytest.approx((0.25 + 0.5 + 0.25) / 3)
    assert c["time_error_max"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same samples"):
        compare_spikes(ref, SpikeTrains.empty(2, 4))


def test_dt_convergence_errors_shrink_and_mode_is_kept():
    rng = np.random.default_rng(2)
    net = Network.from_arch("25-30", 4, seed=3, t_end=5.0)
    for layer in net.layers:
        layer.gain[:] = 3.0
    inputs = encode.current(rng.uniform(0, 1.2, (8, 25)), steps=5)
    net.set_time("discrete", 7)
    rep = dt_convergence(net, inputs, [5, 50, 500], labels=np.arange(8) % 4)
    assert net.time == "discrete" and net.steps == 7
    hidden = [r["layers"][0] for r in rep.rows]
    assert rep.reference["spikes"][0] > 20
    assert hidden[-1]["pairs_mismatched"] < hidden[0]["pairs_mismatched"]
    assert hidden[-1]["time_error"] < hidden[0]["time_error"] / 5
    assert hidden[-1]["time_error"] < 2 * 5.0 / 500
    assert all(r["accuracy_diff"] is not None for r in rep.rows)
    assert rep.to_dict()["layers"] == rep.layers and len(rep.layers) == 2
    # batches add up to the same tallies
    small = dt_convergence(net, inputs, [5, 50, 500], labels=np.arange(8) % 4, batch_size=3)
    for a, b in zip(rep.rows, small.rows):
        for la, lb in zip(a["layers"], b["layers"]):
            assert la == pytest.approx(lb)
        assert a["agreement"] == b["agreement"]


def test_dt_convergence_cli(fake_mnist, tmp_path):
    png = tmp_path / "conv.png"
    res = invoke("dt-convergence", "--arch", "784-12", "--samples", 4, "--steps", "5,40", "--json",
                 "--plot", png, "--data-dir", fake_mnist)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["steps"] for r in data["rows"]] == [5, 40]
    assert data["n_samples"] == 4 and len(data["layers"]) == 2
    for r in data["rows"]:
        assert 0.0 <= r["agreement"] <= 1.0 and r["accuracy_diff"] is not None
        assert len(r["layers"]) == 2
    assert png.stat().st_size > 1000
    text = invoke("dt-convergence", "--arch", "784-12", "--samples", 3, "--steps", "5", "--data-dir", fake_mnist)
    assert text.exit_code == 0 and "T =    5" in text.output and "exact continuous time" in text.output


@pytest.mark.parametrize("args, needle", [
    ((), "exactly one"),
    (("--arch", "784-12", "--steps", "0,5"), "--steps"),
    (("--arch", "784-12", "--steps", "a,b"), "--steps"),
    (("--arch", "784-12", "--samples", "0"), "--samples"),
])
def test_dt_convergence_errors(fake_mnist, args, needle):
    one_line_error(invoke("dt-convergence", *args, "--data-dir", fake_mnist), needle)


# ----------------------------------------------------------------------------------
# training and inspection in discrete time
# ----------------------------------------------------------------------------------
def test_train_discrete_then_evaluate_and_inspect(fake_mnist, tmp_path):
    out = tmp_path / "run"
    res = invoke("train", "mnist", "--arch", "784-10", "--time", "discrete", "--epochs", 1, "--batch-size", 10,
                 "--limit-train", 20, "--limit-test", 6, "--supervision", "last-rise", "--quiet",
                 "--out", out, "--data-dir", fake_mnist)
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out / "checkpoint.h5")
    assert ck.config.time == "discrete" and ck.network.time == "discrete" and ck.network.steps == 5
    ev = invoke("evaluate", out, "--json", "--data-dir", fake_mnist, "--limit-test", 6)
    assert ev.exit_code == 0, ev.output
    assert 0.0 <= json.loads(ev.stdout)["accuracy"] <= 1.0
    one_line_error(invoke("gradcheck", out / "checkpoint.h5", "--data-dir", fake_mnist), "discrete clock")
    one_line_error(invoke("inspect", out / "checkpoint.h5", "--sample", 0, "--neuron", 0,
                          "--data-dir", fake_mnist), "discrete clock")
    inv = invoke("verify-invariance", out / "checkpoint.h5", "--samples", 2, "--json", "--data-dir", fake_mnist)
    assert inv.exit_code in (0, 1), inv.output                 # runs (Eq. 8 sums on the clock)
    assert "layers" in json.loads(inv.stdout)
    conv = invoke("dt-convergence", out / "checkpoint.h5", "--samples", 3, "--steps", "5,20", "--json",
                  "--data-dir", fake_mnist)
    assert conv.exit_code == 0, conv.output


def test_discrete_checkpoint_of_old_format_loads_continuous(tmp_path):
    cfg = TrainConfig(arch="16-4")
    net = Network.from_arch("16-4", 3, seed=0)
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, config=cfg, network=net, epoch=0, history=[], optim_state=None,
                    dataset_checksum="x", rng_state=None)
    import h5py

    with h5py.File(path, "r+") as f:
        data = json.loads(f.attrs["config"])
        del data["time"]
        f.attrs["config"] = json.dumps(data)
    assert load_checkpoint(path).network.time == "continuous"
