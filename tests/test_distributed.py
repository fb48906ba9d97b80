"""Dask: data-parallel training against one process, distributed evaluation, sweeps with retries.

Everything runs on one ``LocalCluster`` of 2 worker processes (module
fixture). The references are the single-process library functions, run here
in the test process: data-parallel weights after an epoch must equal the
single-process weights up to float64 summation order (bound
``WEIGHT_BOUND``, see eventsnn/distributed.py and docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask/distributed not installed (extra 'distributed')")

import cloudpickle
from sweep_data import digits, fake_mnist_dir, invoke

from eventsnn import distributed as dist
from eventsnn.checkpoint import build_network, load_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.sweep import TrainingData, expand_grid, run_sweep
from eventsnn.train import batch_gradients, evaluate, train

# functions of this module run on the workers: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: Documented bound of |w_data-parallel - w_single| after one epoch (summation order only).
WEIGHT_BOUND = 1e-12


@pytest.fixture(scope="module")
def client():
    with dist.connect(workers=2) as c:
        yield c


def params(net):
    return dist.flatten([a for _, a in net.parameters()])


def run_both(client, cfg, x, y, xt, yt, tmp_path):
    kw = {"train_data": (x, y), "test_data": (xt, yt), "dataset_checksum": "t", "n_classes": 10,
          "progress": False, "log": lambda *_: None}
    single = train(cfg, tmp_path / "single", **kw)
    runner = dist.DataParallel(client)
    par = train(cfg, tmp_path / "dp", runner=runner, **kw)
    return single, par, runner


# ----------------------------------------------------------------------------------
# data-parallel training
# ----------------------------------------------------------------------------------
def test_shard_gradients_sum_to_the_batch_gradient():
    """The premise of data parallelism: the loss is a sum over the batch (no cluster needed)."""
    from eventsnn.train import encode_images, init_gains

    x, y = digits(24)
    cfg = TrainConfig(arch="784-20", batch_size=24)
    net = build_network(cfg, 10, (28, 28))
    init_gains(net, encode_images(x, cfg), cfg.avg_spike_init)
    full, st = batch_gradients(net, x, y, cfg)
    parts = [batch_gradients(net, x[a:b], y[a:b], cfg) for a, b in ((0, 7), (7, 16), (16, 24))]
    summed = [sum(p[0][k] for p in parts) for k in range(len(full))]
    for f, s in zip(full, summed):  # equal up to summation order: relative to the array's scale
        assert np.max(np.abs(s - f)) <= 1e-12 * np.max(np.abs(f))
        assert np.max(np.abs(f)) > 0
    assert st.loss == pytest.approx(sum(p[1].loss for p in parts), rel=1e-13)
    assert st.correct == sum(p[1].correct for p in parts)
    assert st.spikes == [sum(v) for v in zip(*(p[1].spikes for p in parts))]


def test_piece_bounds_cover_each_batch_in_order():
    for a, b, w in [(0, 12, 2), (12, 13, 2), (5, 12, 3), (0, 1, 4)]:
        bounds = dist.piece_bounds(a, b, w)
        assert bounds[0] == a and bounds[-1] == b and len(bounds) == w + 1
        sizes = np.diff(bounds)
        assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("augment", ["none", "shift"])
def test_data_parallel_epoch_equals_single_process(client, tmp_path, augment):
    # 49 samples, batch 12: uneven pieces and a last batch of one sample (one worker idle)
    x, y = digits(49, seed=1)
    xt, yt = digits(30, seed=2)
    cfg = TrainConfig(arch="784-30", epochs=1, batch_size=12, augment=augment, lr=2e-3)
    single, par, runner = run_both(client, cfg, x, y, xt, yt, tmp_path)
    w1, w2 = params(single["network"]), params(par["network"])
    assert np.max(np.abs(w1 - w2)) <= WEIGHT_BOUND
    initial = build_network(cfg, 10, (28, 28)).layers[0].weight
    assert np.max(np.abs(single["network"].layers[0].weight - initial)) > 1e-3  # it did train
    h1, h2 = single["history"][0], par["history"][0]
    for key in ("train_accuracy", "test_accuracy", "silent_neurons", "windows_dropped", "windows_clamped"):
        assert h1[key] == h2[key], key
    for key in ("train_loss", "time_to_decision"):
        assert h2[key] == pytest.approx(h1[key], rel=1e-12), key
    np.testing.assert_allclose(h2["spikes_per_neuron"], h1["spikes_per_neuron"], rtol=1e-12)
    s = runner.times.summary()
    assert s["steps"] == 5
    n_par = w1.size
    # parameters out to every busy worker, gradients back: 4 steps x 2 workers + 1 step x 1 worker
    assert runner.times.bytes_sent == runner.times.bytes_received == 8 * n_par * (4 * 2 + 1)
    assert runner.times.epoch_bytes == x[:49].nbytes


@pytest.mark.parametrize("augment", ["none", "shift"])
def test_data_parallel_with_grad_pieces_is_bit_identical(client, tmp_path, augment):
    """--grad-pieces 2 in one process and 2 workers: the same bits after a whole epoch of
    30 steps (the per-step rounding of the plain split would have been amplified by then)."""
    x, y = digits(240, seed=3)
    xt, yt = digits(20, seed=4)
    cfg = TrainConfig(arch="784-30", epochs=1, batch_size=8, augment=augment, lr=2e-3, grad_pieces=2)
    single, par, _ = run_both(client, cfg, x, y, xt, yt, tmp_path)
    assert params(single["network"]).tobytes() == params(par["network"]).tobytes()
    assert single["history"][0]["test_accuracy"] == par["history"][0]["test_accuracy"]
    bad = TrainConfig(arch="784-30", epochs=1, batch_size=8, grad_pieces=3)
    with pytest.raises(ValueError, match="grad_pieces 3"):
        run_both(client, bad, x[:16], y[:16], xt, yt, tmp_path / "bad")


def test_grad_pieces_sum_the_pieces_in_order():
    """One process: grad_pieces = P is the ordered sum of the P pieces' batch gradients."""
    from eventsnn.train import batch_gradients, piece_bounds

    x, y = digits(11, seed=5)
    cfg = TrainConfig(arch="784-20", grad_pieces=3)
    net = build_network(cfg, 10, (28, 28))
    b = piece_bounds(0, 11, 3)
    parts = [batch_gradients(net, x[s:e], y[s:e], cfg)[0] for s, e in zip(b[:-1], b[1:])]
    whole = batch_gradients(net, x, y, cfg)[0]
    for k, w in enumerate(whole):
        want = (parts[0][k] + parts[1][k]) + parts[2][k]
        np.testing.assert_allclose(want, w, rtol=1e-9, atol=1e-12 * np.abs(w).max())
    from eventsnn.optim import AdamW
    from eventsnn.train import train_step

    grads_seen = []
    opt = AdamW([a for _, a in net.parameters()], lr=1e-3)
    import eventsnn.train as train_mod

    real = train_mod.apply_gradients
    try:
        train_mod.apply_gradients = lambda o, g, c: grads_seen.append([a.copy() for a in g])
        train_step(net, opt, x, y, cfg)
    finally:
        train_mod.apply_gradients = real
    for k in range(len(whole)):
        assert grads_seen[0][k].tobytes() == ((parts[0][k] + parts[1][k]) + parts[2][k]).tobytes()


