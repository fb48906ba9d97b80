"""``eventsnn`` command line: thin click commands over the library.

Every command builds a typed configuration, calls the library and prints the
result (``--json`` for machine-readable output). Bad input — an unknown
dataset, a malformed architecture, a checkpoint that does not fit, an
unwritable directory — ends with one line ``Error: ...`` on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path

import click

from eventsnn import __version__
from eventsnn.allocator import keep_freed_memory
from eventsnn.augment import KINDS as AUGMENT_KINDS
from eventsnn.cli.cluster import Cluster, cluster_options, data_parallel
from eventsnn.config import ENCODERS, RESUME_MAY_CHANGE, TrainConfig
from eventsnn.device import DEVICES, select_device, set_device
from eventsnn.engine.conv import POOL_KINDS
from eventsnn.loss import SUPERVISION

#: Datasets whose samples are events (loaded as SpikeTrains), refused before any download.
DATASETS_WITH_EVENTS = ("nmnist",)

#: Exceptions that mean "bad input": reported in one line with exit code 2.
USER_ERRORS = (ValueError, OSError, KeyError)


class EventsnnGroup(click.Group):
    """A click group that turns library errors into one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.UsageError as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            ctx.exit(2)
        except click.ClickException:
            raise
        except USER_ERRORS as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, KeyError):
                msg = f"missing entry {msg}"
            click.echo(f"Error: {msg}", err=True)
            ctx.exit(2)


def _announce_device(choice, err: bool = False) -> str:
    """Print the one-line notice of a resolved --device (stderr with ``err``); "cpu" | "cuda"."""
    click.echo(choice.notice, err=err)
    return choice.device


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise click.UsageError(f"--out {directory} is not writable ({exc.strerror or exc})") from None


def _warning_line(message, category, filename, lineno, file=None, line=None):
    click.echo(f"Warning: {message}", err=True)


