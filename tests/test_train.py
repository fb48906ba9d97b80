"""Training loop, checkpoints and resume on a tiny synthetic dataset.

40 random 6x6 "images" in [0, 1] with 3 classes, architecture 36-20, batches
of 10: a whole run takes a fraction of a second, so the tests can train,
interrupt, resume and compare bit for bit.
"""

from __future__ import annotations

import json
import math
import warnings

import h5py
import numpy as np
import pytest

from eventsnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.network import Network
from eventsnn.train import SilentLayerWarning, encode_images, init_gains, train
from toy_run import assert_same_params, toy_config, toy_data, toy_run

HISTORY_KEYS = {"epoch", "lr", "train_loss", "train_accuracy", "test_accuracy", "time_to_decision",
                "epoch_seconds", "spikes_per_neuron", "silent_neurons", "windows_dropped",
                "windows_clamped"}


@pytest.fixture(scope="module")
def data():
    return toy_data()


config = toy_config
run = toy_run


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or "tmp" in p.name)


def my_readout(out, n_classes):
    """Largest count, ties by the earlier first spike, then the lower index (plain loop)."""
    preds = []
    for s in range(out.n_samples):
        o = out.sample(s)
        best = None
        for i in range(n_classes):
            ts = o.times[o.neurons == i]
            key = (-ts.size, ts.min() if ts.size else math.inf, i)
            best = key if best is None or key < best else best
        preds.append(best[2])
    return np.array(preds)


def without_times(history):
    """A metrics history without its wall-clock entries (``epoch_seconds``)."""
    return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]


def stopped_at_step(k, cfg, out, data, monkeypatch):
    """Train ``cfg`` into ``out`` and stop it (KeyboardInterrupt) at its k-th training step."""
    import eventsnn.train as train_mod

    real_step, calls = train_mod.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, data)
    monkeypatch.setattr(train_mod, "train_step", real_step)


# ----------------------------------------------------------------------------------
# a full run
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("full")
    res, lines = run(config(), out, data)
    return out, res, lines


