"""Sweeps: a grid of training configurations, one training per run, run here or on Dask.

A sweep is a base :class:`~eventsnn.config.TrainConfig` and a grid of field
overrides ``{field: [values...]}``; :func:`expand_grid` takes the Cartesian
product (in the order of the grid's keys, last key fastest) and names each
run by its overrides (``grad_kernel=exp,pool=max,seed=1``). The Table 3
ablation of the paper is the preset :data:`ABLATION_GRID` (both gradient
kernels h of Eq. 12 x the three pooling rules) over a few seeds.

:func:`run_sweep` trains every run — one after the other in this process, or
one Dask task per run with a ``distributed.Client`` (results and checkpoints
come back to the client and are written under ``out_dir/<run name>/``). A run
whose training raises, or whose worker dies, is re-run up to ``retries``
times; the summary records the attempts of every run and the errors of the
failed attempts, and a run that fails every attempt is reported as failed,
never dropped. A run whose directory already holds a finished training of the
same configuration is reused, so an interrupted sweep continues where it
stopped.

Outputs: ``summary.json`` (every run: overrides, status, attempts, errors,
final and best test accuracy, history) and ``summary.md`` (a Markdown table);
:func:`aggregate` groups runs over seeds (mean, sample standard deviation,
min, max of the final test accuracy) for the ablation table and plot.

Nothing here imports Dask: the Dask side is :mod:`eventsnn.distributed`.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .distributed import error_line  # imports no Dask
from .io import atomic_write

#: The Table 3 ablation: backward kernel h of Eq. 12 x pooling rule.
ABLATION_GRID = {"grad_kernel": ["exp", "depsilon"], "pool": ["max", "avg", "adjusted-avg"]}
#: Fields a grid may not vary: the data of a sweep is loaded once.
FIXED_FIELDS = ("dataset",)
#: Files of a run directory sent back from a worker.
RUN_FILES = ("checkpoint.h5", "metrics.json")


@dataclass(frozen=True)
class Run:
    """One training of a sweep: its name, the overridden fields and the full configuration."""

    name: str
    overrides: dict
    config: TrainConfig


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The data of a sweep: splits (images float in [0, 1], int labels), checksum, classes.

    Each run uses the first ``config.limit_train`` / ``limit_test`` samples.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    checksum: str
    n_classes: int


@dataclass
class RunResult:
    """The outcome of one run of a sweep (``status``: ``"ok"``, ``"reused"`` or ``"failed"``)."""

    name: str
    overrides: dict
    status: str
    attempts: int
    errors: list = field(default_factory=list)
    final_test_accuracy: float | None = None
    best_test_accuracy: float | None = None
    epochs: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)

    @property
    def retried(self) -> bool:
        return self.attempts > 1


# ----------------------------------------------------------------------------- grid
def _field_names() -> tuple:
    return tuple(f.name for f in fields(TrainConfig))


def run_name(overrides: dict) -> str:
    """Directory-safe name of a run: ``key=value`` pairs joined by commas."""
    if not overrides:
        return "base"
    parts = []
    for key, value in overrides.items():
        text = str(value).replace("/", "_").replace(" ", "").replace(",", "_")
        parts.append(f"{key}={text}")
    return ",".join(parts)


def expand_grid(base: TrainConfig, grid: dict, *, seeds=None) -> list:
    """The runs of a grid: every combination of the values, over ``seeds``.

    Parameters
    ----------
    base : TrainConfig
        Fields not in the grid.
    grid : dict of str -> sequence
        TrainConfig field -> values (at least one each).
    seeds : sequence of int, optional
        Shorthand for ``grid["seed"]`` (the fastest-varying key).

    Returns
    -------
    list of Run

    Raises
    ------
    ValueError
        Unknown or fixed field, empty value list, duplicate run, or a
        combination that is not a valid configuration (the message names the run).
    """
    known = _field_names()
    grid = {k: list(v) if isinstance(v, (list, tuple, range, np.ndarray)) else [v] for k, v in grid.items()}
    if seeds is not None:
        if "seed" in grid:
            raise ValueError("give the seeds either in the grid or as seeds, not both")
        grid["seed"] = [int(s) for s in seeds]
    for key, values in grid.items():
        if key not in known:
            raise ValueError(f"unknown grid field {key!r}; TrainConfig fields are: {', '.join(known)}")
        if key in FIXED_FIELDS:
            raise ValueError(f"a sweep cannot vary {key!r}: run one sweep per {key}")
        if not values:
            raise ValueError(f"grid field {key!r} has no values")
    runs, seen = [], set()
    base_values = json.loads(base.to_json())
    for combo in itertools.product(*grid.values()):
        overrides = dict(zip(grid.keys(), combo))
        name = run_name(overrides)
        if name in seen:
            raise ValueError(f"run {name} appears twice in the grid")
        seen.add(name)
        try:
            config = TrainConfig(**{**base_values, **overrides})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run {name}: {exc}") from None
        runs.append(Run(name, overrides, config))
    return runs


def parse_value(key: str, text: str):
    """A grid value given as text, converted to the type of TrainConfig field ``key``."""
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    if key not in types:
        raise ValueError(f"unknown grid field {key!r}; TrainConfig fields are: {', '.join(types)}")
    kind = types[key]
    text = text.strip()
    if "None" in kind and text.lower() in ("none", "null"):
        return None
    try:
        if kind.startswith("bool"):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"grid field {key!r}: {text!r} is not a valid {kind.split()[0]}") from None
    return text


def parse_grid(specs) -> dict:
    """``["pool=max,avg", "lr=1e-3,5e-4"]`` -> ``{"pool": ["max", "avg"], "lr": [0.001, 0.0005]}``."""
    grid = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not values.strip():
            raise ValueError(f"grid entry {spec!r} is not FIELD=VALUE[,VALUE...]")
        if key in grid:
            raise ValueError(f"grid field {key!r} given twice")
        grid[key] = [parse_value(key, v) for v in values.split(",")]
    return grid


# ----------------------------------------------------------------------------- one run
def _limited(data: TrainingData, config: TrainConfig):
    return ((data.x_train[:config.limit_train], data.y_train[:config.limit_train]),
            (data.x_test[:config.limit_test], data.y_test[:config.limit_test]))


def train_run(config: TrainConfig, data: TrainingData, out_dir=None, *, progress: bool = False,
              log=None) -> dict:
    """Train one run of a sweep (the body of a sweep task).

    With ``out_dir`` the run is written there; without it, it is trained in a
    temporary directory whose files (``checkpoint.h5``, ``metrics.json``) are
    returned as bytes (for the client to write: workers need no shared disk).

    Returns
    -------
    dict
        ``history`` and, without ``out_dir``, ``files`` {name: bytes}.
    """
    from . import train as train_mod

    train_data, test_data = _limited(data, config)
    quiet = log is None
    tmp = None
    if out_dir is None:
        tmp = out_dir = Path(tempfile.mkdtemp(prefix="eventsnn-run-"))
    try:
        res = train_mod.train(config, out_dir, train_data=train_data, test_data=test_data,
                              dataset_checksum=data.checksum, n_classes=data.n_classes, progress=progress,
                              log=(lambda *_: None) if quiet else log)
        out = {"history": res["history"]}
        if tmp is not None:
            out["files"] = {name: (tmp / name).read_bytes() for name in RUN_FILES if (tmp / name).exists()}
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _finished_history(run_dir: Path, config: TrainConfig):
    """The history of a finished training of ``config`` in ``run_dir``, else None."""
    try:
        data = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not (run_dir / "checkpoint.h5").exists() or data.get("config") != json.loads(config.to_json()):
        return None
    hist = data.get("history") or []
    return hist if len(hist) == config.epochs else None


def _result(run: Run, status: str, attempts: int, errors: list, history: list) -> RunResult:
    accs = [h["test_accuracy"] for h in history]
    return RunResult(run.name, dict(run.overrides), status, attempts, list(errors),
                     final_test_accuracy=accs[-1] if accs else None,
                     best_test_accuracy=max(accs) if accs else None, epochs=len(history),
                     train_seconds=float(sum(h.get("epoch_seconds", 0.0) for h in history)),
                     history=history)


def _write_run_files(run_dir: Path, files: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        with atomic_write(run_dir / name) as fh:
            fh.write(blob)


# ----------------------------------------------------------------------------- the sweep
def run_sweep(runs: list, out_dir, data: TrainingData, *, client=None, retries: int = 2,
              progress: bool = True, log=print) -> list:
    """Train every run; write ``out_dir/<name>/`` and ``out_dir/summary.{json,md}``.

    Parameters
    ----------
    runs : list of Run
        From :func:`expand_grid`.
    out_dir : path
    data : TrainingData
    client : distributed.Client, optional
        Run one Dask task per run on its workers (the data is sent to the
        workers once); default: one after the other in this process.
    retries : int
        Further attempts of a run whose training raised or whose worker died.
    progress : bool
        Progress bars (the runs; in this process also each run's epochs).
    log : callable
        One line per finished run.

    Returns
    -------
    list of RunResult
        In the order of ``runs``.
    """
    if int(retries) < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    results = {}
    todo = []
    for run in runs:
        hist = _finished_history(out_dir / run.name, run.config)
        if hist is not None:
            results[run.name] = _result(run, "reused", 0, [], hist)
            log(f"{run.name}: finished earlier, reused ({out_dir / run.name})")
        else:
            todo.append(run)
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress)

    def finish(run, status, attempts, errors, history):
        res = _result(run, status, attempts, errors, history)
        results[run.name] = res
        bar.update(1)
        note = f" after {attempts} attempts" if attempts > 1 else ""
        if status == "ok":
            log(f"{run.name}: final test accuracy {res.final_test_accuracy:.4f}{note}")
        else:
            log(f"{run.name}: FAILED{note}: {errors[-1] if errors else 'no error recorded'}")

    if client is None:
        for run in todo:
            errors = []
            for attempt in range(1, int(retries) + 2):
                try:
                    out = train_run(run.config, data, out_dir / run.name, progress=progress)
                except Exception as exc:  # noqa: BLE001 - recorded and retried, never dropped
                    errors.append(error_line(exc))
                    continue
                finish(run, "ok", attempt, errors, out["history"])
                break
            else:
                finish(run, "failed", int(retries) + 1, errors, [])
    elif todo:
        from .distributed import map_with_retries

        by_name = {run.name: run for run in todo}
        data_future = client.scatter(data, broadcast=True)

        def done(outcome):
            run = by_name[outcome.name]
            if outcome.ok:
                _write_run_files(out_dir / run.name, outcome.result.get("files", {}))
                finish(run, "ok", outcome.attempts, outcome.errors, outcome.result["history"])
            else:
                finish(run, "failed", outcome.attempts, outcome.errors, [])

        map_with_retries(client, train_run, [(run.name, (run.config, data_future)) for run in todo],
                         retries=retries, on_done=done)
    bar.close()
    ordered = [results[run.name] for run in runs]
    write_summary(ordered, out_dir)
    return ordered


# ----------------------------------------------------------------------------- summaries
def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def summary_table(results: list) -> str:
    """Markdown table of a sweep: one row per run, its overrides, status, attempts, accuracies."""
    keys = list(dict.fromkeys(k for r in results for k in r.overrides))
    head = ["run", *keys, "status", "attempts", "final test acc (%)", "best test acc (%)", "epochs",
            "train s", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        attempts = f"{r.attempts} (retried)" if r.retried else str(r.attempts)
        errors = "; ".join(e.replace("|", "/") for e in r.errors) or ""
        row = [r.name, *[str(r.overrides.get(k, "")) for k in keys], r.status, attempts,
               _pct(r.final_test_accuracy), _pct(r.best_test_accuracy), str(r.epochs),
               f"{r.train_seconds:.1f}", errors]
        lines.append("| " + " | ".join(row) + " |")
    n_retried = sum(r.retried for r in results)
    n_failed = sum(r.status == "failed" for r in results)
    lines.append("")
    lines.append(f"{len(results)} runs, {n_failed} failed, {n_retried} retried "
                 "(attempts counts every training that started; reused: finished in an earlier sweep).")
    return "\n".join(lines) + "\n"


def write_summary(results: list, out_dir) -> tuple:
    """Write ``summary.json`` and ``summary.md`` under ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    js, md = out_dir / "summary.json", out_dir / "summary.md"
    payload = {"runs": [{**asdict(r), "retried": r.retried} for r in results]}
    with atomic_write(js) as fh:
        fh.write(json.dumps(payload, indent=2).encode())
    with atomic_write(md) as fh:
        fh.write(summary_table(results).encode())
    return js, md


def aggregate(results: list, keys) -> list:
    """Group runs by the values of ``keys`` (e.g. over seeds): final test accuracy statistics.

    Returns
    -------
    list of dict
        One per group in first-seen order: ``values`` (dict key -> value), ``n``
        (runs that finished), ``failed``, ``retried``, ``accuracies``, ``mean``,
        ``std`` (sample standard deviation, None for n < 2), ``min``, ``max``
        (None when no run finished).
    """
    groups = {}
    for r in results:
        values = tuple((k, r.overrides.get(k)) for k in keys)
        groups.setdefault(values, []).append(r)
    rows = []
    for values, members in groups.items():
        accs = [r.final_test_accuracy for r in members if r.status != "failed" and r.final_test_accuracy is not None]
        n = len(accs)
        mean = sum(accs) / n if n else None
        std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1)) if n > 1 else None
        rows.append({"values": dict(values), "n": n, "failed": sum(r.status == "failed" for r in members),
                     "retried": sum(r.retried for r in members), "accuracies": accs, "mean": mean, "std": std,
                     "min": min(accs) if accs else None, "max": max(accs) if accs else None})
    return rows