@click.group(cls=EventsnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventsnn")
def main():
    """Spiking neural networks trained with event-driven backpropagation in exact continuous time."""
    warnings.showwarning = _warning_line
    keep_freed_memory()  # fewer page faults per step (eventsnn/allocator.py)


# ----------------------------------------------------------------------------- train
_D = TrainConfig()

TRAIN_OPTIONS = [
    click.option("--arch", default=_D.arch, show_default=True,
                 help="Architecture, e.g. 784-800 (input-hidden...; the output layer is implicit)."),
    click.option("--epochs", type=int, default=_D.epochs, show_default=True),
    click.option("--batch-size", type=int, default=_D.batch_size, show_default=True),
    click.option("--lr", type=float, default=_D.lr, show_default=True, help="AdamW learning rate (cosine schedule)."),
    click.option("--weight-decay", type=float, default=_D.weight_decay, show_default=True),
    click.option("--grad-clip", type=float, default=_D.grad_clip, show_default=True,
                 help="Global gradient-norm clip (0: off)."),
    click.option("--seed", type=int, default=_D.seed, show_default=True),
    click.option("--steps", "-T", type=int, default=_D.steps, show_default=True,
                 help="T: impulses per pixel at t = 0..T-1; the window is (0, T]."),
    click.option("--time", type=click.Choice(("continuous", "discrete")), default=_D.time, show_default=True,
                 help="Engine: exact continuous time, or the official discrete-time algorithm (T steps of dt = 1)."),
    click.option("--encoder", type=click.Choice(ENCODERS), default=_D.encoder, show_default=True),
    click.option("--tau-m", type=float, default=_D.tau_m, show_default=True),
    click.option("--tau-s", type=float, default=_D.tau_s, show_default=True),
    click.option("--threshold", type=float, default=_D.threshold, show_default=True),
    click.option("--grad-kernel", type=click.Choice(["exp", "depsilon"]), default=_D.grad_kernel,
                 show_default=True, help="Backward kernel h of Eq. 12."),
    click.option("--tau-grad", type=float, default=_D.tau_grad, show_default=True),
    click.option("--desired", type=float, default=_D.desired, show_default=True,
                 help="Target spike count of the label neuron."),
    click.option("--undesired", type=float, default=_D.undesired, show_default=True,
                 help="Target spike count of the other output neurons."),
    click.option("--supervision", type=click.Choice(("auto",) + SUPERVISION), default="auto",
                 show_default=True, help="Supervisory spike of the label neuron (end: at t_end; last-rise: at "
                 "the last rising time, the official placement; auto: end in continuous time, last-rise "
                 "with --time discrete)."),
    click.option("--weight-norm/--no-weight-norm", default=_D.weight_norm, show_default=True),
    click.option("--pool", type=click.Choice(POOL_KINDS), default=_D.pool, show_default=True,
                 help="Rule of the pooling layers (Pk in --arch)."),
    click.option("--avg-spike-init", type=float, default=_D.avg_spike_init, show_default=True,
                 help="Target spikes per neuron of the gain initialisation."),
    click.option("--max-dt-du", type=float, default=_D.max_dt_du, show_default=True,
                 help="Cap on |dt/du| (0: no cap)."),
    click.option("--input-grad-scale", type=float, default=_D.input_grad_scale, show_default=True,
                 help="Scale of the input-event gradient per layer (official: 0.85; 1: off)."),
    click.option("--drop-nonpositive/--keep-nonpositive", default=_D.drop_nonpositive, show_default=True,
                 help="Drop windows whose Eq. 12 denominator is <= 0."),
    click.option("--augment", type=click.Choice(("auto",) + AUGMENT_KINDS), default="auto", show_default=True,
                 help="Training augmentation (auto: the official one of the dataset: flip for fashion_mnist, "
                      "crop-flip for cifar, none otherwise; shift: +-2 pixels, shift1: +-1; elastic: "
                      "Simard et al. 2003 distortions, see --elastic-alpha/--elastic-sigma)."),
    click.option("--elastic-alpha", type=float, default=_D.elastic_alpha, show_default=True,
                 help="Scale of the elastic displacement field, pixels (--augment elastic)."),
    click.option("--elastic-sigma", type=float, default=_D.elastic_sigma, show_default=True,
                 help="Gaussian smoothing of the elastic field, pixels (--augment elastic)."),
    click.option("--dropout", type=float, default=_D.dropout, show_default=True,
                 help="Dropout probability after every hidden layer (channel dropout after convolutions); "
                      "training only."),
    click.option("--revive/--no-revive", default=_D.revive, show_default=True,
                 help="After each epoch, recycle the units that fired on no training sample (new incoming "
                      "weights, the layer's median gain; ReDo-style, see eventsnn.revive)."),
    click.option("--grad-pieces", type=int, default=_D.grad_pieces, show_default=True,
                 help="Sum each batch's gradient from this many contiguous pieces, in order; with "
                      "--workers N, --grad-pieces N gives the same bits as one process."),
    click.option("--limit-train", type=int, default=None, help="Use the first N training images."),
    click.option("--limit-test", type=int, default=None, help="Use the first N test images."),
    click.option("--validation", type=int, default=_D.validation, show_default=True,
                 help="Hold out the last N training images; each epoch reports their accuracy and the best "
                      "epoch is kept as OUT/best.h5 (mnist: 10000 = the standard 50k/10k split)."),
    click.option("--keep-epochs/--no-keep-epochs", default=_D.keep_epochs, show_default=True,
                 help="Also keep every epoch's checkpoint as OUT/epoch-001.h5, ... (e.g. to average the "
                      "last epochs of a run: eventsnn average OUT/epoch-00[4-6].h5 --out SWA.h5)."),
]


def _train_options(f):
    for opt in reversed(TRAIN_OPTIONS):
        f = opt(f)
    return f


def _config_from_options(dataset: str, opts: dict) -> TrainConfig:
    values = {f.name: opts[f.name] for f in fields(TrainConfig) if f.name in opts}
    values["dataset"] = dataset
    if values.get("max_dt_du") in (0, 0.0):
        values["max_dt_du"] = None
    return TrainConfig(**values)


def _load_split(name: str, split: str, data_dir, limit, t_max: float | None = None):
    """Images and labels of one split (the first ``limit``); event datasets as
    :class:`~eventsnn.spikes.EventSamples` with the events up to ``t_max``."""
    from eventsnn.datasets import dataset_info, load_dataset
    from eventsnn.spikes import EventSamples

    if name in DATASETS_WITH_EVENTS:
        from eventsnn.datasets import load_nmnist

        trains, y = load_nmnist(split, data_dir, t_max=t_max,
                                indices=None if limit is None else range(limit))
        return EventSamples(trains, dataset_info(name).input_shape), y
    x, y = load_dataset(name, split, data_dir)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


@main.command()
@click.argument("dataset", required=False)
@_train_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default runs/DATASET-ARCH).")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue the run in this directory exactly where it stopped.")
@click.option("--init-from", type=click.Path(path_type=Path), default=None,
              help="Start a new run from the weights of this checkpoint (file or run directory): "
                   "fine-tuning with this command's options, fresh optimiser and schedule. The source "
                   "and its sha256 are stored in the new run's configuration.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset cache (default $EVENTSNN_DATA or ./data).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Engine: cuda (GPU, needs eventsnn[gpu]), cpu, or auto (the GPU when one is usable).")
