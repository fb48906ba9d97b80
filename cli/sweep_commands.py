"""``eventsnn sweep`` and ``eventsnn ablation``: grids of trainings, here or on Dask (:mod:`eventsnn.sweep`).

* ``sweep DATASET --grid FIELD=V1,V2 ... [train options] [--seeds 1,2,3]`` —
  every combination of the grid (TrainConfig fields, e.g. ``--grid lr=1e-3,5e-4
  --grid pool=max,avg``) over the seeds, one training per run;
* ``ablation DATASET --arch ARCH [train options] [--seeds ...]`` — the Table 3
  preset: ``grad_kernel`` in {exp, depsilon} x ``pool`` in {max, avg,
  adjusted-avg}; writes ``ablation.md``/``ablation.json`` (final test accuracy,
  mean ± std over seeds) and ``ablation.png``.

Both write ``OUT/<run>/checkpoint.h5`` and ``metrics.json`` per run and
``OUT/summary.{json,md}`` (status and attempts of every run: a retried run
says so). With ``--scheduler ADDRESS`` or ``--workers N`` every run is a Dask
task; a failed task or lost worker is retried up to ``--retries`` times.
Finished runs already in OUT are reused, so rerunning an interrupted sweep
continues it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from eventsnn.cli.cluster import Cluster, cluster_options


def _seeds(text: str | None):
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.UsageError(f"--seeds {text!r}: expected integers separated by commas") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.UsageError(f"--seeds {text!r}: expected distinct integers separated by commas")
    return seeds


def _limit(runs, name):
    values = [getattr(r.config, name) for r in runs]
    return None if any(v is None for v in values) else max(values)


def register(main):
    """Add ``sweep`` and ``ablation`` to the ``eventsnn`` group."""
    from eventsnn.cli.main import _check_writable, _config_from_options, _load_split, _train_options

    def common(f):
        f = cluster_options(f)
        for opt in reversed([
            click.option("--seeds", default=None, help="Comma-separated seeds: every configuration once per seed."),
            click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Output directory (default runs/<command>-DATASET-ARCH)."),
            click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                         help="Further attempts of a run whose training failed or whose worker died."),
            click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Dataset cache (default $EVENTSNN_DATA or ./data)."),
            click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
            click.option("--quiet", is_flag=True, help="No progress bars."),
        ]):
            f = opt(f)
        return f

    def run(command, dataset, grid, opts, seeds, out, retries, data_dir, as_json, quiet, scheduler, workers):
        from eventsnn.datasets import dataset_checksum, dataset_info
        from eventsnn.sweep import TrainingData, expand_grid, run_sweep

        ctx = click.get_current_context()
        cluster = Cluster(scheduler, workers)
        seeds = _seeds(seeds)
        for key in grid:
            src = ctx.get_parameter_source(key) if key in opts else None
            if src is not None and src.name == "COMMANDLINE":
                raise click.UsageError(f"--{key.replace('_', '-')} is varied by the {command}; do not give it too")
        if seeds is not None and ctx.get_parameter_source("seed").name == "COMMANDLINE":
            raise click.UsageError("use either --seed or --seeds")
        base = _config_from_options(dataset, opts)
        runs = expand_grid(base, grid, seeds=seeds)
        out_dir = Path(out) if out is not None else Path("runs") / f"{command}-{dataset}-{base.arch}"
        _check_writable(out_dir)
        x_train, y_train = _load_split(dataset, "train", data_dir, _limit(runs, "limit_train"))
        x_test, y_test = _load_split(dataset, "test", data_dir, _limit(runs, "limit_test"))
        data = TrainingData(x_train, y_train, x_test, y_test, dataset_checksum(dataset, data_dir),
                            dataset_info(dataset).n_classes)
        log = (lambda *_: None) if as_json else click.echo
        log(f"{command}: {len(runs)} runs of {base.arch} on {dataset} -> {out_dir}")
        with cluster.client() as client:
            results = run_sweep(runs, out_dir, data, client=client, retries=retries,
                                progress=not (quiet or as_json), log=log)
        log(f"summary: {out_dir / 'summary.md'}")
        return out_dir, results, base

    def brief(results):
        return [{k: v for k, v in asdict(r).items() if k != "history"} | {"retried": r.retried} for r in results]

    def exit_on_failure(results):
        if any(r.status == "failed" for r in results):
            click.get_current_context().exit(1)

    @main.command("sweep")
    @click.argument("dataset")
    @click.option("--grid", "grid_specs", multiple=True, required=True, metavar="FIELD=V1,V2,...",
                  help="A TrainConfig field and its values (repeat for more fields), e.g. --grid lr=1e-3,5e-4.")
    @_train_options
    @common
    def sweep(dataset, grid_specs, seeds, out, retries, data_dir, as_json, quiet, scheduler, workers, **opts):
        """Train every combination of the --grid values (and --seeds) on DATASET.

        Writes OUT/<run>/ (checkpoint.h5, metrics.json) and OUT/summary.{json,md}.
        Exit code 1 when a run failed every attempt.
        """
        from eventsnn.sweep import parse_grid

        grid = parse_grid(grid_specs)
        out_dir, results, _ = run("sweep", dataset, grid, opts, seeds, out, retries, data_dir, as_json, quiet,
                               scheduler, workers)
        if as_json:
            click.echo(json.dumps({"out": str(out_dir), "runs": brief(results)}))
        else:
            from eventsnn.sweep import summary_table

            click.echo(summary_table(results), nl=False)
        exit_on_failure(results)

    @main.command("ablation")
    @click.argument("dataset")
    @_train_options
    @common
    @click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="PNG of the accuracies (default OUT/ablation.png).")
    def ablation(dataset, seeds, out, retries, data_dir, as_json, quiet, scheduler, workers, plot_path, **opts):
        """Table 3 ablation on DATASET: --grad-kernel {exp, depsilon} x --pool {max, avg, adjusted-avg}.

        Give the network with --arch (it needs pooling layers, e.g. 15C5-P2-40C5-P2-300) and keep
        it short with --epochs and --limit-train. Writes the runs and OUT/summary.{json,md}, and
        OUT/ablation.{md,json,png}: final test accuracy per configuration, mean ± std over --seeds.
        """
        from eventsnn.arch import parse_arch
        from eventsnn.io import atomic_write
        from eventsnn.sweep import ABLATION_GRID, aggregate, aggregate_table, plot_aggregate

        if not any(layer.kind == "pool" for layer in parse_arch(opts["arch"]).layers):
            raise click.UsageError(f"--arch {opts['arch']} has no pooling layer (Pk): the ablation varies "
                                   "the pooling rule, e.g. --arch 15C5-P2-40C5-P2-300")
        out_dir, results, base = run("ablation", dataset, dict(ABLATION_GRID), opts, seeds, out, retries, data_dir,
                               as_json, quiet, scheduler, workers)
        rows = aggregate(results, list(ABLATION_GRID))
        table = aggregate_table(rows)
        with atomic_write(out_dir / "ablation.md") as fh:
            fh.write(table.encode())
        with atomic_write(out_dir / "ablation.json") as fh:
            fh.write(json.dumps({"groups": rows}, indent=2).encode())
        png = plot_aggregate(rows, plot_path or out_dir / "ablation.png",
                             title=f"Ablation: {base.arch} on {dataset}, {base.epochs} epochs")
        if as_json:
            click.echo(json.dumps({"out": str(out_dir), "groups": rows, "runs": brief(results),
                                   "plot": str(png)}))
        else:
            click.echo(table, nl=False)
            click.echo(f"wrote {out_dir / 'ablation.md'}, {png}")
        exit_on_failure(results)

    return main