def test_data_parallel_on_mnist_subset(client, tmp_path):
    from eventsnn.datasets import DatasetError, load_dataset

    try:
        x, y = load_dataset("mnist", "train", download=False)
        xt, yt = load_dataset("mnist", "test", download=False)
    except (DatasetError, OSError) as exc:
        pytest.skip(f"no MNIST cache here ({exc})")
    cfg = TrainConfig(arch="784-40", epochs=1, batch_size=20, limit_train=100)
    single, par, _ = run_both(client, cfg, x[:100], y[:100], xt[:40], yt[:40], tmp_path)
    assert np.max(np.abs(params(single["network"]) - params(par["network"]))) <= WEIGHT_BOUND
    assert single["history"][0]["test_accuracy"] == par["history"][0]["test_accuracy"]


def test_distributed_evaluate_equals_evaluate(client):
    from eventsnn.train import encode_images, init_gains

    x, y = digits(450, seed=3)
    cfg = TrainConfig(arch="784-25")
    net = build_network(cfg, 10, (28, 28))
    init_gains(net, encode_images(x[:50], cfg), cfg.avg_spike_init)
    want = evaluate(net, x, y, cfg)
    got = dist.evaluate(client, net, x, y, cfg)
    assert got["n"] == want["n"] == 450
    assert got["accuracy"] == want["accuracy"]
    assert got["silent_outputs"] == want["silent_outputs"]
    assert got["spikes_per_inference"] == want["spikes_per_inference"]
    assert got["time_to_decision"] == pytest.approx(want["time_to_decision"], rel=1e-13)
    assert got["confusion"] == want["confusion"] and got["tied_outputs"] == want["tied_outputs"]
    assert got["error_margins"] == want["error_margins"] and got["tied_correct"] == want["tied_correct"]
    assert np.array(got["confusion"]).sum() == 450