def test_run_writes_checkpoint_and_metrics(full_run, data):
    out, res, lines = full_run
    assert (out / "checkpoint.h5").is_file() and (out / "metrics.json").is_file()
    assert leftovers(out) == []  # atomic writes leave no temporary file
    hist = res["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    for h in hist:
        assert set(h) == HISTORY_KEYS
        assert 0.0 <= h["train_accuracy"] <= 1.0 and 0.0 <= h["test_accuracy"] <= 1.0
        assert h["train_accuracy"] * 40 == pytest.approx(round(h["train_accuracy"] * 40))
        assert h["train_loss"] >= 0 and h["epoch_seconds"] >= 0
        assert len(h["spikes_per_neuron"]) == 2 and len(h["silent_neurons"]) == 2
        assert 0.0 <= h["windows_dropped"] <= 1.0 and 0.0 <= h["windows_clamped"] <= 1.0
    # cosine annealing over 2 epochs: lr, then lr (1 + cos(pi/2))/2
    assert hist[0]["lr"] == pytest.approx(5e-4, rel=1e-15)
    assert hist[1]["lr"] == pytest.approx(2.5e-4, rel=1e-12)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"] == hist
    assert metrics["config"] == json.loads(config().to_json())
    assert len([ln for ln in lines if ln.startswith("epoch ")]) == 2


def test_test_accuracy_is_recomputable(full_run, data):
    _, res, _ = full_run
    _, (xt, yt) = data
    net = res["network"]
    result = net.forward(encode_images(xt, config()))
    pred = my_readout(result.spikes[-1], 3)
    assert res["history"][-1]["test_accuracy"] == pytest.approx(np.mean(pred == yt), abs=1e-15)


def test_checkpoint_holds_the_final_state(full_run):
    out, res, _ = full_run
    ck = load_checkpoint(out / "checkpoint.h5")
    assert ck.epoch == 2
    assert ck.config == config()
    assert ck.history == res["history"]
    assert ck.dataset_checksum == "toy-v1"
    assert ck.optim_state is not None and ck.optim_state["t"] == 8  # 2 epochs x 4 batches
    for (name, a), (name2, b) in zip(ck.network.parameters(), res["network"].parameters()):
        assert name == name2
        np.testing.assert_array_equal(a, b)
    # a run directory is accepted as well
    assert load_checkpoint(out).epoch == 2


# ----------------------------------------------------------------------------------
# resume
# ----------------------------------------------------------------------------------
def test_resume_is_bit_identical(tmp_path, full_run, data):
    _, full, _ = full_run
    out = tmp_path / "run"
    out.mkdir()
    first, _ = run(config(epochs=1), out, data)
    assert len(first["history"]) == 1
    second, lines = run(config(epochs=2), out, data, resume=True)
    assert any("resuming" in ln for ln in lines)
    assert not any(ln.startswith("initial gains") for ln in lines)  # no re-initialisation
    assert_same_params(full["network"], second["network"])
    assert without_times(second["history"]) == without_times(full["history"])
    ck = load_checkpoint(out)
    assert ck.epoch == 2 and ck.config.epochs == 2
    full_ck = load_checkpoint(full_run[0])
    for x, y in zip(ck.optim_state["m"] + ck.optim_state["v"],
                    full_ck.optim_state["m"] + full_ck.optim_state["v"]):
        assert x.tobytes() == y.tobytes()
    assert leftovers(out) == []


@pytest.mark.parametrize("change", [dict(lr=1e-3), dict(batch_size=20), dict(seed=4),
                                    dict(arch="36-21"), dict(grad_kernel="depsilon")])
def test_resume_with_other_configuration_is_refused(tmp_path, full_run, data, change):
    out = tmp_path / "run"
    out.mkdir()
    src = full_run[0] / "checkpoint.h5"
    (out / "checkpoint.h5").write_bytes(src.read_bytes())
    before = (out / "checkpoint.h5").read_bytes()
    with pytest.raises(ValueError) as exc:
        run(config(epochs=3, **change), out, data, resume=True)
    assert next(iter(change)) in str(exc.value)
    assert (out / "checkpoint.h5").read_bytes() == before


def test_interrupted_run_resumes_exactly(tmp_path, data, monkeypatch):
    """Ctrl-C in the middle of epoch 2 of 3, then resume: same result as without the interruption."""
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref, _ = run(config(epochs=3), ref_dir, data)
    out = tmp_path / "run"
    out.mkdir()
    stopped_at_step(6, config(epochs=3), out, data, monkeypatch)  # epoch 2, second batch
    assert load_checkpoint(out).epoch == 1
    assert leftovers(out) == []
    resumed, _ = run(config(epochs=3), out, data, resume=True)
    assert_same_params(ref["network"], resumed["network"])
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in ref["history"]]