def aggregate_table(rows: list) -> str:
    """Markdown table of :func:`aggregate` rows (accuracies in %)."""
    keys = list(rows[0]["values"]) if rows else []
    head = [*keys, "runs", "final test acc (%): mean ± std", "min – max", "failed", "retried"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        mean = "—" if row["mean"] is None else (
            f"{100 * row['mean']:.2f}" + ("" if row["std"] is None else f" ± {100 * row['std']:.2f}"))
        span = "—" if row["min"] is None else f"{_pct(row['min'])} – {_pct(row['max'])}"
        lines.append("| " + " | ".join([*[str(v) for v in row["values"].values()], str(row["n"]), mean, span,
                                        str(row["failed"]), str(row["retried"])]) + " |")
    return "\n".join(lines) + "\n"


def plot_aggregate(rows: list, path, *, title: str = "Ablation") -> Path:
    """Bar chart of :func:`aggregate` rows: mean final test accuracy ± std, every seed as a dot.

    The first key of the rows is the legend (one colour per value), the others
    label the groups on the x axis.
    """
    from .plot import _pyplot, _save

    if not rows:
        raise ValueError("no runs to plot")
    keys = list(rows[0]["values"])
    colour_key, group_keys = keys[0], keys[1:]
    colours = list(dict.fromkeys(r["values"][colour_key] for r in rows))
    groups = list(dict.fromkeys(tuple(r["values"][k] for k in group_keys) for r in rows))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) * len(colours) / 2 + 2), 4))
    width = 0.8 / len(colours)
    for c, cval in enumerate(colours):
        for g, gval in enumerate(groups):
            row = next((r for r in rows if r["values"][colour_key] == cval
                        and tuple(r["values"][k] for k in group_keys) == gval), None)
            if row is None or row["mean"] is None:
                continue
            x = g + (c - (len(colours) - 1) / 2) * width
            ax.bar(x, 100 * row["mean"], width * 0.9, color=f"C{c}",
                   yerr=None if row["std"] is None else 100 * row["std"], capsize=4,
                   label=f"{colour_key} = {cval}" if g == 0 else None)
            ax.plot(np.full(len(row["accuracies"]), x), 100 * np.asarray(row["accuracies"]), "k.", ms=5)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([", ".join(f"{k}={v}" for k, v in zip(group_keys, gval)) or "all" for gval in groups])
    ax.set_ylabel("final test accuracy (%)")
    lows = [100 * r["min"] for r in rows if r["min"] is not None]
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 5.0), 100.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, dpi=120)
