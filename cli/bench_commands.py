"""``eventsnn`` commands that compare exact continuous time with the official discrete clock.

* ``bench`` — seconds per training sample and peak memory of both engines, side
  by side in one process (:mod:`eventsnn.bench`);
* ``dt-convergence`` — the clock at decreasing dt against the exact result
  (:mod:`eventsnn.convergence`).

Thin click wrappers: bad input raises ``click.UsageError`` or a library
``ValueError``, which the group prints as one line ``Error: ...`` (exit code 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from eventsnn.cli.inspect_commands import Subject, _parse_ints, _subject_options


@click.command("bench", short_help="Continuous vs discrete time: s/sample and memory, side by side.")
@click.option("--quick", is_flag=True, help="A small batch and 2 repeats (under a minute on 2 cores).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also measure how each engine's cost grows with T and with the number of spikes, "
                   "and draw it to this PNG (a few minutes).")
@click.option("--arch", default="784-800", hidden=True, help="Benchmark network (input size required).")
@click.option("--batch", type=int, default=None, hidden=True, help="Samples per measured batch.")
@click.option("--repeats", type=int, default=None, hidden=True, help="Timed runs per engine (best kept).")
def bench_cmd(quick, as_json, plot_path, arch, batch, repeats):
    """Seconds per training sample (forward + backward) and peak memory of the exact
    continuous-time engine and of the official discrete clock with T = 5, 20, 100 steps,
    on the same network (784-800-10) and the same input events (5 current impulses per
    pixel over a window of 5 time units; dt = 5/T)."""
    from eventsnn.bench import QUICK, BenchSettings, engine_scaling, run_bench
    from eventsnn.plot import plot_engine_scaling

    values = dict(QUICK) if quick else {}
    if batch is not None:
        values["batch"] = batch
    if repeats is not None:
        values["repeats"] = repeats
    settings = BenchSettings(arch=arch, **values)
    say = None if as_json else click.echo
    if say:
        say(f"bench: {arch}-10, batch {settings.batch}, best of {settings.repeats} runs per engine "
            "(forward + count loss + backward, official stabilisers)")
    res = run_bench(settings, progress=say)
    if plot_path is not None:
        scaling = engine_scaling(settings, progress=say)
        res["scaling"] = scaling
        plot_engine_scaling(scaling, plot_path)
        if say:
            say(f"wrote {plot_path}")
    if as_json:
        click.echo(json.dumps(res))
        return
    m = res["machine"]
    click.echo(f"machine: {m['cpu']}, {m['cores']} cores, numba threads {m['numba_threads']}, BLAS 1 thread; "
               f"memory: {res['memory']}")


@click.command("dt-convergence", short_help="The discrete clock at decreasing dt against exact time.")
@_subject_options
@click.option("--samples", type=int, default=100, show_default=True, help="Test samples (drawn with --seed).")
@click.option("--steps", "steps", default="5,10,20,50,100,200", show_default=True,
              help="Clock steps T over the window (dt = t_end / T), comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the figure to this PNG.")
def dt_convergence_cmd(checkpoint, arch, dataset, pool, seed, data_dir, samples, steps, as_json, plot_path):
    """Run the same network on the same test samples in exact continuous time and on the
    discrete clock at decreasing dt: per T, the spike-count mismatches and the spike-time
    error of every layer, and the agreement of the predicted classes and the accuracy
    difference against the exact result."""
    from eventsnn.convergence import dt_convergence
    from eventsnn.plot import plot_dt_convergence

    steps_list = _parse_ints(steps, "--steps")
    if min(steps_list) < 1:
        raise click.UsageError(f"--steps must be integers >= 1, got {steps}")
    subj = Subject(checkpoint, arch, dataset, pool, seed, data_dir)
    _, inputs, labels = subj.samples(samples)
    say = None if as_json else click.echo
    if say:
        say(f"{subj.description}; {inputs.n_samples} test samples, window (0, {subj.net.t_end:g}]")
    report = dt_convergence(subj.net, inputs, steps_list, labels, progress=say)
    if plot_path is not None:
        plot_dt_convergence(report, plot_path)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    ref = report.reference
    click.echo(f"exact continuous time: accuracy {100 * ref['accuracy']:.2f} %, spikes per layer "
               + ", ".join(str(s) for s in ref["spikes"]))
    if plot_path is not None:
        click.echo(f"wrote {plot_path}")


def register(main: click.Group) -> None:
    """Add ``bench`` and ``dt-convergence`` to the ``eventsnn`` group."""
    main.add_command(bench_cmd)
    main.add_command(dt_convergence_cmd)