def test_resume_with_other_data_is_refused(tmp_path, full_run, data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.h5").write_bytes((full_run[0] / "checkpoint.h5").read_bytes())
    with pytest.raises(ValueError, match="checksum"):
        run(config(epochs=3), out, data, resume=True, checksum="other-data")


def test_resume_without_checkpoint(tmp_path, data):
    with pytest.raises(CheckpointError):
        run(config(), tmp_path, data, resume=True)


# ----------------------------------------------------------------------------------
# gain initialisation
# ----------------------------------------------------------------------------------
def late_rate(spikes, t_end):
    """Spikes after 2/3 of the window per (sample, neuron), counted by hand."""
    n = 0
    for t in spikes.times:
        if t > 2.0 * t_end / 3.0:
            n += 1
    return n / (spikes.n_samples * spikes.n_neurons)


@pytest.mark.parametrize("weight_norm", [True, False])
@pytest.mark.parametrize("avg", [0.5, 1.0])
def test_init_gains_reaches_target_rate(data, weight_norm, avg):
    (x, _), _ = data
    cfg = config(weight_norm=weight_norm)
    net = Network.from_arch("36-20", n_classes=3, weight_norm=weight_norm, seed=3, t_end=cfg.t_end)
    w0 = [layer.weight.copy() for layer in net.layers]
    inputs = encode_images(x, cfg)
    gains = init_gains(net, inputs, avg)
    assert len(gains) == 2 and all(0.05 <= g <= 500 for g in gains)
    result = net.forward(inputs)
    for l, (layer, g) in enumerate(zip(net.layers, gains)):
        if weight_norm:
            np.testing.assert_array_equal(layer.gain, g)
            np.testing.assert_array_equal(layer.weight, w0[l])
        else:
            np.testing.assert_allclose(layer.weight, w0[l] * g, rtol=1e-15)
        rate = late_rate(result.spikes[l], cfg.t_end)
        assert rate == pytest.approx(avg / 3.0, rel=0.15), f"layer {l}: late rate {rate}, target {avg / 3}"


# ----------------------------------------------------------------------------------
# checkpoint files
# ----------------------------------------------------------------------------------
def test_load_checkpoint_rejects_bad_files(tmp_path, full_run):
    good = full_run[0] / "checkpoint.h5"
    blob = good.read_bytes()
    cases = {
        "truncated.h5": blob[: len(blob) // 2],
        "garbage.h5": np.random.default_rng(0).bytes(5000),
        "empty.h5": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(CheckpointError):
        load_checkpoint(foreign)
    # the right format, but arrays of another architecture
    other = tmp_path / "other.h5"
    other.write_bytes(blob)
    with h5py.File(other, "r+") as f:
        cfg = json.loads(f.attrs["config"])
        cfg["arch"] = "36-25"
        f.attrs["config"] = json.dumps(cfg)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(other)
    # a missing entry
    broken = tmp_path / "broken.h5"
    broken.write_bytes(blob)
    with h5py.File(broken, "r+") as f:
        del f.attrs["history"]
    with pytest.raises(CheckpointError):
        load_checkpoint(broken)


def test_failed_checkpoint_write_keeps_old_file(tmp_path, full_run):
    ck_path = tmp_path / "checkpoint.h5"
    ck_path.write_bytes((full_run[0] / "checkpoint.h5").read_bytes())
    before = ck_path.read_bytes()
    ck = load_checkpoint(ck_path)
    bad_state = {"t": 1, "m": [object()], "v": []}  # fails half way through the write
    with pytest.raises(TypeError):
        save_checkpoint(ck_path, config=ck.config, network=ck.network, epoch=3, history=ck.history,
                        optim_state=bad_state, dataset_checksum="x", rng_state=None)
    assert ck_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.h5"]


def test_silent_layer_warns(tmp_path, data):
    (x, y), (xt, yt) = data
    cfg = config(epochs=1, threshold=1e9)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        train(cfg, tmp_path, train_data=(x[:20], y[:20]), test_data=(xt[:5], yt[:5]), dataset_checksum="c",
              n_classes=3, progress=False, log=lambda s: None)
    assert any(issubclass(w.category, SilentLayerWarning) for w in rec)


def test_evaluate_metrics(full_run, data):
    from eventsnn.train import evaluate

    _, res, _ = full_run
    _, (xt, yt) = data
    net = res["network"]
    cfg = config()
    got = evaluate(net, xt, yt, cfg, batch_size=5)  # 3 batches, the last one short
    result = net.forward(encode_images(xt, cfg))
    out = result.spikes[-1]
    pred = my_readout(out, 3)
    assert got["n"] == len(yt)
    assert got["accuracy"] == pytest.approx(np.mean(pred == yt), abs=1e-15)
    firsts = []
    for s in range(len(yt)):
        o = out.sample(s)
        ts = o.times[o.neurons == pred[s]]
        if ts.size:
            firsts.append(ts.min())
    if firsts:
        assert got["time_to_decision"] == pytest.approx(np.mean(firsts), rel=1e-12)
    else:
        assert got["time_to_decision"] is None
    np.testing.assert_allclose(got["spikes_per_inference"], [s.n_events / len(yt) for s in result.spikes],
                               rtol=1e-12)
    silent = sum(out.sample(s).n_events == 0 for s in range(len(yt)))
    assert got["silent_outputs"] == pytest.approx(silent / len(yt), abs=1e-15)
    # confusion matrix and ties, counted by hand from the output spikes
    want = np.zeros((3, 3), dtype=int)
    tied = 0
    for s in range(len(yt)):
        want[yt[s], pred[s]] += 1
        c = np.bincount(out.sample(s).neurons, minlength=3)
        tied += int(np.sum(c == c.max()) > 1)
    assert np.array_equal(np.array(got["confusion"]), want)
    assert got["tied_outputs"] == pytest.approx(tied / len(yt), abs=1e-15)
    margins = [0] * 6
    tied_right = 0
    for s in range(len(yt)):
        c = np.bincount(out.sample(s).neurons, minlength=3)
        tied_right += int(np.sum(c == c.max()) > 1 and pred[s] == yt[s])
        if pred[s] != yt[s]:
            margins[min(max(c[pred[s]] - c[yt[s]], 0), 5)] += 1
    assert got["error_margins"] == margins and sum(margins) == round(len(yt) * (1 - got["accuracy"]))
    assert got["tied_correct"] == (pytest.approx(tied_right / tied, abs=1e-15) if tied else None)
    # predict: the same decisions, sample by sample
    from eventsnn.train import predict

    p = predict(net, xt, cfg, batch_size=4)
    assert np.array_equal(p.predicted, pred)
    assert np.array_equal(p.counts, out.counts())
    assert np.array_equal(p.first_times, out.first_times())
    empty = predict(net, xt[:0], cfg)
    assert empty.predicted.shape == (0,) and empty.counts.shape == (0, 3) and empty.first_times.shape == (0, 3)


@pytest.mark.parametrize("options", [
    dict(encoder="latency"),
    dict(supervision="none", grad_kernel="depsilon"),
    dict(weight_norm=False, max_dt_du=None, input_grad_scale=1.0, drop_nonpositive=False),
])
def test_other_configurations_train(tmp_path, data, options):
    res, _ = run(config(epochs=1, **options), tmp_path, data)
    h = res["history"][0]
    assert math.isfinite(h["train_loss"]) and h["train_loss"] >= 0
    ck = load_checkpoint(tmp_path)
    assert ck.config == config(epochs=1, **options)
    names = [n for n, _ in ck.network.parameters()]
    assert len(names) == (2 if options.get("weight_norm") is False else 6)


# validation hold-out and best.h5

def test_split_validation_holds_out_the_last_samples(data):
    from eventsnn.train import split_validation

    (x, y), _ = data
    (xa, ya), (xv, yv) = split_validation((x, y), 15)
    np.testing.assert_array_equal(xa, x[:25])
    np.testing.assert_array_equal(xv, x[25:])
    np.testing.assert_array_equal(np.concatenate([ya, yv]), y)
    assert split_validation((x, y), 0) == ((x, y), None)
    for bad in (40, 41):
        with pytest.raises(ValueError, match="fewer than the 40 training samples"):
            split_validation((x, y), bad)
    with pytest.raises(ValueError, match="validation must be >= 0"):
        config(validation=-1)


def test_best_epoch_prefers_the_earliest_of_ties():
    from eventsnn.train import best_epoch

    hist = [{"epoch": 1, "validation_accuracy": 0.5}, {"epoch": 2, "validation_accuracy": 0.7},
            {"epoch": 3, "validation_accuracy": 0.7}, {"epoch": 4, "validation_accuracy": 0.6}]
    assert best_epoch(hist)["epoch"] == 2
    assert best_epoch([{"epoch": 1, "test_accuracy": 0.9}]) is None


def separable(seed, n):
    """3 classes of 6x6 images that differ in which two rows are brighter (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.uniform(0.0, 0.6, (n, 6, 6))
    for i in range(n):
        x[i, 2 * y[i]:2 * y[i] + 2] += rng.uniform(0.0, 0.5)
    return np.clip(x, 0.0, 1.0), y


@pytest.fixture(scope="module")
def learnable():
    return separable(1, 60), separable(2, 20)


def validation_config(**kw):
    return config(epochs=5, validation=20, lr=2e-3, **kw)


def test_validation_run_keeps_the_best_epoch(tmp_path, learnable, seen_batches):
    """Held-out images are never trained on; best.h5 holds the network of the best validation epoch,
    whose accuracies an independent evaluation reproduces (on this data it is not the last epoch)."""
    from eventsnn.train import evaluate

    (x, y), test = learnable
    seen = seen_batches
    cfg = validation_config()
    res, lines = run(cfg, tmp_path, learnable)
    trained = np.concatenate(seen).reshape(-1, 36)
    assert len(trained) == 5 * 40
    held = x[-20:].reshape(20, -1)
    assert not any((trained == h).all(axis=1).any() for h in held)  # never a held-out image
    hist = res["history"]
    accs = [h["validation_accuracy"] for h in hist]
    want = hist[int(np.argmax(accs))]  # argmax: the first of ties
    assert want["epoch"] < len(hist) and want["test_accuracy"] != hist[-1]["test_accuracy"]
    assert res["best"]["epoch"] == want["epoch"]
    best = load_checkpoint(tmp_path / "best.h5")
    assert best.epoch == want["epoch"]
    assert evaluate(best.network, x[-20:], y[-20:], cfg)["accuracy"] == want["validation_accuracy"]
    assert evaluate(best.network, *test, cfg)["accuracy"] == want["test_accuracy"]
    assert any(line.startswith("best validation accuracy") for line in lines)
    assert "val acc" in next(line for line in lines if line.startswith("epoch 1/"))


def test_validation_run_resumes_exactly(tmp_path, learnable, monkeypatch):
    """Stopped in epoch 2 of 5, then resumed: the same history and the same best.h5."""
    ref, _ = run(validation_config(), tmp_path / "a", learnable)
    out = tmp_path / "b"
    stopped_at_step(6, validation_config(), out, learnable, monkeypatch)  # 4 batches/epoch: epoch 2
    assert load_checkpoint(out / "best.h5").epoch == 1
    resumed, _ = run(validation_config(), out, learnable, resume=True)
    assert without_times(ref["history"]) == without_times(resumed["history"])
    a, b = load_checkpoint(tmp_path / "a" / "best.h5"), load_checkpoint(out / "best.h5")
    assert a.epoch == b.epoch == ref["best"]["epoch"] > 1
    assert_same_params(a.network, b.network)


# per-epoch checkpoints (keep_epochs)

def test_keep_epochs_holds_the_network_after_every_epoch(tmp_path, data, monkeypatch):
    """epoch-00k.h5 is the run after epoch k: it equals checkpoint.h5 of another run stopped in
    epoch k + 1, and the last one equals checkpoint.h5. keep_epochs may be switched on when resuming
    (it changes no step), and the resumed run keeps the epochs it runs."""
    from eventsnn.train import epoch_checkpoint_name

    cfg = config(epochs=3, keep_epochs=True)
    run(cfg, tmp_path / "a", data)
    a = tmp_path / "a"
    assert sorted(p.name for p in a.glob("epoch-*.h5")) == ["epoch-001.h5", "epoch-002.h5", "epoch-003.h5"]
    assert [epoch_checkpoint_name(k) for k in (1, 12, 123)] == ["epoch-001.h5", "epoch-012.h5", "epoch-123.h5"]
    assert leftovers(a) == []

    b = tmp_path / "b"
    stopped_at_step(6, config(epochs=3), b, data, monkeypatch)  # without keep_epochs; in epoch 2
    assert list(b.glob("epoch-*.h5")) == []
    first = load_checkpoint(a / "epoch-001.h5")
    stopped = load_checkpoint(b / "checkpoint.h5")
    assert first.epoch == stopped.epoch == 1
    assert_same_params(first.network, stopped.network)
    assert without_times(first.history) == without_times(stopped.history)

    run(cfg, b, data, resume=True)  # switched on at resume: epochs 2 and 3 are kept
    assert sorted(p.name for p in b.glob("epoch-*.h5")) == ["epoch-002.h5", "epoch-003.h5"]
    for k in (2, 3):
        ka, kb = load_checkpoint(a / epoch_checkpoint_name(k)), load_checkpoint(b / epoch_checkpoint_name(k))
        assert ka.epoch == kb.epoch == k
        assert_same_params(ka.network, kb.network)
    last, final = load_checkpoint(a / "epoch-003.h5"), load_checkpoint(a / "checkpoint.h5")
    assert_same_params(last.network, final.network)
    assert last.optim_state is not None


def test_resume_refuses_other_changes_than_epochs_and_keep_epochs(tmp_path, data):
    run(config(epochs=1), tmp_path, data)
    with pytest.raises(ValueError, match=r"differs from the checkpoint in \['lr'\]"):
        run(config(epochs=2, lr=1e-2, keep_epochs=True), tmp_path, data, resume=True)