# ----------------------------------------------------------------------------------
# tasks with retries, sweeps
# ----------------------------------------------------------------------------------
def flaky(marker_dir, name, failures):
    """Raise on the first ``failures`` calls for ``name`` (counted with files), then return name."""
    calls = len([p for p in os.listdir(marker_dir) if p.startswith(name + ".")])
    open(os.path.join(marker_dir, f"{name}.{calls}"), "w").close()
    if calls < failures:
        raise RuntimeError(f"planned failure {calls + 1} of {name}")
    return name


def test_map_with_retries_counts_attempts_and_keeps_failures(client, tmp_path):
    items = [("a", (str(tmp_path), "a", 0)), ("b", (str(tmp_path), "b", 2)), ("c", (str(tmp_path), "c", 9))]
    done = []
    out = dist.map_with_retries(client, flaky, items, retries=2, on_done=done.append)
    assert [o.name for o in out] == ["a", "b", "c"] and len(done) == 3
    a, b, c = out
    assert a.ok and a.result == "a" and a.attempts == 1 and a.errors == []
    assert b.ok and b.result == "b" and b.attempts == 3 and len(b.errors) == 2
    assert "planned failure 1 of b" in b.errors[0]
    assert not c.ok and c.attempts == 3 and len(c.errors) == 3 and c.result is None


def tiny_data(n=24, nt=12):
    x, y = digits(n, seed=4)
    xt, yt = digits(nt, seed=5)
    return TrainingData(x, y, xt, yt, "tiny", 10)


def test_sweep_of_four_configurations(client, tmp_path):
    base = TrainConfig(arch="784-12", epochs=1, batch_size=8)
    runs = expand_grid(base, {"grad_kernel": ["exp", "depsilon"]}, seeds=[1, 2])
    results = run_sweep(runs, tmp_path, tiny_data(), client=client, progress=False, log=lambda *_: None)
    assert [r.name for r in results] == [r.name for r in runs] and len(results) == 4
    assert all(r.status == "ok" and r.attempts == 1 and r.epochs == 1 for r in results)
    for run, res in zip(runs, results):
        ck = load_checkpoint(tmp_path / run.name)  # gathered on the client
        assert ck.config == run.config and ck.epoch == 1
        assert res.final_test_accuracy == ck.history[-1]["test_accuracy"]
    # the same run in this process gives the same result (the task is the library's training)
    local = run_sweep(runs[:1], tmp_path / "local", tiny_data(), progress=False, log=lambda *_: None)
    assert local[0].history[0]["train_loss"] == pytest.approx(results[0].history[0]["train_loss"], rel=1e-12)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == [r.name for r in runs]


