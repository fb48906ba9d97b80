"""The ``eventsnn`` command line, in-process with click's CliRunner.

A tiny MNIST cache (60 train / 20 test images) is written in the IDX format;
the loader checks every cache file against pinned sha256 values and shapes, so
the pins (``eventsnn.datasets.mnist.FILES``) are patched to the small files,
as the dataset tests do. The network is blocked.
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from eventsnn.cli.main import main

from eventsnn.checkpoint import load_checkpoint
from eventsnn.train import encode_images
from toy_run import assert_same_params

N_TRAIN, N_TEST = 60, 20



@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory, fake_mnist_cache):
    """Data dir with a small valid MNIST cache; FILES patched for the module's tests."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": (rng.random((N_TRAIN, 28, 28)) < 0.2) * rng.integers(0, 256, (N_TRAIN, 28, 28)),
        "train_labels": np.arange(N_TRAIN) % 10,
        "test_images": (rng.random((N_TEST, 28, 28)) < 0.2) * rng.integers(0, 256, (N_TEST, 28, 28)),
        "test_labels": (np.arange(N_TEST) * 3) % 10,  # 0 3 6 9 2 5 8 1 4 7 ...
    }
    arrays = {k: v.astype(np.uint8) for k, v in arrays.items()}
    data_dir = tmp_path_factory.mktemp("data")
    with fake_mnist_cache(arrays, data_dir):
        yield {"dir": data_dir, "arrays": arrays}


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def train_args(fake, out, *extra):
    return ["train", "mnist", "--arch", "784-30", "--epochs", "1", "--limit-train", "40", "--limit-test", "20",
            "--data-dir", fake["dir"], "--out", out, "--quiet", *extra]