@cluster_options
def train(dataset, out, resume, init_from, data_dir, quiet, device, scheduler, workers, **opts):
    """Train a spiking network on DATASET (e.g. mnist) with exact event-driven backpropagation.

    With --resume DIR the dataset is the run's own and DATASET may be left out.
    Writes OUT/checkpoint.h5 (atomically, after every epoch) and OUT/metrics.json.
    With --scheduler or --workers every batch is split across Dask workers
    (synchronous data-parallel: the same steps as one process, up to the order
    of floating-point sums; see docs/distributed.md).
    """
    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.datasets import dataset_checksum, dataset_info
    from eventsnn.train import train as run_training

    if resume is None and dataset is None:
        raise click.UsageError("Missing argument 'DATASET' (e.g. mnist); only --resume DIR may leave it out")
    ctx = click.get_current_context()
    device = _announce_device(select_device(device))
    cluster = Cluster(scheduler, workers)
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise click.UsageError("use either --out or --resume DIR (the run continues in DIR)")
        if init_from is not None:
            raise click.UsageError("--init-from starts a new run; a resumed run keeps its weights")
        ck = load_checkpoint(Path(resume) / "checkpoint.h5")
        if ck.averaged_from is not None:
            raise click.UsageError(f"{resume} holds an averaged network, not a run to resume; "
                                   "start a new run from it with --init-from")
        config = ck.config
        if dataset is not None and dataset != config.dataset:
            raise click.UsageError(f"{resume} holds a {config.dataset} run, not {dataset}")
        changes = {}
        for name, value in opts.items():
            src = ctx.get_parameter_source(name)
            if src is not None and src.name == "COMMANDLINE":
                stored = getattr(config, name)
                if name == "max_dt_du" and value == 0:
                    value = None
                if value != stored and value != "auto":  # auto: whatever the run resolved it to
                    if name in RESUME_MAY_CHANGE:
                        changes[name] = value
                    else:
                        raise click.UsageError(
                            f"--{name.replace('_', '-')} {value} differs from the checkpoint in {resume} "
                            f"({stored}); a resumed run keeps its configuration (only "
                            + " and ".join(f"--{n.replace('_', '-')}" for n in RESUME_MAY_CHANGE)
                            + " may change)"
                        )
        if changes:
            config = TrainConfig(**{**json.loads(config.to_json()), **changes})
        out_dir = Path(resume)
    else:
        if init_from is not None:
            from eventsnn.checkpoint import checkpoint_path, checkpoint_sha256

            src = load_checkpoint(init_from)
            if src.config.dataset != dataset:
                raise click.UsageError(f"--init-from {init_from} holds a {src.config.dataset} run, not {dataset}")
            opts = {**opts, "init_from": str(checkpoint_path(init_from)),
                    "init_from_sha256": checkpoint_sha256(init_from)}
        config = _config_from_options(dataset, opts)
        if init_from is not None:  # a source that does not fit is refused before any data is read
            from eventsnn.checkpoint import build_network, init_from_checkpoint

            info = dataset_info(dataset)
            init_from_checkpoint(build_network(config, info.n_classes, info.input_shape), init_from,
                                 config.init_from_sha256)
        out_dir = Path(out) if out is not None else Path("runs") / f"{dataset}-{config.arch}"
        if (out_dir / "checkpoint.h5").exists():
            raise click.UsageError(f"{out_dir} already holds a run (continue it with --resume {out_dir}, "
                                   "or choose another --out)")
    _check_writable(out_dir)
    x_train, y_train = _load_split(config.dataset, "train", data_dir, config.limit_train, config.t_end)
    x_test, y_test = _load_split(config.dataset, "test", data_dir, config.limit_test, config.t_end)
    checksum = dataset_checksum(config.dataset, data_dir)
    n_classes = dataset_info(config.dataset).n_classes
    n_val = config.validation
    click.echo(f"eventsnn {__version__}: training {config.arch} on {config.dataset} "
               f"({len(y_train) - n_val} train" + (f" + {n_val} validation" if n_val else "")
               + f" / {len(y_test)} test images) -> {out_dir}")
    try:
        with cluster.client() as client:
            result = run_training(config, out_dir, train_data=(x_train, y_train), test_data=(x_test, y_test),
                                  dataset_checksum=checksum, n_classes=n_classes, resume=resume is not None,
                                  progress=not quiet, log=click.echo, runner=data_parallel(client),
                                  device=device)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: the last completed epoch is saved in {out_dir / 'checkpoint.h5'}; "
                   f"continue with: eventsnn train --resume {out_dir}", err=True)
        sys.exit(130)
    hist = result["history"]
    if hist:
        click.echo(f"done: test accuracy {hist[-1]['test_accuracy']:.4f} after {hist[-1]['epoch']} epochs; "
                   f"checkpoint {out_dir / 'checkpoint.h5'}")