def install_killer(marker, victim_seed):
    """On a worker: the first training of seed ``victim_seed`` kills the worker process."""
    import eventsnn.train as train_mod

    real = train_mod.train

    def killing_train(config, *args, **kwargs):
        if config.seed == victim_seed and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return real(config, *args, **kwargs)

    killing_train.real = real
    train_mod.train = killing_train


def remove_killer():
    import eventsnn.train as train_mod

    train_mod.train = getattr(train_mod.train, "real", train_mod.train)


def test_killed_worker_is_retried(client, tmp_path):
    marker = str(tmp_path / "killed")
    client.run(install_killer, marker, 7)
    base = TrainConfig(arch="784-12", epochs=1, batch_size=8)
    runs = expand_grid(base, {"lr": [1e-3]}, seeds=[6, 7])
    try:
        results = run_sweep(runs, tmp_path / "out", tiny_data(), client=client, progress=False,
                            log=lambda *_: None)
    finally:
        client.run(remove_killer)
    assert os.path.exists(marker)
    by_seed = {r.overrides["seed"]: r for r in results}
    assert all(r.status == "ok" for r in results) and len(results) == 2
    assert by_seed[7].attempts >= 2 and by_seed[7].retried
    assert len(by_seed[7].errors) == by_seed[7].attempts - 1  # every failed attempt has its error
    assert by_seed[6].attempts == 1
    assert (tmp_path / "out" / runs[1].name / "checkpoint.h5").is_file()
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "(retried)" in table and "1 retried" in table


# ----------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------
N_TRAIN, N_TEST = 30, 16


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory, fake_mnist_cache):
    with fake_mnist_dir(tmp_path_factory, fake_mnist_cache, N_TRAIN, N_TEST, seed=6) as data_dir:
        yield data_dir


def test_cli_train_on_workers_equals_one_process(fake_mnist, tmp_path):
    common = ["train", "mnist", "--arch", "784-16", "--epochs", "1", "--batch-size", "10",
              "--data-dir", fake_mnist, "--quiet"]
    one = invoke(*common, "--out", tmp_path / "one")
    assert one.exit_code == 0, (one.output, one.exception)
    two = invoke(*common, "--out", tmp_path / "two", "--workers", "2")
    assert two.exit_code == 0, (two.output, two.exception)
    assert "dask: " in two.stderr and "2 workers" in two.stderr
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert np.max(np.abs(params(a.network) - params(b.network))) <= WEIGHT_BOUND
    assert a.history[0]["test_accuracy"] == b.history[0]["test_accuracy"]


def test_cli_evaluate_on_a_running_scheduler(client, fake_mnist, tmp_path):
    run = tmp_path / "run"
    r = invoke("train", "mnist", "--arch", "784-16", "--epochs", "1", "--data-dir", fake_mnist, "--quiet",
               "--out", run)
    assert r.exit_code == 0, (r.output, r.exception)
    here = invoke("evaluate", run, "--data-dir", fake_mnist, "--json")
    there = invoke("evaluate", run, "--data-dir", fake_mnist, "--json", "--scheduler", client.scheduler.address)
    assert here.exit_code == 0 and there.exit_code == 0, (there.output, there.exception)
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    assert a["accuracy"] == b["accuracy"] and a["n"] == b["n"] == N_TEST
    assert a["spikes_per_inference"] == b["spikes_per_inference"]


def test_cli_unreachable_scheduler_is_one_line(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", "1s")
    r = invoke("train", "mnist", "--arch", "784-16", "--epochs", "1", "--data-dir", fake_mnist, "--quiet",
               "--out", tmp_path / "x", "--scheduler", "tcp://127.0.0.1:9")
    assert r.exit_code == 2, (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
