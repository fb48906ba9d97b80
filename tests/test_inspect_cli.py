"""The inspection commands of the ``eventsnn`` command line, in-process with click's CliRunner:
inspect, verify-invariance, gradcheck, reverse-gradient, simulate, plot raster / membrane.

As in tests/test_cli.py, a tiny MNIST cache is written in the IDX format and the pinned
checksums are patched to it; the network is blocked. The checkpoint is a small conv network
whose gains were set by the trainer's binary search (no training needed to look inside).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from eventsnn.cli.main import main

from eventsnn.checkpoint import load_checkpoint, save_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.inspect import fresh_network, load_simulation
from eventsnn.train import encode_images

ARCH = "4C5-P2-12"
N_TRAIN, N_TEST = 60, 12



@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory, fake_mnist_cache):
    """Data dir with a small valid MNIST cache (digit-like blobs); FILES patched for the module."""
    rng = np.random.default_rng(0)

    def digits(n):
        x = np.zeros((n, 28, 28))
        yy, xx = np.mgrid[:28, :28]
        for i in range(n):
            for _ in range(3):
                cy, cx = rng.uniform(7, 21, 2)
                x[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(6, 20))
        return (255 * np.clip(x, 0, 1)).astype(np.uint8)

    arrays = {"train_images": digits(N_TRAIN), "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
              "test_images": digits(N_TEST), "test_labels": ((np.arange(N_TEST) * 3) % 10).astype(np.uint8)}
    data_dir = tmp_path_factory.mktemp("data")
    with fake_mnist_cache(arrays, data_dir):
        yield {"dir": data_dir, "arrays": arrays}


@pytest.fixture(scope="module")
def checkpoint(fake_mnist, tmp_path_factory):
    a = fake_mnist["arrays"]
    config = TrainConfig(arch=ARCH, pool="max", seed=4, avg_spike_init=1.5)
    net = fresh_network(config, a["train_images"] / 255.0, 10)
    path = tmp_path_factory.mktemp("run") / "checkpoint.h5"
    save_checkpoint(path, config=config, network=net, epoch=0, history=[], optim_state=None,
                    dataset_checksum="test", rng_state=None)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result, code=0):
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def as_json(result):
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def assert_user_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    assert lines[0].startswith("Error:") and "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def first_spike(checkpoint, fake_mnist, layer, sample=0):
    """(neuron, G known?) of a neuron of ``layer`` that fires on the test sample."""
    ck = load_checkpoint(checkpoint)
    x = fake_mnist["arrays"]["test_images"][sample:sample + 1] / np.float32(255)
    out = ck.network.forward(encode_images(x.astype(np.float32), ck.config)).spikes[layer]
    assert out.n_events, f"layer {layer} is silent on sample {sample}"
    return int(np.bincount(out.neurons).argmax())


# ----------------------------------------------------------------------------------
# inspect
# ----------------------------------------------------------------------------------
def test_inspect_text_json_and_plot(checkpoint, fake_mnist, tmp_path):
    d = fake_mnist["dir"]
    for layer in (0, 2):
        n = first_spike(checkpoint, fake_mnist, layer)
        res = as_json(ok(invoke("inspect", checkpoint, "--sample", 0, "--layer", layer, "--neuron", n,
                                "--json", "--data-dir", d)))
        assert res["layer"] == layer and res["neuron"] == n and res["sample"] == 0 and res["label"] == 0
        shares = np.array([e["share"] for e in res["inputs"]])
        assert res["inputs"] and abs(shares.sum() - 1.0) < 1e-12 and abs(res["share_sum"] - 1.0) < 1e-12
        grads = np.array([e["gradient"] for e in res["inputs"]])
        assert grads.sum() == pytest.approx(res["grad"], abs=1e-12)
        lo, hi = res["window"]
        assert all(e["time"] <= hi for e in res["inputs"]) and hi == res["time"] and lo < hi
        for key in ("source", "time", "amplitude", "weight", "h", "share", "gradient"):
            assert key in res["inputs"][0]
    png = tmp_path / "fig2.png"
    n = first_spike(checkpoint, fake_mnist, 0)
    out = ok(invoke("inspect", checkpoint, "--sample", 0, "--layer", 0, "--neuron", n, "--top", 3,
                    "--plot", png, "--data-dir", d)).stdout
    assert "sum of shares = 1.0000000000000" in out and "(Eq. 6: 1)" in out and "G_k = dL/dt_k" in out
    assert "the 3 with the largest |share| listed" in out
    assert png.stat().st_size > 20_000


def test_inspect_bad_requests(checkpoint, fake_mnist):
    d = fake_mnist["dir"]
    base = ["inspect", checkpoint, "--data-dir", d]
    assert_user_error(invoke(*base, "--sample", 0, "--layer", 1, "--neuron", 0), "pooling")
    assert_user_error(invoke(*base, "--sample", 0, "--layer", 9, "--neuron", 0), "--layer 9")
    assert_user_error(invoke(*base, "--sample", 99, "--neuron", 0), "--sample 99")
    assert_user_error(invoke(*base, "--sample", 0, "--neuron", 10), "--neuron 10")
    assert_user_error(invoke(*base, "--sample", 0, "--layer", 0, "--neuron", 0, "--spike", 50),
                      "no spike 50")
    assert_user_error(invoke("inspect", "--sample", 0, "--neuron", 0, "--data-dir", d), "CHECKPOINT")
    assert_user_error(invoke(*base, "--arch", ARCH, "--sample", 0, "--neuron", 0), "exactly one")
    assert_user_error(invoke("inspect", checkpoint.parent / "missing.h5", "--sample", 0, "--neuron", 0,
                             "--data-dir", d), "no such checkpoint")


# ----------------------------------------------------------------------------------
# verify-invariance, gradcheck, reverse-gradient
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pool,kernel", [("max", "exp"), ("adjusted-avg", "depsilon")])
def test_verify_invariance_conserved(checkpoint, fake_mnist, tmp_path, pool, kernel):
    png = tmp_path / "inv.png"
    res = as_json(ok(invoke("verify-invariance", checkpoint, "--pool", pool, "--kernel", kernel,
                            "--samples", 4, "--json", "--plot", png, "--data-dir", fake_mnist["dir"])))
    assert res["conserved"] is True and res["matches_theory"] is True
    assert res["kernel"] == kernel and res["pool"] == pool and len(res["samples"]) == 4
    sums = [layer["sum"] for layer in res["layers"]] + [res["input_sum"]]
    assert res["total"] != 0 and np.allclose(sums, res["total"], rtol=1e-9, atol=0)
    assert [layer["layer"] for layer in res["layers"]] == [3, 2, 1, 0]
    assert all(l["worst_share_error"] <= 1e-9 for l in res["layers"] if l["kind"] != "pool")
    assert png.stat().st_size > 20_000


def test_verify_invariance_avg_reports_the_expected_loss(fake_mnist):
    r = ok(invoke("verify-invariance", "--arch", ARCH, "--pool", "avg", "--samples", 3, "--seed", 2,
                  "--data-dir", fake_mnist["dir"]))
    assert "expected for plain avg pooling" in r.stdout and "conserved: no" in r.stdout
    assert "matches theory: yes" in r.stdout


def test_verify_invariance_exit_1_when_theory_fails(checkpoint, fake_mnist, monkeypatch):
    import eventsnn.inspect as ins

    real = ins.verify_invariance

    def broken(*args, **kwargs):
        rep = real(*args, **kwargs)
        return ins.InvarianceReport(**{**rep.__dict__, "conserved": False, "matches_theory": False})

    monkeypatch.setattr(ins, "verify_invariance", broken)
    r = invoke("verify-invariance", checkpoint, "--samples", 2, "--data-dir", fake_mnist["dir"])
    assert r.exit_code == 1 and "matches theory: NO" in r.stdout


def test_gradcheck_passes(fake_mnist, tmp_path):
    png = tmp_path / "gc.png"
    res = as_json(ok(invoke("gradcheck", "--arch", ARCH, "--samples", 3, "--weights", 4, "--json",
                            "--plot", png, "--data-dir", fake_mnist["dir"])))
    assert res["passed"] is True and res["max_rel_error"] <= 1e-5
    assert [l["name"].split()[0] for l in res["layers"]] == ["conv", "dense", "output"]
    assert all(len(l["checks"]) >= 1 for l in res["layers"])
    assert png.stat().st_size > 20_000


def test_reverse_gradient(checkpoint, fake_mnist, tmp_path):
    png = tmp_path / "rev.png"
    d = fake_mnist["dir"]
    res = as_json(ok(invoke("reverse-gradient", checkpoint, "--samples", 4, "--json", "--plot", png,
                            "--data-dir", d)))
    assert res["ok"] is True and res["totals"]["exp"]["reversed"] == 0
    assert res["totals"]["exp"]["contributions"] > 0
    assert 0.0 <= res["totals"]["depsilon"]["fraction"] < 1.0
    assert png.stat().st_size > 20_000
    text = ok(invoke("reverse-gradient", checkpoint, "--samples", 2, "--data-dir", d)).stdout
    assert "h = exp reverses no gradient" in text


@pytest.mark.parametrize("args,needle", [
    (["--samples", 0], "--samples"),
    (["--pool", "median"], "median"),
    (["--dataset", "cifar99"], "cifar99"),
    (["--kernel", "gauss"], "gauss"),
])
def test_check_commands_bad_input(fake_mnist, args, needle):
    assert_user_error(invoke("verify-invariance", "--arch", ARCH, *args, "--data-dir", fake_mnist["dir"]), needle)


def test_check_commands_bad_arch_and_subject(checkpoint, fake_mnist):
    d = fake_mnist["dir"]
    assert_user_error(invoke("gradcheck", "--arch", "784-3O0", "--data-dir", d), "3O0")
    assert_user_error(invoke("reverse-gradient", "--data-dir", d), "CHECKPOINT")
    assert_user_error(invoke("gradcheck", checkpoint, "--arch", ARCH, "--data-dir", d), "exactly one")
    assert_user_error(invoke("verify-invariance", checkpoint, "--dataset", "fashion_mnist", "--data-dir", d),
                      "--dataset")


# ----------------------------------------------------------------------------------
# simulate and the plots of its files
# ----------------------------------------------------------------------------------
def test_simulate_and_plot(checkpoint, fake_mnist, tmp_path):
    d = fake_mnist["dir"]
    h5 = tmp_path / "sim.h5"
    res = as_json(ok(invoke("simulate", checkpoint, "--sample", 1, "--out", h5, "--membrane", 60,
                            "--layer", 2, "--neurons", "0,3,5", "--json", "--data-dir", d)))
    sim = load_simulation(h5)
    ck = load_checkpoint(checkpoint)
    x = (fake_mnist["arrays"]["test_images"][1:2] / np.float32(255)).astype(np.float32)
    ref = ck.network.forward(encode_images(x, ck.config))
    assert all(a.equals(b) for a, b in zip(sim.spikes, ref.spikes)) and sim.inputs.equals(ref.inputs)
    assert res["events"] == [ref.inputs.n_events] + [s.n_events for s in ref.spikes]
    assert res["membrane"] == {"layer": 2, "neurons": [0, 3, 5], "points": 60}
    assert sim.sample == 1 and sim.label == 3 and sim.membrane.shape == (3, 60)
    for cmd in (["raster", h5], ["raster", h5, "--layers", "0,2"], ["membrane", h5],
                ["membrane", h5, "--neuron", 3]):
        png = tmp_path / "p.png"
        out = ok(invoke("plot", *cmd, "--out", png)).stdout
        assert "wrote" in out and png.stat().st_size > 10_000
        png.unlink()
    res = as_json(ok(invoke("plot", "membrane", h5, "--neuron", 5, "--json", "--out", tmp_path / "m.png")))
    assert res["neurons"] == [5] and res["layer"] == 2
    assert res["spike_times"] == [sim.spike_times(2, 5).tolist()]
    res = as_json(ok(invoke("plot", "raster", h5, "--json", "--out", tmp_path / "r.png")))
    assert res["layers"] == [0, 1, 2, 3] and res["events"] == sim.counts()
    # a file without traces, and a foreign one
    ok(invoke("simulate", checkpoint, "--sample", 0, "--out", tmp_path / "plain.h5", "--data-dir", d))
    assert_user_error(invoke("plot", "membrane", tmp_path / "plain.h5", "--out", tmp_path / "m.png"),
                      "no membrane traces")
    assert_user_error(invoke("plot", "membrane", h5, "--neuron", 1, "--out", tmp_path / "m.png"),
                      "not traced")
    assert_user_error(invoke("plot", "raster", checkpoint, "--out", tmp_path / "r.png"), "simulation")
    assert_user_error(invoke("plot", "raster", tmp_path / "none.h5", "--out", tmp_path / "r.png"),
                      "no such file")
    assert_user_error(invoke("plot", "raster", h5, "--layers", "7", "--out", tmp_path / "r.png"), "layers")


def test_simulate_bad_input(checkpoint, fake_mnist, tmp_path):
    d = fake_mnist["dir"]
    base = ["simulate", checkpoint, "--sample", 0, "--out", tmp_path / "s.h5", "--data-dir", d]
    assert_user_error(invoke(*base, "--membrane", 10, "--neurons", "1,x"), "--neurons")
    assert_user_error(invoke(*base, "--neurons", "1"), "--membrane")
    assert_user_error(invoke(*base, "--membrane", 1), "--membrane")
    assert_user_error(invoke(*base, "--membrane", 10, "--layer", 1), "pooling")
    assert_user_error(invoke(*base, "--membrane", 10, "--layer", 0, "--neurons", "99999"), "must lie")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(invoke("simulate", checkpoint, "--sample", 0, "--out", blocker / "s.h5",
                             "--data-dir", d))
    assert not (tmp_path / "s.h5").exists()