# -------------------------------------------------------------------------- evaluate
def _network_label(ck) -> str:
    """"DATASET ARCH (epoch N)" or "DATASET ARCH (average of N checkpoints)" of a checkpoint."""
    what = (f"average of {len(ck.averaged_from)} checkpoints" if ck.averaged_from is not None
            else f"epoch {ck.epoch}")
    return f"{ck.config.dataset} {ck.config.arch} ({what})"


def _echo_most_confused(confusion, k: int = 5) -> None:
    """Print the ``k`` most frequent errors of a confusion matrix (nothing without errors)."""
    from eventsnn.loss import most_confused

    errors = most_confused(confusion, k)
    if errors:
        click.echo("most frequent errors (true -> predicted): "
                   + ", ".join(f"{i} -> {j} ({n})" for i, j, n in errors))


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--limit-test", type=int, default=None, help="Use the first N test images.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Engine: cuda (GPU, needs eventsnn[gpu]), cpu, or auto (the GPU when one is usable).")
@cluster_options
def evaluate(checkpoint, limit_test, data_dir, as_json, quiet, device, scheduler, workers):
    """Test accuracy of a CHECKPOINT (file or run directory), time to decision and spike counts."""
    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.train import evaluate as run_eval

    if limit_test is not None and limit_test < 1:
        raise click.UsageError("--limit-test must be >= 1")
    choice = select_device(device)  # an unusable --device cuda fails before anything is read
    cluster = Cluster(scheduler, workers)
    ck = load_checkpoint(checkpoint)
    x, y = _load_split(ck.config.dataset, "test", data_dir, limit_test, ck.config.t_end)
    set_device(ck.network, _announce_device(choice, err=as_json))
    with cluster.client() as client:
        if client is None:
            res = run_eval(ck.network, x, y, ck.config, progress=not (quiet or as_json))
        else:
            from eventsnn.distributed import evaluate as dask_eval

            res = dask_eval(client, ck.network, x, y, ck.config)
    res["epoch"] = ck.epoch
    res["arch"] = ck.config.arch
    res["dataset"] = ck.config.dataset
    if ck.averaged_from is not None:
        res["averaged_from"] = ck.averaged_from
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"{_network_label(ck)}: accuracy {res['accuracy']:.4f} "
               f"on {res['n']} test images")
    ttd = res["time_to_decision"]
    click.echo(f"mean time to decision: {ttd:.3f} (model time units)" if ttd is not None
               else "mean time to decision: no output spike")
    click.echo("spikes per inference per layer: " + ", ".join(f"{s:.1f}" for s in res["spikes_per_inference"]))
    tc = res["tied_correct"]
    click.echo(f"outputs tied on the largest count (decided by the first spike): {100 * res['tied_outputs']:.2f} %"
               + ("" if tc is None else f", {100 * tc:.1f} % of them correct"))
    m = res["error_margins"]
    if sum(m):
        click.echo("errors by spike margin (predicted minus true class): "
                   + ", ".join(f"{k}{'+' if k == len(m) - 1 else ''}: {v}" for k, v in enumerate(m)))
    _echo_most_confused(res["confusion"])


