"""Training and evaluation: gain initialisation, the epoch loop, diagnostics, checkpoints.

One training step (Section 3.4):

1. encode the batch (normalised images as T current impulses, or latency);
2. exact forward through every layer (:meth:`Network.forward`);
3. count loss with the supervisory spike (:func:`eventsnn.loss.count_loss`);
4. reverse-time backward (Eqs. 12-14) through every layer;
5. global gradient-norm clip, AdamW step (cosine schedule per epoch).

Before the first epoch the gain of each layer is set, layer by layer on the
first 50 training samples, by a geometric binary search in [0.05, 500]
(stopping when high/low < 1.01) so that the mean spike count per neuron in the
last third of the window is ``avg_spike_init / 3``. A run started from another
run's checkpoint (``TrainConfig.init_from``, fine-tuning) takes that
checkpoint's weights instead, with a fresh AdamW state and its own cosine
schedule.

The order of the training samples in epoch e comes from
``numpy.random.default_rng([seed, e])``, so a resumed run continues exactly
where an uninterrupted one would be.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment, encode
from .allocator import keep_freed_memory
from .checkpoint import build_network, init_from_checkpoint, load_checkpoint, save_checkpoint
from .config import RESUME_MAY_CHANGE, TrainConfig
from .datasets.cifar import MEAN as CIFAR_MEAN
from .datasets.cifar import STD as CIFAR_STD
from .device import set_device
from .engine.sweep import FLAG_NO_GRADIENT
from .io import atomic_write
from .loss import confusion_matrix, count_loss, readout, tied_counts
from .network import Network
from .optim import AdamW, clip_grad_norm, cosine_lr
from .revive import revive_silent
from .spikes import EventSamples, SpikeTrains

#: Per-dataset pixel normalisation (mean, std) of the official code; per channel
#: for CIFAR (broadcast over (C, H, W) images).
NORMALISATION = {
    "mnist": (0.1307, 0.3081),
    "fashion_mnist": (0.1307, 0.3081),
    "cifar10": (np.array(CIFAR_MEAN)[:, None, None], np.array(CIFAR_STD)[:, None, None]),
    "cifar100": (np.array(CIFAR_MEAN)[:, None, None], np.array(CIFAR_STD)[:, None, None]),
}
#: Samples used for the gain initialisation.
INIT_SAMPLES = 50
#: Gain search interval and stopping ratio.
GAIN_RANGE = (0.05, 500.0)
GAIN_RATIO = 1.01
#: Bins of :func:`evaluate`'s ``error_margins``: spike margins 0, 1, 2, 3, 4 and 5 or more.
MARGIN_BINS = 6


class SilentLayerWarning(UserWarning):
    """A layer emitted no spike in a whole epoch: gradient cannot flow through it."""


def encode_images(images: np.ndarray, config: TrainConfig) -> SpikeTrains:
    """Input events of a batch of images under ``config`` (normalisation + encoder).

    Parameters
    ----------
    images : ndarray, shape (n, ...), values in [0, 1]; or EventSamples
        Event samples (e.g. N-MNIST) are the input events themselves, with their own
        times (never binned); the encoder does not apply to them.
    config : TrainConfig
    """
    if isinstance(images, EventSamples):
        return images.trains
    if isinstance(images, SpikeTrains):
        raise ValueError(f"{config.dataset}: wrap event samples in eventsnn.spikes.EventSamples "
                         "(they need their input shape)")
    x = np.asarray(images, dtype=np.float64)
    if config.encoder == "latency":
        return encode.latency(x.reshape(len(x), -1), t_max=config.t_end)
    mean, std = NORMALISATION.get(config.dataset, (0.0, 1.0))
    return encode.current(((x - mean) / std).reshape(len(x), -1), steps=config.steps)


def set_dropout(net: Network, rng: np.random.Generator | None) -> None:
    """Activate the dropout layers of ``net`` with ``rng`` (training), or switch them off (None)."""
    for layer in net.layers:
        if layer.kind == "dropout":
            layer.rng = rng


def _late_rate(spikes: SpikeTrains, t_end: float) -> float:
    """Mean number of spikes per (sample, neuron) in the last third of the window."""
    denom = max(spikes.n_samples * spikes.n_neurons, 1)
    return float(np.count_nonzero(spikes.times > t_end * 2.0 / 3.0)) / denom


def init_gains(net: Network, inputs: SpikeTrains, avg_spike_init: float) -> list:
    """Set each layer's gain by geometric binary search (see module docstring).

    With weight standardisation the per-row ``gain`` is set to the found value;
    without it the weight matrix is scaled.

    Returns
    -------
    list of float
        The gain chosen for each layer (1 for pooling and dropout layers; the first
        convolution's for a residual block, whose convolutions are searched in turn).
    """
    target = avg_spike_init / 3.0
    x = inputs
    chosen = []
    for layer in net.layers:
        if hasattr(layer, "sublayers"):  # residual block: conv1, conv2 in turn, then the shortcut
            y1, g = _search_gain(layer.conv1, x, net, target)
            _search_gain(layer.conv2, y1, net, target)
            if layer.shortcut is not None:
                _search_gain(layer.shortcut, x, net, target)
            x, _ = net.layer_forward(layer, x)
        elif not layer.parameters():  # pooling, dropout: nothing to scale
            x, _ = net.layer_forward(layer, x)
            g = 1.0
        else:
            x, g = _search_gain(layer, x, net, target)
        chosen.append(g)
    return chosen


def _search_gain(layer, x: SpikeTrains, net: Network, target: float):
    """Set one weighted layer's gain (weight-norm) or weight scale by the geometric
    binary search; returns (the layer's output at the chosen gain, the gain)."""
    base = layer.weight.copy()

    def apply(g):
        if layer.weight_norm:
            layer.gain[:] = g
        else:
            layer.weight = base * g

    lo, hi = GAIN_RANGE
    while hi / lo >= GAIN_RATIO:
        mid = math.sqrt(lo * hi)
        apply(mid)
        out, _ = net.layer_forward(layer, x)
        if _late_rate(out, net.t_end) < target:
            lo = mid
        else:
            hi = mid
    g = math.sqrt(lo * hi)
    apply(g)
    out, _ = net.layer_forward(layer, x)
    return out, g


@dataclass
class BatchStats:
    loss: float
    correct: int
    n: int
    spikes: list          # spikes per layer (sum over the batch)
    fired: list           # bool (n_neurons,) per layer: fired at least once
    n_windows: int
    n_dropped: int
    n_clamped: int


def merge_stats(parts: list) -> BatchStats:
    """The statistics of a batch from those of its parts (sums; ``fired``: or)."""
    return BatchStats(
        loss=sum(p.loss for p in parts), correct=sum(p.correct for p in parts), n=sum(p.n for p in parts),
        spikes=[sum(s) for s in zip(*(p.spikes for p in parts))],
        fired=[np.logical_or.reduce(f) for f in zip(*(p.fired for p in parts))],
        n_windows=sum(p.n_windows for p in parts), n_dropped=sum(p.n_dropped for p in parts),
        n_clamped=sum(p.n_clamped for p in parts),
    )


def batch_gradients(net: Network, images, labels, config: TrainConfig):
    """Forward, count loss and backward of one batch (no update).

    The loss is a sum over the batch, so the gradients of a batch are the sums
    of the gradients of any split of it (what data-parallel training uses).

    Returns
    -------
    grads : list of ndarray float64
        dL/dp aligned with ``net.parameters()`` (unclipped).
    stats : BatchStats
    """
    inputs = encode_images(images, config)
    result = net.forward(inputs)
    out = result.spikes[-1]
    sup_t = net.supervision_times(result, labels, config.supervision)
    cl = count_loss(out, labels, steps=config.steps, t_end=config.t_end, desired=config.desired,
                    undesired=config.undesired, supervision=config.supervision,
                    supervision_times=sup_t)
    gp = config.grad_params()
    grads = net.backward(result, cl.grad, kernel=gp.kernel, tau_grad=gp.tau_grad,
                         max_dt_du=gp.max_dt_du, input_grad_scale=gp.input_grad_scale,
                         drop_nonpositive=gp.drop_nonpositive, forced=cl.forced, input_grad=False)
    flat = grads.parameter_grads()
    pred = readout(out, weighting=net.readout_weighting, t_end=net.t_end)
    return flat, BatchStats(
        loss=cl.loss, correct=int(np.sum(pred == np.asarray(labels))), n=len(labels),
        spikes=[s.n_events for s in result.spikes],
        fired=[np.bincount(s.neurons, minlength=s.n_neurons) > 0 for s in result.spikes],
        n_windows=sum(int(np.count_nonzero((lg.raw.flags & FLAG_NO_GRADIENT) == 0)) for lg in grads.layers),
        n_dropped=sum(lg.raw.n_dropped for lg in grads.layers),
        n_clamped=sum(lg.raw.n_clamped for lg in grads.layers),
    )


def apply_gradients(opt: AdamW, grads: list, config: TrainConfig) -> float:
    """Clip ``grads`` (in place) to the global norm ``config.grad_clip`` and take one AdamW step.

    Returns the norm before clipping.
    """
    norm = clip_grad_norm(grads, config.grad_clip)
    opt.step(grads)
    return norm


def piece_bounds(a: int, b: int, n_pieces: int) -> np.ndarray:
    """Bounds of ``n_pieces`` contiguous, near-equal pieces of positions ``a:b`` (some may be empty)."""
    return a + (b - a) * np.arange(n_pieces + 1) // n_pieces


def sum_in_order(parts: list) -> list:
    """Element-wise sum of gradient lists, first to last (the order fixes the rounding)."""
    total = [g.copy() for g in parts[0]]
    for part in parts[1:]:
        for t, g in zip(total, part):
            t += g
    return total


def train_step(net: Network, opt: AdamW, images, labels, config: TrainConfig) -> BatchStats:
    """One optimisation step on a batch (:func:`batch_gradients` then :func:`apply_gradients`).

    With ``config.grad_pieces = P > 1`` the batch gradient is the sum, in order, of
    the gradients of P contiguous pieces of the batch (:func:`piece_bounds`): exactly
    what data-parallel training on P workers computes, so the two give the same bits.
    """
    if config.grad_pieces == 1:
        grads, stats = batch_gradients(net, images, labels, config)
    else:
        bounds = piece_bounds(0, len(labels), config.grad_pieces)
        parts = [batch_gradients(net, images[s:e], labels[s:e], config)
                 for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
        grads = sum_in_order([g for g, _ in parts])
        stats = merge_stats([st for _, st in parts])
    apply_gradients(opt, grads, config)
    return stats


def evaluate(net: Network, images, labels, config: TrainConfig, *, batch_size: int = 200,
             progress: bool = False) -> dict:
    """Test accuracy and what only an event-driven network can tell.

    Returns
    -------
    dict
        ``accuracy`` (fraction), ``n``, ``time_to_decision`` (mean time of the
        first output spike of the predicted class, over samples where it fired;
        model time units), ``spikes_per_inference`` (per layer, mean over samples),
        ``silent_outputs`` (share of samples without any output spike),
        ``tied_outputs`` (share of samples whose largest output count is shared,
        :func:`eventsnn.loss.tied_counts`), ``tied_correct`` (share of those
        decided correctly; None without ties), ``confusion`` (list of lists, row
        = true class, column = predicted class,
        :func:`eventsnn.loss.confusion_matrix`), ``error_margins`` (list of
        :data:`MARGIN_BINS` counts: the misclassified samples by how many more
        spikes the predicted class fired than the true class, 0 (a tie, or
        fewer: possible under the time-weighted readout), 1, 2, ..., the last
        entry that many or more).
    """
    return summarise_evaluation(evaluation_sums(net, images, labels, config, batch_size=batch_size,
                                                progress=progress))


@dataclass(frozen=True)
class Predictions:
    """Per-sample decisions of a network on a set of samples (:func:`predict`).

    Attributes
    ----------
    predicted : ndarray int64 (n_samples,)
        The readout's class (:func:`eventsnn.loss.readout`).
    counts : ndarray int64 (n_samples, n_classes)
        Output spike counts.
    first_times : ndarray float64 (n_samples, n_classes)
        First output spike of every class, +inf where it did not fire (model time units).
    """

    predicted: np.ndarray
    counts: np.ndarray
    first_times: np.ndarray


def _forward_batches(net: Network, images, config: TrainConfig, batch_size: int, progress: bool,
                     desc: str):
    """Forward passes over ``images`` in batches: yields (start, stop, result, predicted)."""
    from tqdm.auto import tqdm

    n = len(images)
    for a in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        b = min(a + batch_size, n)
        result = net.forward(encode_images(images[a:b], config))
        yield a, b, result, readout(result.spikes[-1], weighting=net.readout_weighting, t_end=net.t_end)


def predict(net: Network, images, config: TrainConfig, *, batch_size: int = 200,
            progress: bool = False) -> Predictions:
    """The readout's decision, output counts and first spikes of every sample.

    Parameters
    ----------
    net : Network
    images : ndarray (n, ...) or EventSamples
    config : TrainConfig
        Encoding of the images (as in training).
    batch_size : int
    progress : bool
        Show a progress bar.

    Returns
    -------
    Predictions
    """
    parts = [(pred, res.spikes[-1].counts(), res.spikes[-1].first_times())
             for _, _, res, pred in _forward_batches(net, images, config, batch_size, progress, "predict")]
    if not parts:
        k = net.n_classes
        return Predictions(np.zeros(0, np.int64), np.zeros((0, k), np.int64), np.zeros((0, k)))
    return Predictions(*(np.concatenate(v) for v in zip(*parts)))


def evaluation_sums(net: Network, images, labels, config: TrainConfig, *, batch_size: int = 200,
                    progress: bool = False) -> dict:
    """The sums behind :func:`evaluate` over a set of samples (add them up across parts of a test set).

    Returns
    -------
    dict
        ``n``, ``correct``, ``ttd_sum`` (sum of the decision times), ``n_decided``
        (samples where the predicted class fired), ``silent`` (samples without
        output spike), ``tied`` (samples whose largest output count is shared),
        ``tied_correct`` (those of them decided correctly), ``spikes`` (list:
        spikes per layer), ``confusion`` (list of lists: samples per true class
        and predicted class), ``error_margins`` (list: errors by spike margin,
        see :func:`evaluate`).
    """
    labels = np.asarray(labels)
    n = len(labels)
    correct = 0
    ttd, n_ttd, silent, tied, tied_correct = 0.0, 0, 0, 0, 0
    margins = np.zeros(MARGIN_BINS, dtype=np.int64)
    spikes = np.zeros(len(net.layers))
    k = net.n_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    for a, b, result, pred in _forward_batches(net, images, config, batch_size, progress, "evaluate"):
        out, y = result.spikes[-1], labels[a:b]
        correct += int(np.sum(pred == y))
        confusion += confusion_matrix(y, pred, k)
        first = out.first_times()[np.arange(b - a), pred]
        ok = np.isfinite(first)
        ttd += float(first[ok].sum())
        n_ttd += int(ok.sum())
        silent += int(np.sum(np.diff(out.offsets) == 0))
        counts = out.counts()
        is_tied = tied_counts(counts)
        tied += int(np.sum(is_tied))
        tied_correct += int(np.sum(is_tied & (pred == y)))
        wrong = np.flatnonzero(pred != y)
        margin = counts[wrong, pred[wrong]] - counts[wrong, y[wrong]]
        margins += np.bincount(np.clip(margin, 0, MARGIN_BINS - 1), minlength=MARGIN_BINS)
        spikes += [s.n_events for s in result.spikes]
    return {"n": int(n), "correct": correct, "ttd_sum": ttd, "n_decided": n_ttd, "silent": silent,
            "tied": tied, "tied_correct": tied_correct, "spikes": spikes.tolist(),
            "confusion": confusion.tolist(), "error_margins": margins.tolist()}


def summarise_evaluation(sums: dict) -> dict:
    """The metrics of :func:`evaluate` from (summed) :func:`evaluation_sums`."""
    n, n_ttd = sums["n"], sums["n_decided"]
    return {
        "accuracy": sums["correct"] / max(n, 1),
        "n": int(n),
        "time_to_decision": sums["ttd_sum"] / n_ttd if n_ttd else None,
        "spikes_per_inference": (np.asarray(sums["spikes"], dtype=np.float64) / max(n, 1)).tolist(),
        "silent_outputs": sums["silent"] / max(n, 1),
        "tied_outputs": sums["tied"] / max(n, 1),
        "tied_correct": sums["tied_correct"] / sums["tied"] if sums["tied"] else None,
        "confusion": sums["confusion"],
        "error_margins": sums["error_margins"],
    }


def _write_json_atomic(path: Path, data) -> None:
    with atomic_write(path) as fh:
        fh.write(json.dumps(data, indent=2).encode())


def train(config: TrainConfig, out_dir, *, train_data, test_data, dataset_checksum: str,
          n_classes: int = 10, resume: bool = False, progress: bool = True, log=print,
          runner=None, device: str = "cpu") -> dict:
    """Train (or resume) a network; checkpoint after every epoch.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path
        Receives ``checkpoint.h5`` (atomically, after every epoch) and ``metrics.json``.
    train_data, test_data : (images, labels)
        images float (N, ...) in [0, 1], labels int (N,); already limited.
    dataset_checksum : str
        Stored in the checkpoint; a resumed run must use the same data.
    resume : bool
        Continue from ``out_dir/checkpoint.h5``; ``config`` must equal the stored
        one except for the fields in ``config.RESUME_MAY_CHANGE`` (``epochs``, ``keep_epochs``).
    log : callable
        Receives one line of text per epoch.
    runner : step runner, optional
        Where the steps run: :class:`LocalSteps` (default, this process) or
        :class:`eventsnn.distributed.DataParallel` (Dask workers).
    device : {"cpu", "cuda", "auto"}
        Engine of the layers (:func:`eventsnn.device.set_device`); a runtime choice,
        not part of ``config`` (both engines agree to 1e-12).

    Returns
    -------
    dict
        The metrics history and the final test metrics.

    Notes
    -----
    Calls :func:`eventsnn.allocator.keep_freed_memory`: glibc keeps freed memory
    in the process between steps (fewer page faults; same results).
    """
    keep_freed_memory()
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.h5"
    (x_train, y_train), validation = split_validation(train_data, config.validation)
    x_test, y_test = test_data
    input_shape = tuple(np.shape(x_train)[1:])
    if isinstance(x_train, EventSamples) and config.augment != "none":
        raise ValueError(f"augment {config.augment!r} transforms images; {config.dataset} holds events "
                         "(use --augment none)")
    if resume:
        ck = load_checkpoint(ckpt_path)
        if ck.averaged_from is not None:
            raise ValueError(f"{ckpt_path}: an averaged network, not a run to resume (start a new run "
                             "from it with TrainConfig.init_from)")
        if ck.dataset_checksum != dataset_checksum:
            raise ValueError(f"{ckpt_path}: the checkpoint was trained on other data (checksum differs)")
        stored = json.loads(ck.config.to_json())
        given = json.loads(config.to_json())
        for name in RESUME_MAY_CHANGE:
            stored.pop(name)
            given.pop(name)
        if stored != given:
            diff = sorted(k for k in stored if stored[k] != given.get(k))
            raise ValueError(f"{ckpt_path}: configuration differs from the checkpoint in {diff}")
        net, start, history = ck.network, ck.epoch, ck.history
        set_device(net, device)
        opt = AdamW([a for _, a in net.parameters()], lr=config.lr, weight_decay=config.weight_decay)
        if ck.optim_state is not None:
            opt.load_state(ck.optim_state)
        log(f"resuming {ckpt_path} after epoch {start}")
    else:
        net = build_network(config, n_classes, input_shape)
        set_device(net, device)
        if config.init_from is not None:  # fine-tuning: the source's weights, fresh optimiser and schedule
            src = init_from_checkpoint(net, config.init_from, config.init_from_sha256)
            last = src.history[-1].get("test_accuracy") if src.history else None
            log(f"weights from {config.init_from} ('{src.config.arch}' after epoch {src.epoch}"
                + (f", test acc {last:.4f}" if last is not None else "") + ")")
        else:
            gains = init_gains(net, encode_images(x_train[:INIT_SAMPLES], config), config.avg_spike_init)
            log("initial gains: " + ", ".join(f"{g:.3g}" for g in gains))
        opt = AdamW([a for _, a in net.parameters()], lr=config.lr, weight_decay=config.weight_decay)
        start, history = 0, []
    from threadpoolctl import threadpool_limits

    # numba parallelises over samples; BLAS threads on top of it only compete for the cores
    with threadpool_limits(1, user_api="blas"):
        runner = runner if runner is not None else LocalSteps()
        runner.bind(config, net, (x_train, y_train), (x_test, y_test), progress)
        _epochs(config, net, opt, start, history, runner, len(y_train), out_dir, ckpt_path,
                dataset_checksum, progress, log, validation)
    best = best_epoch(history)
    if best is not None:
        log(f"best validation accuracy {best['validation_accuracy']:.4f} at epoch {best['epoch']} "
            f"(test accuracy {best['test_accuracy']:.4f}): {out_dir / BEST_NAME}")
    return {"history": history, "network": net, "config": config, "best": best}


#: File name of the checkpoint of the best validation epoch (``TrainConfig.validation`` > 0).
BEST_NAME = "best.h5"


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint kept after ``epoch`` (1-based) with ``TrainConfig.keep_epochs``:
    ``epoch-001.h5``, ... (zero-padded, so that a glob lists them in order)."""
    return f"epoch-{int(epoch):03d}.h5"


def split_validation(train_data, n_validation: int):
    """Hold out the last ``n_validation`` training samples.

    Parameters
    ----------
    train_data : (images, labels)
    n_validation : int
        0: no hold-out. For MNIST, 10000 holds out the standard validation
        images (the last 10 000 of the training file: the ``valid`` split of
        the pickled 50k / 10k / 10k MNIST).

    Returns
    -------
    (images, labels), (images, labels) or None
        The training samples left, and the held-out ones (None for 0).
    """
    x, y = train_data
    v = int(n_validation)
    if v == 0:
        return (x, y), None
    if not 0 < v < len(y):
        raise ValueError(f"validation must hold out fewer than the {len(y)} training samples, got {v}")
    return (x[:-v], y[:-v]), (x[-v:], y[-v:])


def best_epoch(history: list) -> dict | None:
    """The history entry of the highest validation accuracy (the earliest of ties); None without one."""
    scored = [h for h in history if h.get("validation_accuracy") is not None]
    if not scored:
        return None
    return max(scored, key=lambda h: (h["validation_accuracy"], -h["epoch"]))


def augment_images(images, transforms: augment.Transforms, config: TrainConfig):
    """A batch's images after the epoch's augmentation (``transforms``: the rows of their positions)."""
    return augment.apply_epoch(images, transforms, config.augment, alpha=config.elastic_alpha,
                               sigma=config.elastic_sigma)


class LocalSteps:
    """Runs the steps of :func:`train` in this process (the default step runner).

    A step runner has four methods, called by the epoch loop:

    * ``bind(config, net, train_data, test_data, progress)`` — once, after the
      network is built or loaded;
    * ``start_epoch(epoch, order, transforms)`` — the epoch's sample order
      and its augmentation (:class:`eventsnn.augment.Transforms`, one row per position);
    * ``step(net, opt, a, b) -> BatchStats`` — one optimisation step on the
      samples at positions ``a:b`` of the order;
    * ``evaluate(net) -> dict`` — the test metrics of :func:`evaluate`.

    :class:`eventsnn.distributed.DataParallel` is the other one.
    """

    def bind(self, config, net, train_data, test_data, progress):
        self.config, self.progress = config, progress
        self.x, self.y = train_data
        self.test = test_data

    def start_epoch(self, epoch, order, transforms):
        self.order, self.transforms = order, transforms

    def step(self, net, opt, a, b) -> BatchStats:
        idx = self.order[a:b]
        images = augment_images(self.x[idx], self.transforms[a:b], self.config)
        return train_step(net, opt, images, self.y[idx], self.config)

    def evaluate(self, net) -> dict:
        return evaluate(net, self.test[0], self.test[1], self.config, progress=self.progress)


def _epochs(config, net, opt, start, history, runner, n, out_dir, ckpt_path, dataset_checksum,
            progress, log, validation=None):
    """The epoch loop of :func:`train` (appends to ``history``, checkpoints every epoch)."""
    from tqdm.auto import tqdm

    for epoch in range(start, config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n)
        runner.start_epoch(epoch, order, augment.draw_epoch(config.augment, rng, n))
        set_dropout(net, np.random.default_rng([config.seed, epoch, 1]) if config.dropout > 0 else None)
        opt.lr = cosine_lr(config.lr, epoch, config.epochs)
        t0 = time.perf_counter()
        tot = {"loss": 0.0, "correct": 0, "n": 0, "windows": 0, "dropped": 0, "clamped": 0}
        spikes = np.zeros(len(net.layers))
        fired = [np.zeros(layer.n_out, dtype=bool) for layer in net.layers]
        bar = tqdm(range(0, n, config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        for a in bar:
            st = runner.step(net, opt, a, min(a + config.batch_size, n))
            tot["loss"] += st.loss
            tot["correct"] += st.correct
            tot["n"] += st.n
            tot["windows"] += st.n_windows
            tot["dropped"] += st.n_dropped
            tot["clamped"] += st.n_clamped
            spikes += st.spikes
            for f_acc, f in zip(fired, st.fired):
                f_acc |= f
            bar.set_postfix(loss=f"{tot['loss'] / tot['n']:.4f}", acc=f"{tot['correct'] / tot['n']:.4f}",
                            rate=f"{spikes[0] / tot['n'] / net.layers[0].n_out:.2f}")
        train_time = time.perf_counter() - t0
        set_dropout(net, None)
        test = runner.evaluate(net)
        val = (evaluate(net, validation[0], validation[1], config, progress=progress)
               if validation is not None else None)
        sizes = [layer.n_out for layer in net.layers]
        entry = {
            "epoch": epoch + 1,
            "lr": opt.lr,
            "train_loss": tot["loss"] / tot["n"],
            "train_accuracy": tot["correct"] / tot["n"],
            "test_accuracy": test["accuracy"],
            "time_to_decision": test["time_to_decision"],
            "epoch_seconds": train_time,
            "spikes_per_neuron": [float(s / tot["n"] / k) for s, k in zip(spikes, sizes)],
            "silent_neurons": [int(np.count_nonzero(~f)) for f in fired],
            "windows_dropped": tot["dropped"] / max(tot["windows"], 1),
            "windows_clamped": tot["clamped"] / max(tot["windows"], 1),
        }
        if val is not None:
            entry["validation_accuracy"] = val["accuracy"]
        history.append(entry)
        state = dict(config=config, network=net, epoch=epoch + 1, history=history,
                     dataset_checksum=dataset_checksum, rng_state=rng.bit_generator.state)
        if val is not None and best_epoch(history) is entry:
            # the network that was validated (before --revive touches it), written before
            # checkpoint.h5: a run stopped between the two repeats this epoch and writes it again
            save_checkpoint(out_dir / BEST_NAME, optim_state=opt.state(), **state)
        revived = (revive_silent(net, opt, fired, np.random.default_rng([config.seed, epoch, 2]))
                   if config.revive else None)
        if revived is not None:
            entry["revived"] = revived
        for l, f in enumerate(fired):
            if not f.any():
                warnings.warn(f"layer {l} emitted no spike in epoch {epoch + 1}: gradient is blocked there",
                              SilentLayerWarning, stacklevel=2)
        if config.keep_epochs:  # before checkpoint.h5, like best.h5: a resumed run never misses one
            save_checkpoint(out_dir / epoch_checkpoint_name(epoch + 1), optim_state=opt.state(), **state)
        save_checkpoint(ckpt_path, optim_state=opt.state(), **state)
        _write_json_atomic(out_dir / "metrics.json", {"config": json.loads(config.to_json()),
                                                      "history": history})
        log(f"epoch {epoch + 1}/{config.epochs}: loss {entry['train_loss']:.4f}  "
            f"train acc {entry['train_accuracy']:.4f}  test acc {entry['test_accuracy']:.4f}  "
            + (f"val acc {val['accuracy']:.4f}  " if val is not None else "") +
            f"spikes/neuron {' '.join(f'{r:.2f}' for r in entry['spikes_per_neuron'])}  "
            f"silent {entry['silent_neurons']}  dropped {entry['windows_dropped']:.3%}  "
            f"clamped {entry['windows_clamped']:.3%}  {train_time:.1f} s"
            + (f"  revived {revived}" if revived is not None else ""))
