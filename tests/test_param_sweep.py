"""Sweeps without Dask: grid expansion, run names, the sequential runner with retries, summary and
ablation tables, and the ``sweep`` / ``ablation`` commands (plus the Dask options' errors).

(The dense layer sweep of the engine is tested in test_sweep.py.)
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from sweep_data import digits, fake_mnist_dir, invoke

from eventsnn import sweep
from eventsnn.config import TrainConfig
from eventsnn.sweep import (
    ABLATION_GRID,
    RunResult,
    TrainingData,
    aggregate,
    aggregate_table,
    expand_grid,
    parse_grid,
    run_sweep,
    summary_table,
)

QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture(scope="module")
def data():
    x, y = digits(20, 0)
    xt, yt = digits(10, 1)
    return TrainingData(x, y, xt, yt, "tiny", 10)


BASE = TrainConfig(arch="784-10", epochs=1, batch_size=10)


# ----------------------------------------------------------------------------------
# grid
# ----------------------------------------------------------------------------------
def test_expand_grid_is_the_cartesian_product_in_order():
    runs = expand_grid(BASE, {"grad_kernel": ["exp", "depsilon"], "lr": [1e-3, 5e-4, 1e-4]}, seeds=[1, 2])
    assert len(runs) == 2 * 3 * 2
    want = [(k, lr, s) for k in ("exp", "depsilon") for lr in (1e-3, 5e-4, 1e-4) for s in (1, 2)]
    assert [(r.config.grad_kernel, r.config.lr, r.config.seed) for r in runs] == want
    assert runs[0].name == "grad_kernel=exp,lr=0.001,seed=1"
    assert runs[0].overrides == {"grad_kernel": "exp", "lr": 0.001, "seed": 1}
    assert len({r.name for r in runs}) == len(runs)
    # fields outside the grid come from the base configuration
    assert all(r.config.arch == "784-10" and r.config.batch_size == 10 for r in runs)


def test_expand_grid_refusals():
    with pytest.raises(ValueError, match="unknown grid field 'learning_rate'"):
        expand_grid(BASE, {"learning_rate": [1e-3]})
    with pytest.raises(ValueError, match="cannot vary 'dataset'"):
        expand_grid(BASE, {"dataset": ["mnist", "cifar10"]})
    with pytest.raises(ValueError, match="no values"):
        expand_grid(BASE, {"lr": []})
    with pytest.raises(ValueError, match="either in the grid or as seeds"):
        expand_grid(BASE, {"seed": [1]}, seeds=[2])
    with pytest.raises(ValueError, match=r"run pool=bogus: pool must be one of"):
        expand_grid(BASE, {"pool": ["max", "bogus"]})
    with pytest.raises(ValueError, match="appears twice"):
        expand_grid(BASE, {"lr": [1e-3, 0.001]})


def test_parse_grid_converts_to_field_types():
    grid = parse_grid(["lr=1e-3,5e-4", "pool=max,adjusted-avg", "weight-norm=true,no",
                       "max_dt_du=4,none", "batch_size=10"])
    assert grid == {"lr": [1e-3, 5e-4], "pool": ["max", "adjusted-avg"], "weight_norm": [True, False],
                    "max_dt_du": [4.0, None], "batch_size": [10]}
    assert isinstance(grid["batch_size"][0], int)
    for bad, msg in [("lr", "not FIELD=VALUE"), ("lr=", "not FIELD=VALUE"), ("epochs=2.5", "not a valid int"),
                     ("weight_norm=maybe", "not a valid bool"), ("nope=1", "unknown grid field")]:
        with pytest.raises(ValueError, match=msg):
            parse_grid([bad])
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["lr=1", "lr=2"])


# ----------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------
def fake_result(name, overrides, accs, status="ok", attempts=1, errors=()):
    hist = [{"epoch": k + 1, "test_accuracy": a, "epoch_seconds": 1.5} for k, a in enumerate(accs)]
    return sweep._result(sweep.Run(name, overrides, BASE), status, attempts, list(errors), hist)


def test_summary_table_marks_retried_and_failed_runs():
    rs = [fake_result("pool=max", {"pool": "max"}, [0.5, 0.75]),
          fake_result("pool=avg", {"pool": "avg"}, [0.6], attempts=3, errors=["KilledWorker: x", "ValueError: y"]),
          fake_result("pool=adjusted-avg", {"pool": "adjusted-avg"}, [], status="failed", attempts=3,
                      errors=["E1", "E2", "E3"])]
    assert rs[0].final_test_accuracy == 0.75 and rs[0].best_test_accuracy == 0.75 and rs[0].train_seconds == 3.0
    lines = summary_table(rs).splitlines()
    assert lines[0].startswith("| run | pool | status | attempts |")
    assert "| pool=max | max | ok | 1 | 75.00 | 75.00 | 2 |" in lines[2]
    assert "| 3 (retried) |" in lines[3] and "KilledWorker: x; ValueError: y" in lines[3]
    assert "| failed | 3 (retried) | — | — | 0 |" in lines[4]
    assert "3 runs, 1 failed, 2 retried" in lines[-1]


def test_aggregate_over_seeds_by_hand():
    rs = [fake_result(f"k={k},s={s}", {"grad_kernel": k, "pool": "max", "seed": s}, [a])
          for k, s, a in [("exp", 1, 0.90), ("exp", 2, 0.80), ("exp", 3, 0.70), ("depsilon", 1, 0.5)]]
    rs.append(fake_result("fail", {"grad_kernel": "depsilon", "pool": "max", "seed": 2}, [], status="failed",
                          attempts=2))
    rows = aggregate(rs, ["grad_kernel", "pool"])
    assert [r["values"] for r in rows] == [{"grad_kernel": "exp", "pool": "max"},
                                           {"grad_kernel": "depsilon", "pool": "max"}]
    exp, dep = rows
    assert exp["n"] == 3 and exp["mean"] == pytest.approx(0.8) and exp["std"] == pytest.approx(0.1)
    assert (exp["min"], exp["max"]) == (0.7, 0.9)
    assert dep["n"] == 1 and dep["std"] is None and dep["failed"] == 1 and dep["retried"] == 1
    table = aggregate_table(rows)
    assert "| exp | max | 3 | 80.00 ± 10.00 | 70.00 – 90.00 | 0 | 0 |" in table
    assert "| depsilon | max | 1 | 50.00 | 50.00 – 50.00 | 1 | 1 |" in table


def test_plot_aggregate_writes_png(tmp_path):
    rows = aggregate([fake_result(f"{k}{p}{s}", {"grad_kernel": k, "pool": p, "seed": s}, [0.5 + 0.1 * s])
                      for k in ABLATION_GRID["grad_kernel"] for p in ABLATION_GRID["pool"] for s in (1, 2)],
                     list(ABLATION_GRID))
    path = sweep.plot_aggregate(rows, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------
# the sequential runner
# ----------------------------------------------------------------------------------
def test_local_sweep_trains_every_run_and_writes_summary(data, tmp_path):
    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.train import train

    runs = expand_grid(BASE, {"grad_kernel": ["exp", "depsilon"]}, seeds=[1])
    results = run_sweep(runs, tmp_path, data, **QUIET)
    assert [r.status for r in results] == ["ok", "ok"] and [r.attempts for r in results] == [1, 1]
    # each run equals a plain training of its configuration on the limited data
    ref = train(runs[1].config, tmp_path / "ref", train_data=(data.x_train, data.y_train),
                test_data=(data.x_test, data.y_test), dataset_checksum="tiny", n_classes=10, **QUIET)
    assert results[1].history[0]["train_loss"] == ref["history"][0]["train_loss"]
    assert load_checkpoint(tmp_path / runs[1].name).config.grad_kernel == "depsilon"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["ok", "ok"]
    assert (tmp_path / "summary.md").read_text().startswith("| run | grad_kernel | seed |")
    # rerunning reuses the finished runs
    again = run_sweep(runs, tmp_path, data, **QUIET)
    assert [r.status for r in again] == ["reused", "reused"] and again[0].attempts == 0
    assert again[0].final_test_accuracy == results[0].final_test_accuracy


def test_limits_apply_per_run(data, tmp_path):
    runs = expand_grid(BASE, {"limit_train": [10, 20]})
    results = run_sweep(runs, tmp_path, data, **QUIET)
    spikes = [r.history[0]["spikes_per_neuron"] for r in results]
    assert spikes[0] != spikes[1]


def test_local_failure_is_retried_then_reported(data, tmp_path, monkeypatch):
    import eventsnn.train as train_mod

    real = train_mod.train
    calls = {"n": 0}

    def flaky(config, *args, **kwargs):
        calls["n"] += 1
        if config.seed == 2 and calls["n"] <= 2:
            raise RuntimeError("disk full (planned)")
        if config.seed == 3:
            raise ValueError("always broken (planned)")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train", flaky)
    runs = expand_grid(BASE, {}, seeds=[2, 3])
    lines = []
    results = run_sweep(runs, tmp_path, data, retries=2, progress=False, log=lines.append)
    ok, bad = results
    assert ok.status == "ok" and ok.attempts == 3 and ok.errors == ["RuntimeError: disk full (planned)"] * 2
    assert bad.status == "failed" and bad.attempts == 3 and len(bad.errors) == 3
    assert any("FAILED after 3 attempts" in line and "always broken" in line for line in lines)
    table = (tmp_path / "summary.md").read_text()
    assert table.count("(retried)") == 2 and "| failed |" in table
    # no retries: one attempt
    results = run_sweep(expand_grid(BASE, {}, seeds=[3]), tmp_path / "b", data, retries=0, **QUIET)
    assert results[0].status == "failed" and results[0].attempts == 1


def test_train_run_returns_files_without_out_dir(data):
    out = sweep.train_run(BASE, data)
    assert set(out["files"]) == {"checkpoint.h5", "metrics.json"}
    assert out["files"]["checkpoint.h5"][:8] == b"\x89HDF\r\n\x1a\n"
    assert json.loads(out["files"]["metrics.json"])["history"] == out["history"]


# ----------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory, fake_mnist_cache):
    with fake_mnist_dir(tmp_path_factory, fake_mnist_cache, 24, 12, seed=2) as data_dir:
        yield data_dir


def one_error_line(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_cli_sweep(fake_mnist, tmp_path):
    r = invoke("sweep", "mnist", "--grid", "lr=1e-3,2e-3", "--arch", "784-8", "--epochs", "1",
               "--limit-train", "12", "--seeds", "1,2", "--data-dir", fake_mnist, "--out", tmp_path, "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    out = json.loads(r.stdout)
    assert [x["name"] for x in out["runs"]] == ["lr=0.001,seed=1", "lr=0.001,seed=2", "lr=0.002,seed=1",
                                                "lr=0.002,seed=2"]
    assert all(x["status"] == "ok" and x["attempts"] == 1 and "history" not in x for x in out["runs"])
    assert (tmp_path / "lr=0.002,seed=2" / "checkpoint.h5").is_file()


def test_cli_ablation_on_a_tiny_conv_network(fake_mnist, tmp_path):
    r = invoke("ablation", "mnist", "--arch", "2C5-P4-8", "--epochs", "1", "--limit-train", "8",
               "--limit-test", "6", "--batch-size", "8", "--data-dir", fake_mnist, "--out", tmp_path, "--quiet")
    assert r.exit_code == 0, (r.output, r.exception)
    table = (tmp_path / "ablation.md").read_text()
    for k in ABLATION_GRID["grad_kernel"]:
        for p in ABLATION_GRID["pool"]:
            assert f"| {k} | {p} | 1 |" in table
    groups = json.loads((tmp_path / "ablation.json").read_text())["groups"]
    assert len(groups) == 6 and all(g["n"] == 1 and g["std"] is None for g in groups)
    summary = json.loads((tmp_path / "summary.json").read_text())["runs"]
    for g in groups:  # each group's accuracy is its run's final accuracy
        run = next(s for s in summary if s["overrides"]["grad_kernel"] == g["values"]["grad_kernel"]
                   and s["overrides"]["pool"] == g["values"]["pool"])
        assert g["mean"] == run["final_test_accuracy"]
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "ablation.md" in r.stdout


@pytest.mark.parametrize("args,needles", [
    (["sweep", "mnist", "--grid", "nope=1"], ["unknown grid field 'nope'"]),
    (["sweep", "mnist", "--grid", "lr=1e-3", "--lr", "1e-2"], ["--lr is varied by the sweep"]),
    (["ablation", "mnist", "--arch", "2C5-P4-8", "--pool", "max"], ["--pool is varied by the ablation"]),
    (["ablation", "mnist", "--arch", "2C5-P4-8", "--seed", "1", "--seeds", "1,2"], ["either --seed or --seeds"]),
    (["ablation", "mnist", "--arch", "2C5-P4-8", "--seeds", "1,x"], ["--seeds"]),
    (["ablation", "mnist", "--arch", "784-10"], ["has no pooling layer"]),
    (["sweep", "mnist", "--grid", "lr=1e-3", "--workers", "2", "--scheduler", "tcp://h:1"],
     ["either --scheduler ADDRESS or --workers N"]),
    (["train", "mnist", "--workers", "1", "--scheduler", "tcp://h:1"], ["either --scheduler"]),
    (["evaluate", "run", "--workers", "1", "--scheduler", "tcp://h:1"], ["either --scheduler"]),
])
def test_cli_errors_are_one_line(fake_mnist, tmp_path, args, needles):
    one_error_line(invoke(*args, "--data-dir", fake_mnist, *(["--out", tmp_path] if args[0] != "evaluate" else [])),
                   *needles)


@pytest.mark.parametrize("command", ["train", "evaluate", "sweep", "ablation"])
def test_dask_options_without_the_extra(fake_mnist, tmp_path, monkeypatch, command):
    """With dask/distributed not importable, a distributed option is one line naming the extra."""
    for mod in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    args = {"train": ["train", "mnist", "--out", tmp_path],
            "evaluate": ["evaluate", tmp_path / "missing"],
            "sweep": ["sweep", "mnist", "--grid", "lr=1e-3", "--out", tmp_path],
            "ablation": ["ablation", "mnist", "--arch", "2C5-P4-8", "--out", tmp_path]}[command]
    one_error_line(invoke(*args, "--workers", "2", "--data-dir", fake_mnist), "eventsnn[distributed]")


def test_no_dask_import_without_options(fake_mnist, tmp_path):
    code = ("import sys; from click.testing import CliRunner; from eventsnn.cli.main import main; "
            "r = CliRunner().invoke(main, ['--help']); "
            "import eventsnn.train, eventsnn.sweep; "
            "print(r.exit_code, any(m == 'distributed' or m.startswith(('dask', 'distributed.')) "
            "for m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"], out


def test_mean_std_are_sample_statistics():
    rs = [fake_result(str(s), {"pool": "max", "seed": s}, [a]) for s, a in enumerate([0.2, 0.4])]
    row = aggregate(rs, ["pool"])[0]
    assert row["std"] == pytest.approx(math.sqrt(((0.2 - 0.3) ** 2 + (0.4 - 0.3) ** 2) / 1))
    assert isinstance(rs[0], RunResult)