# -------------------------------------------------------------------------- average
@main.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The averaged checkpoint to write (a new file).")
def average(checkpoints, out):
    """Average the weights of CHECKPOINTS (files or run directories) into one network.

    A uniform "model soup": every weight, gain and offset is the mean over the
    checkpoints. Meant for runs that share a starting point, e.g. fine-tuning
    runs of one network (--init-from). Evaluate the result with
    `eventsnn evaluate OUT`; train on from it with `eventsnn train --init-from OUT`.
    """
    from eventsnn.checkpoint import average_checkpoints, save_checkpoint

    if out.exists():
        raise click.UsageError(f"--out {out} exists; averaging writes a new file")
    ck = average_checkpoints(checkpoints)
    _check_writable(out.parent)
    save_checkpoint(out, config=ck.config, network=ck.network, epoch=ck.epoch, history=ck.history,
                    optim_state=None, dataset_checksum=ck.dataset_checksum, rng_state=None,
                    averaged_from=ck.averaged_from)
    click.echo(f"{ck.config.arch}: weights averaged over {len(ck.averaged_from)} checkpoints -> {out}")
    for src in ck.averaged_from:
        click.echo(f"  {src['path']} (epoch {src['epoch']}, sha256 {src['sha256'][:12]})")


# ------------------------------------------------------------------------------ plot
@main.group(cls=EventsnnGroup)
def plot():
    """Figures: training curves, augmentation, errors, spike rasters, membrane potentials."""


@plot.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output PNG.")
@click.option("--label", "labels", multiple=True, help="Legend label per run (default: directory name).")
@click.option("--title", default="Training curves")
def plot_curves(runs, out, labels, title):
    """Loss and accuracy per epoch of one or more RUNS (run directories or metrics.json files)."""
    from eventsnn.plot import plot_training_curves

    if labels and len(labels) != len(runs):
        raise click.UsageError(f"--label given {len(labels)} times for {len(runs)} runs")
    data = {}
    for k, run in enumerate(runs):
        hist = _run_metrics(run)[1]["history"]
        data[labels[k] if labels else (run.name if run.is_dir() else run.parent.name)] = hist
    click.echo(f"wrote {plot_training_curves(data, out, title=title)}")


def _run_metrics(run: Path) -> tuple[Path, dict]:
    """(metrics path, its contents, with a "history") of a run directory or metrics.json file;
    UsageError if unreadable."""
    path = run / "metrics.json" if run.is_dir() else run
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise click.UsageError(f"{path}: no such metrics file") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        metrics = None
    if not isinstance(metrics, dict) or "history" not in metrics:
        raise click.UsageError(f"{path}: not an eventsnn metrics.json")
    return path, metrics


@plot.command("cost")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output PNG.")
@click.option("--target-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Draw this epoch time as a line.")
@click.option("--title", default=None, help="Default: the run's name and architecture.")
def plot_cost(run, out, target_minutes, title):
    """Training-pass time and spikes per neuron of every layer, per epoch, of a RUN
    (a run directory or its metrics.json). Layers are named from the run's checkpoint.h5."""
    from eventsnn.plot import plot_training_cost

    path, metrics = _run_metrics(run)
    hist = metrics["history"]
    names = None
    ckpt = path.parent / "checkpoint.h5"
    if ckpt.exists():
        from eventsnn.checkpoint import load_checkpoint
        from eventsnn.inspect import layer_name

        net = load_checkpoint(ckpt).network
        names = [layer_name(net, i).split(" -> ")[0] for i in range(len(net.layers))]
        if hist and len(hist[-1].get("spikes_per_neuron", ())) != len(names):
            names = None
    try:
        arch = metrics["config"]["arch"]
    except (KeyError, TypeError):
        arch = "?"
    title = title or f"{path.parent.name}: {arch}"
    written = plot_training_cost(hist, out, layer_names=names, title=title,
                                 target_seconds=None if target_minutes is None else 60 * target_minutes)
    click.echo(f"wrote {written}")