def assert_user_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    assert lines[0].startswith("Error:")
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def trained(fake_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mnist-run"
    result = invoke(*train_args(fake_mnist, out))
    assert result.exit_code == 0, (result.output, result.exception)
    return out, result


# ----------------------------------------------------------------------------------
# the happy path
# ----------------------------------------------------------------------------------
def test_train_writes_run(trained):
    out, result = trained
    assert (out / "checkpoint.h5").is_file() and (out / "metrics.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.h5", "metrics.json"]
    ck = load_checkpoint(out / "checkpoint.h5")
    assert ck.epoch == 1 and ck.config.arch == "784-30" and ck.config.limit_train == 40
    assert [l.weight.shape for l in ck.network.layers] == [(30, 784), (10, 30)]
    assert "Traceback" not in result.output
    assert "epoch 1/1" in result.stdout


def my_accuracy(ck, images, labels):
    out = ck.network.forward(encode_images(images, ck.config)).spikes[-1]
    counts = out.counts()
    first = out.first_times()
    correct = 0
    for s in range(len(labels)):
        key = [(-counts[s, i], first[s, i], i) for i in range(counts.shape[1])]
        correct += min(key)[2] == labels[s]
    return correct / len(labels)


def test_evaluate_json(trained, fake_mnist):
    out, _ = trained
    result = invoke("evaluate", out / "checkpoint.h5", "--json", "--data-dir", fake_mnist["dir"])
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert isinstance(res, dict)
    assert res["n"] == N_TEST
    assert 0.0 <= res["accuracy"] <= 1.0
    a = fake_mnist["arrays"]
    want = my_accuracy(load_checkpoint(out), a["test_images"].astype(np.float32) / np.float32(255),
                       a["test_labels"])
    assert res["accuracy"] == pytest.approx(want, abs=1e-15)
    assert res["epoch"] == 1 and res["arch"] == "784-30" and res["dataset"] == "mnist"
    # a run directory and --limit-test
    result = invoke("evaluate", out, "--json", "--limit-test", 7, "--data-dir", fake_mnist["dir"])
    assert result.exit_code == 0, (result.output, result.exception)
    res = json.loads(result.stdout)
    assert res["n"] == 7 and math.isclose(res["accuracy"] * 7, round(res["accuracy"] * 7))


def test_evaluate_text_and_plot_errors(trained, fake_mnist, tmp_path):
    out, _ = trained
    ck = load_checkpoint(out)
    a = fake_mnist["arrays"]
    x = a["test_images"].astype(np.float32) / np.float32(255)
    o = ck.network.forward(encode_images(x, ck.config)).spikes[-1]
    counts, first = o.counts(), o.first_times()
    pred = [min((-counts[s, i], first[s, i], i) for i in range(10))[2] for s in range(N_TEST)]
    pairs = {}
    for t, p in zip(a["test_labels"], pred):
        if t != p:
            pairs[(int(t), p)] = pairs.get((int(t), p), 0) + 1
    tied = sum(int(np.sum(c == c.max()) > 1) for c in counts)
    result = invoke("evaluate", out, "--data-dir", fake_mnist["dir"], "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"decided by the first spike): {100 * tied / N_TEST:.2f} %" in result.stdout
    margins = [0] * 6
    for s, (t, p) in enumerate(zip(a["test_labels"], pred)):
        if t != p:
            margins[min(max(counts[s, p] - counts[s, t], 0), 5)] += 1
    if pairs:
        assert ("errors by spike margin (predicted minus true class): "
                + ", ".join(f"{k}{'+' if k == 5 else ''}: {v}" for k, v in enumerate(margins))) in result.stdout
    top = max(pairs.values(), default=0)
    if pairs:
        assert "most frequent errors (true -> predicted): " in result.stdout
        i, j = min(k for k, v in pairs.items() if v == top)
        assert f"{i} -> {j} ({top})" in result.stdout.split("most frequent errors")[1].split(",")[0]
    png = tmp_path / "figs" / "errors.png"
    result = invoke("plot", "errors", out, "--data-dir", fake_mnist["dir"], "--out", png, "--quiet",
                    "--images", 3)
    assert result.exit_code == 0, (result.output, result.exception)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{sum(pairs.values())} errors of {N_TEST} test images" in result.stdout
    for bad in (["--images", 0], ["--limit-test", 0]):
        assert_user_error(invoke("plot", "errors", out, "--data-dir", fake_mnist["dir"], "--out", png, *bad))
    assert_user_error(invoke("plot", "errors", tmp_path / "missing", "--out", png))


def test_resume_with_more_epochs(trained, fake_mnist, tmp_path):
    src, _ = trained
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.h5").write_bytes((src / "checkpoint.h5").read_bytes())
    result = invoke("train", "mnist", "--resume", run, "--epochs", 2, "--data-dir", fake_mnist["dir"], "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    ck = load_checkpoint(run)
    assert ck.epoch == 2 and ck.config.epochs == 2 and len(ck.history) == 2
    assert not ck.config.keep_epochs and list(run.glob("epoch-*.h5")) == []
    # --keep-epochs may be switched on when resuming: epoch 3 is kept, and it is the final network;
    # the dataset may be left out (the run's own is used)
    result = invoke("train", "--resume", run, "--epochs", 3, "--keep-epochs", "--data-dir",
                    fake_mnist["dir"], "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in run.glob("epoch-*.h5")) == ["epoch-003.h5"]
    kept, ck = load_checkpoint(run / "epoch-003.h5"), load_checkpoint(run)
    assert kept.epoch == ck.epoch == 3 and ck.config.keep_epochs
    assert_same_params(kept.network, ck.network)


# ----------------------------------------------------------------------------------
# bad input: exit code 2, one line "Error: ..." on stderr, no traceback
# ----------------------------------------------------------------------------------
def test_unknown_dataset(fake_mnist, tmp_path):
    args = train_args(fake_mnist, tmp_path / "o")
    args[1] = "cifar99"
    assert_user_error(invoke(*args), "cifar99")


@pytest.mark.parametrize("arch,token", [("784-3O0", "3O0"), ("784--30", ""), ("784-30-abc", "abc")])
def test_malformed_arch(fake_mnist, tmp_path, arch, token):
    args = train_args(fake_mnist, tmp_path / "o")
    args[3] = arch
    assert_user_error(invoke(*args), f"'{token}'")
    assert not (tmp_path / "o" / "checkpoint.h5").exists()


@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--epochs", "x"), ("--tau-s", "5"),
                                          ("--grad-kernel", "gauss"), ("--elastic-sigma", "0"),
                                          ("--elastic-alpha", "-1"), ("--augment", "rotate")])
def test_bad_option_values(fake_mnist, tmp_path, option, value):
    args = train_args(fake_mnist, tmp_path / "o")
    i = args.index(option) if option in args else len(args)
    args[i:i + 2] = [option, value]
    assert_user_error(invoke(*args))


def test_evaluate_checkpoint_of_other_architecture(trained, fake_mnist, tmp_path):
    bad = tmp_path / "other.h5"
    bad.write_bytes((trained[0] / "checkpoint.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        cfg = json.loads(f.attrs["config"])
        cfg["arch"] = "784-31"
        f.attrs["config"] = json.dumps(cfg)
    assert_user_error(invoke("evaluate", bad, "--json", "--data-dir", fake_mnist["dir"]))


def test_evaluate_garbage_and_missing(fake_mnist, tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(np.random.default_rng(1).bytes(3000))
    assert_user_error(invoke("evaluate", garbage, "--data-dir", fake_mnist["dir"]))
    assert_user_error(invoke("evaluate", tmp_path / "missing.h5", "--data-dir", fake_mnist["dir"]))


def test_dataset_required_unless_resuming(trained, fake_mnist, tmp_path):
    assert_user_error(invoke("train", "--arch", "784-30", "--data-dir", fake_mnist["dir"], "--out", tmp_path / "o"),
                      "DATASET")
    assert not (tmp_path / "o").exists()
    # a dataset given with --resume must be the run's own
    assert_user_error(invoke("train", "fashion_mnist", "--resume", trained[0], "--data-dir", fake_mnist["dir"]),
                      "mnist run")


def test_unwritable_out(fake_mnist, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_user_error(invoke(*train_args(fake_mnist, blocker / "run")), "--out")


def test_resume_with_changed_option(trained, fake_mnist, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.h5").write_bytes((trained[0] / "checkpoint.h5").read_bytes())
    before = (run / "checkpoint.h5").read_bytes()
    result = invoke("train", "mnist", "--resume", run, "--lr", "0.1", "--data-dir", fake_mnist["dir"], "--quiet")
    assert_user_error(result, "--lr")
    result = invoke("train", "mnist", "--resume", run, "--arch", "784-31", "--data-dir", fake_mnist["dir"],
                    "--quiet")
    assert_user_error(result, "--arch")
    assert (run / "checkpoint.h5").read_bytes() == before


def test_interrupt_exits_130_with_resume_hint(fake_mnist, tmp_path, monkeypatch):
    import eventsnn.train as train_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train", interrupted)
    result = invoke(*train_args(fake_mnist, tmp_path / "o"))
    assert result.exit_code == 130
    assert "--resume" in result.stderr and "Traceback" not in result.output


def test_output_layer_has_one_neuron_per_dataset_class(fake_mnist, tmp_path):
    """MNIST has 10 classes; a run on a subset whose labels stop at 7 must still build
    10 output neurons (otherwise the checkpoint can never predict 8 or 9 on the full test set)."""
    labels = fake_mnist["arrays"]["train_labels"]
    assert labels[:8].max() == 7
    out = tmp_path / "o"
    args = train_args(fake_mnist, out)
    args[args.index("--limit-train") + 1] = "8"
    args[args.index("--limit-test") + 1] = "3"
    assert fake_mnist["arrays"]["test_labels"][:3].max() < 8
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    ck = load_checkpoint(out)
    assert ck.network.n_classes == 10
    assert ck.network.layers[-1].n_out == 10


def test_plot_augment(fake_mnist, tmp_path):
    out = tmp_path / "aug.png"
    result = invoke("plot", "augment", "mnist", "--augment", "elastic", "--images", "4", "--draws", "2",
                    "--data-dir", fake_mnist["dir"], "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_user_error(invoke("plot", "augment", "nmnist", "--augment", "shift", "--out", tmp_path / "x.png"),
                      "holds events")
    assert_user_error(invoke("plot", "augment", "mnist", "--augment", "elastic", "--elastic-sigma", "-1",
                             "--data-dir", fake_mnist["dir"], "--out", tmp_path / "y.png"), "elastic_sigma")


def test_train_with_validation_writes_best(fake_mnist, tmp_path):
    out = tmp_path / "v"
    result = invoke(*train_args(fake_mnist, out, "--validation", "10"))
    assert result.exit_code == 0, result.output
    assert "(30 train + 10 validation / 20 test images)" in result.output
    assert "val acc" in result.output and "best validation accuracy" in result.output
    ev = invoke("evaluate", out / "best.h5", "--data-dir", fake_mnist["dir"], "--limit-test", "20", "--json")
    assert ev.exit_code == 0, ev.output
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert json.loads(ev.output.strip().splitlines()[-1])["accuracy"] == hist[0]["test_accuracy"]
    assert_user_error(invoke(*train_args(fake_mnist, tmp_path / "w", "--validation", "40")),
                      "fewer than the 40 training samples")


# ----------------------------------------------------------------------------------
# --init-from: a new run from another run's weights
# ----------------------------------------------------------------------------------
def test_init_from_starts_a_new_run(trained, fake_mnist, tmp_path):
    import hashlib

    src, _ = trained
    out = tmp_path / "ft"
    result = invoke(*train_args(fake_mnist, out, "--init-from", src, "--lr", "1e-4"))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "weights from" in result.stdout and "initial gains" not in result.stdout
    ck = load_checkpoint(out)
    assert ck.epoch == 1 and ck.config.lr == 1e-4
    assert ck.config.init_from == str(src / "checkpoint.h5")
    assert ck.config.init_from_sha256 == hashlib.sha256((src / "checkpoint.h5").read_bytes()).hexdigest()
    # the run resumes like any other (its weights from its own checkpoint)
    result = invoke("train", "mnist", "--resume", out, "--epochs", 2, "--data-dir", fake_mnist["dir"], "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert load_checkpoint(out).epoch == 2


def test_init_from_bad_input(trained, fake_mnist, tmp_path):
    from eventsnn.checkpoint import save_checkpoint
    from eventsnn.config import TrainConfig

    src, _ = trained
    assert_user_error(invoke(*train_args(fake_mnist, tmp_path / "a", "--init-from", tmp_path / "nope.h5")),
                      "no such checkpoint")
    args = train_args(fake_mnist, tmp_path / "b", "--init-from", src)
    args[3] = "784-31"
    assert_user_error(invoke(*args), "weighted layer 0")
    assert_user_error(invoke("train", "mnist", "--resume", src, "--init-from", src,
                             "--data-dir", fake_mnist["dir"]), "--init-from")
    # the output directory of an existing run is never overwritten by a new one
    before = (src / "checkpoint.h5").read_bytes()
    assert_user_error(invoke(*train_args(fake_mnist, src, "--init-from", src)), "already holds a run")
    assert (src / "checkpoint.h5").read_bytes() == before
    ck = load_checkpoint(src)
    other = tmp_path / "fashion.h5"
    cfg = TrainConfig(**{**json.loads(ck.config.to_json()), "dataset": "fashion_mnist"})
    save_checkpoint(other, config=cfg, network=ck.network, epoch=ck.epoch, history=ck.history,
                    optim_state=ck.optim_state, dataset_checksum=ck.dataset_checksum, rng_state=ck.rng_state)
    assert_user_error(invoke(*train_args(fake_mnist, tmp_path / "c", "--init-from", other)), "fashion_mnist")
    for name in "abc":
        assert not (tmp_path / name / "checkpoint.h5").exists()


# ----------------------------------------------------------------------------------
# average: a uniform model soup of several checkpoints
# ----------------------------------------------------------------------------------
def test_average_and_evaluate(trained, fake_mnist, tmp_path):
    src, _ = trained
    ft = tmp_path / "ft"
    assert invoke(*train_args(fake_mnist, ft, "--init-from", src, "--lr", "1e-3")).exit_code == 0
    soup = tmp_path / "soup.h5"
    result = invoke("average", src, ft, "--out", soup)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "averaged over 2 checkpoints" in result.stdout
    a, b = load_checkpoint(src), load_checkpoint(ft)
    got = load_checkpoint(soup)
    for (name, x), (_, y), (_, z) in zip(got.network.parameters(), a.network.parameters(), b.network.parameters()):
        np.testing.assert_allclose(x, (y + z) / 2, rtol=1e-15, atol=1e-300, err_msg=name)
    result = invoke("evaluate", soup, "--json", "--data-dir", fake_mnist["dir"])
    assert result.exit_code == 0, (result.output, result.exception)
    res = json.loads(result.stdout)
    assert [s["path"] for s in res["averaged_from"]] == [str(src / "checkpoint.h5"), str(ft / "checkpoint.h5")]
    imgs = fake_mnist["arrays"]["test_images"].astype(np.float32) / np.float32(255)
    assert res["accuracy"] == pytest.approx(my_accuracy(got, imgs, fake_mnist["arrays"]["test_labels"]), abs=1e-15)
    result = invoke("evaluate", soup, "--data-dir", fake_mnist["dir"], "--quiet")
    assert "average of 2 checkpoints" in result.stdout
    # an averaged network is a start for a new run, not a run to resume
    run = tmp_path / "soup-run"
    run.mkdir()
    (run / "checkpoint.h5").write_bytes(soup.read_bytes())
    assert_user_error(invoke("train", "mnist", "--resume", run, "--data-dir", fake_mnist["dir"]), "--init-from")
    assert invoke(*train_args(fake_mnist, tmp_path / "ft2", "--init-from", soup)).exit_code == 0


def test_average_bad_input(trained, fake_mnist, tmp_path):
    src, _ = trained
    assert_user_error(invoke("average", src, "--out", tmp_path / "a.h5"), "at least two")
    assert_user_error(invoke("average", src, tmp_path / "nope", "--out", tmp_path / "b.h5"), "no such checkpoint")
    other = tmp_path / "other"
    assert invoke(*train_args(fake_mnist, other)[:3], "784-31", *train_args(fake_mnist, other)[4:]).exit_code == 0
    assert_user_error(invoke("average", src, other, "--out", tmp_path / "c.h5"), "arch")
    exists = tmp_path / "exists.h5"
    exists.write_bytes(b"keep me")
    assert_user_error(invoke("average", src, src, "--out", exists), "exists")
    assert exists.read_bytes() == b"keep me"
    assert not any((tmp_path / n).exists() for n in ("a.h5", "b.h5", "c.h5"))


def test_plot_cost(trained, tmp_path, monkeypatch):
    out, _ = trained
    png = tmp_path / "cost.png"
    result = invoke("plot", "cost", out, "--out", png, "--target-minutes", "15")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import eventsnn.plot as plot

    seen = {}
    monkeypatch.setattr(plot, "plot_training_cost", lambda hist, path, **kw: seen.update(kw, hist=hist) or path)
    assert invoke("plot", "cost", out / "metrics.json", "--out", png, "--target-minutes", "15").exit_code == 0
    assert seen["layer_names"] == ["dense 30", "output (dense 10)"]  # from the run's checkpoint
    assert seen["target_seconds"] == 900.0 and seen["title"] == "mnist-run: 784-30"
    assert [h["epoch"] for h in seen["hist"]] == [1]


def test_plot_cost_refuses_bad_runs(trained, tmp_path):
    assert_user_error(invoke("plot", "cost", tmp_path / "nothing", "--out", tmp_path / "x.png"),
                      "no such metrics file")
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    assert_user_error(invoke("plot", "cost", bad, "--out", tmp_path / "x.png"), "not an eventsnn metrics.json")
    bad.write_text(json.dumps({"history": [{"epoch": 1, "train_loss": 0.1}]}))
    assert_user_error(invoke("plot", "cost", bad, "--out", tmp_path / "x.png"), "no epoch with epoch_seconds")
    bad.write_text(json.dumps({"history": [{"epoch": 1, "epoch_seconds": 3.0, "spikes_per_neuron": [1.0, 2.0]},
                                           {"epoch": 2, "epoch_seconds": 3.0, "spikes_per_neuron": [1.0]}]}))
    assert_user_error(invoke("plot", "cost", bad, "--out", tmp_path / "x.png"), "different number of layers")
    assert_user_error(invoke("plot", "cost", trained[0], "--out", tmp_path / "x.png", "--target-minutes", "0"),
                      "target-minutes")


def test_plot_errors_image_kinds(tmp_path):
    """Grey images, RGB images (CIFAR-100's 100 classes) and event counts (two polarities)."""
    from eventsnn.plot import plot_errors

    rng = np.random.default_rng(2)
    cases = [(rng.random((12, 8, 8)), 10), (rng.random((12, 3, 8, 8)), 100),
             (rng.integers(0, 5, (12, 2, 6, 6)), 10)]
    for m, (images, k) in enumerate(cases):
        labels = rng.integers(0, k, 12)
        pred = labels.copy()
        pred[[1, 4, 7]] = (labels[[1, 4, 7]] + 1) % k
        counts = rng.integers(0, 4, (12, k))
        path = plot_errors(images, labels, pred, counts, tmp_path / f"e{m}.png", max_images=2)
        assert path.read_bytes()[:4] == b"\x89PNG"
    # nothing wrong: the matrix alone
    assert plot_errors(images, labels, labels, counts, tmp_path / "none.png").is_file()
    with pytest.raises(ValueError, match="12 labels need 12 images"):
        plot_errors(images[:5], labels, labels, counts, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="max_images"):
        plot_errors(images, labels, labels, counts, tmp_path / "bad.png", max_images=0)