@plot.command("augment")
@click.argument("dataset")
@click.option("--augment", "kind", type=click.Choice(AUGMENT_KINDS), required=True,
              help="The augmentation to show (as --augment of train).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output PNG.")
@click.option("--images", "n_images", type=click.IntRange(1, 32), default=8, show_default=True,
              help="Training images to show (the first N).")
@click.option("--draws", type=click.IntRange(1, 8), default=3, show_default=True,
              help="Augmented versions of each (one row per draw).")
@click.option("--seed", type=int, default=_D.seed, show_default=True)
@click.option("--elastic-alpha", type=float, default=_D.elastic_alpha, show_default=True)
@click.option("--elastic-sigma", type=float, default=_D.elastic_sigma, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset cache (default $EVENTSNN_DATA or ./data).")
def plot_augment(dataset, kind, out, n_images, draws, seed, elastic_alpha, elastic_sigma, data_dir):
    """The first training images of DATASET next to augmented versions of them.

    Row k is drawn the way training draws epoch k of a run with --seed on a
    training set of just these images (same functions, same parameters).
    """
    import numpy as np

    from eventsnn import augment
    from eventsnn.plot import plot_augmentation

    if dataset in DATASETS_WITH_EVENTS:
        raise click.UsageError(f"{dataset} holds events, not images: augmentation applies to images only")
    cfg = TrainConfig(dataset=dataset, augment=kind, seed=seed, elastic_alpha=elastic_alpha,
                      elastic_sigma=elastic_sigma)
    x, y = _load_split(dataset, "train", data_dir, n_images)
    versions = []
    for epoch in range(draws):
        rng = np.random.default_rng([seed, epoch])
        rng.permutation(len(x))  # the epoch's order is drawn first, as in training
        tr = augment.draw_epoch(kind, rng, len(x))
        versions.append(augment.apply_epoch(x, tr, kind, alpha=cfg.elastic_alpha, sigma=cfg.elastic_sigma))
    title = f"{dataset}: --augment {kind}" + (f" (alpha {elastic_alpha:g}, sigma {elastic_sigma:g} px)"
                                               if kind in augment.ELASTIC_KINDS else "")
    click.echo(f"wrote {plot_augmentation(x, np.stack(versions), out, title=title, labels=y)}")


@plot.command("errors")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output PNG.")
@click.option("--images", "n_images", type=click.IntRange(1, 200), default=48, show_default=True,
              help="Show at most N misclassified images (the first in test-set order).")
@click.option("--limit-test", type=click.IntRange(min=1), default=None, help="Use the first N test images.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset cache (default $EVENTSNN_DATA or ./data).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def plot_errors(checkpoint, out, n_images, limit_test, data_dir, quiet):
    """The confusion matrix of a CHECKPOINT (file or run directory) on the test set,
    next to the test images it gets wrong (event samples shown as event counts)."""
    import numpy as np

    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.loss import confusion_matrix
    from eventsnn.plot import plot_errors as draw
    from eventsnn.spikes import EventSamples
    from eventsnn.train import predict

    ck = load_checkpoint(checkpoint)
    _check_writable(out.parent)
    x, y = _load_split(ck.config.dataset, "test", data_dir, limit_test, ck.config.t_end)
    p = predict(ck.network, x, ck.config, progress=not quiet)
    pictures = (x.trains.counts().reshape(x.shape) if isinstance(x, EventSamples) else x)
    acc = float(np.mean(p.predicted == y))
    title = f"{_network_label(ck)}: {100 * acc:.2f} % on {len(y)} test images"
    written = draw(pictures, y, p.predicted, p.counts, out, max_images=n_images, title=title)
    n_wrong = int(np.sum(p.predicted != y))
    click.echo(f"wrote {written}: {n_wrong} errors of {len(y)} test images (accuracy {acc:.4f})")
    _echo_most_confused(confusion_matrix(y, p.predicted, ck.network.n_classes))


from eventsnn.cli.inspect_commands import register

register(main)
from eventsnn.cli.bench_commands import register as register_bench  # noqa: E402

register_bench(main)
from eventsnn.cli.sweep_commands import register as register_sweep  # noqa: E402

register_sweep(main)

if __name__ == "__main__":  # pragma: no cover
    main()
