"""Count loss, supervisory spike and readout (Section 3.4; official code's rules).

Count loss, per sample, with N_i the spike count of output neuron i (the
supervisory spike included) and target_i = desired for the label neuron,
undesired for the others::

    delta_i = (N_i - target_i) / T,  set to 0 when the label neuron has too many
              spikes or another neuron too few (one-sided)
    L = 1/2 sum_i delta_i^2        (summed over the batch)

Every output spike of neuron i, the supervisory one included, gets
G = dL/dt = -delta_i = (target_i - N_i)/T (positive: "move earlier").

Supervisory spike (training only): the label neuron receives a forced spike at
t_end (the paper's rule, ``"end"``) or at the last time after its last spike
where its potential was rising (the official code's rule, ``"last-rise"``,
times from :func:`eventsnn.engine.sweep.last_rise_times`); it counts in the
loss, carries gradient (see :class:`~eventsnn.engine.sweep.ForcedSpikes`) and
does not reset the neuron. ``"none"`` switches it off. In discrete time the
times come from the official rule on the clock
(:meth:`eventsnn.network.Network.supervision_times`): NaN marks a sample that
gets no supervisory spike (it would fall on a real spike).

Readout: the largest spike count wins; ties go to the earlier first spike,
then to the lower index. In discrete time the official readout applies
(``weighting="time"``): the largest time-weighted count
``sum_k (1.1 - t_k/(10 t_end))`` (t_k = n dt, so the weight is 1.1 - n/(10 T)),
ties to the lower index.

Diagnostics of the readout: :func:`confusion_matrix` (true class x predicted
class), :func:`tied_counts` (samples the first-spike tie-break decides) and
:func:`most_confused`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.sweep import ForcedSpikes
from .spikes import SpikeTrains

SUPERVISION = ("end", "last-rise", "none")
#: Readout rules of :func:`readout`.
READOUTS = ("count", "time")


@dataclass(frozen=True, eq=False)
class CountLoss:
    """Result of :func:`count_loss`.

    Attributes
    ----------
    loss : float — L summed over the batch.
    grad : ndarray float64 (n_output_spikes,) — G of every output spike.
    forced : ForcedSpikes or None — the supervisory spikes with their G.
    counts : ndarray int64 (n_samples, n_classes) — counts including the supervisory spike.
    """

    loss: float
    grad: np.ndarray
    forced: ForcedSpikes | None
    counts: np.ndarray


def count_loss(outputs: SpikeTrains, labels, *, steps: float, t_end: float, desired: float = 5.0,
               undesired: float = 1.0, supervision: str = "end",
               supervision_times=None) -> CountLoss:
    """One-sided count loss and the spike gradients G (see module docstring).

    Parameters
    ----------
    outputs : SpikeTrains
        Output-layer spikes of the batch (``n_neurons`` = number of classes).
    labels : array_like of int, shape (n_samples,)
    steps : float
        T of the loss normalisation (number of input steps).
    t_end : float
        Time of the supervisory spike ("end" rule).
    desired, undesired : float
        Target counts of the label neuron and of the others.
    supervision : {"end", "last-rise", "none"}
    supervision_times : array_like of float, shape (n_samples,), optional
        Time of each sample's supervisory spike; required for "last-rise",
        optional for "end" (default t_end), ignored for "none". NaN: that
        sample gets no supervisory spike (the discrete-time rule adds none
        where it would fall on a real spike, see
        :func:`eventsnn.engine.discrete.supervision_times`).
    """
    if supervision not in SUPERVISION:
        raise ValueError(f"supervision must be one of {SUPERVISION}, got {supervision!r}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    S, C = outputs.n_samples, outputs.n_neurons
    if labels.size != S:
        raise ValueError(f"labels must have one entry per sample ({S}), got {labels.size}")
    if S and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must lie in [0, {C})")
    counts = outputs.counts()
    rows = np.arange(S)
    if supervision == "last-rise" and supervision_times is None:
        raise ValueError('supervision="last-rise" needs supervision_times (see last_rise_times)')
    if supervision != "none" and supervision_times is not None:
        sup_t = np.asarray(supervision_times, dtype=np.float64).reshape(-1)
        if sup_t.size != S:
            raise ValueError(f"supervision_times must have one entry per sample ({S}), got {sup_t.size}")
    else:
        sup_t = np.full(S, float(t_end))
    sup = rows[~np.isnan(sup_t)] if supervision != "none" else rows[:0]  # samples with one
    counts[sup, labels[sup]] += 1
    target = np.full((S, C), float(undesired))
    target[rows, labels] = float(desired)
    delta = (counts - target) / float(steps)
    is_label = np.zeros((S, C), dtype=bool)
    is_label[rows, labels] = True
    one_sided = (is_label & (delta > 0)) | (~is_label & (delta < 0))
    delta[one_sided] = 0.0
    loss = 0.5 * float(np.sum(delta ** 2))
    G = -delta
    grad = G[outputs.samples, outputs.neurons]
    forced = None
    if supervision != "none":
        forced = ForcedSpikes(samples=sup, neurons=labels[sup], times=sup_t[sup], grads=G[sup, labels[sup]])
    return CountLoss(loss, grad, forced, counts)


def readout(outputs: SpikeTrains, *, weighting: str = "count", t_end: float | None = None) -> np.ndarray:
    """Predicted class per sample.

    Parameters
    ----------
    outputs : SpikeTrains
        Output-layer spikes.
    weighting : {"count", "time"}
        "count": largest count, ties by earlier first spike, then lower index.
        "time" (the official code's readout, discrete time): largest time-weighted
        count ``sum_k (1.1 - t_k / (10 t_end))``, ties to the lower index.
    t_end : float
        Window end; required for "time".

    Returns
    -------
    ndarray int64 (n_samples,)
    """
    if weighting not in READOUTS:
        raise ValueError(f"weighting must be one of {READOUTS}, got {weighting!r}")
    if weighting == "time":
        if t_end is None or not float(t_end) > 0:
            raise ValueError('readout weighting="time" needs t_end > 0')
        score = np.zeros((outputs.n_samples, outputs.n_neurons))
        np.add.at(score, (outputs.samples, outputs.neurons), 1.1 - outputs.times / (10.0 * float(t_end)))
        return np.argmax(score, axis=1).astype(np.int64)
    counts = outputs.counts()
    first = outputs.first_times()
    best = counts == counts.max(axis=1, keepdims=True)
    return np.argmin(np.where(best, first, np.inf), axis=1).astype(np.int64)


def confusion_matrix(labels, predicted, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    labels, predicted : array_like of int (n_samples,)
        True and predicted classes, each in ``[0, n_classes)``.
    n_classes : int

    Returns
    -------
    ndarray int64 (n_classes, n_classes)
        Row = true class, column = predicted class; the diagonal holds the
        correct decisions.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    if labels.shape != predicted.shape:
        raise ValueError(f"{labels.size} labels but {predicted.size} predictions")
    for name, v in (("labels", labels), ("predicted", predicted)):
        if v.size and (v.min() < 0 or v.max() >= n_classes):
            raise ValueError(f"{name} must lie in [0, {n_classes}), got {v.min()}..{v.max()}")
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def tied_counts(counts: np.ndarray) -> np.ndarray:
    """Samples whose largest output spike count is shared by two or more classes.

    Under the count readout (:func:`readout`) the earlier first spike decides
    these samples; a sample without any output spike counts as tied.

    Parameters
    ----------
    counts : ndarray int (n_samples, n_classes)
        Output spike counts (:meth:`~eventsnn.spikes.SpikeTrains.counts`).

    Returns
    -------
    ndarray bool (n_samples,)
    """
    counts = np.asarray(counts)
    return np.count_nonzero(counts == counts.max(axis=1, keepdims=True), axis=1) > 1


def most_confused(confusion, k: int = 5) -> list:
    """The ``k`` most frequent errors of a confusion matrix.

    Parameters
    ----------
    confusion : array_like int (n_classes, n_classes)
        Row = true class, column = predicted class (:func:`confusion_matrix`).
    k : int

    Returns
    -------
    list of (true, predicted, count)
        Off-diagonal cells with count > 0, most frequent first (ties: lower true
        class, then lower predicted class).
    """
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"a square confusion matrix expected, got shape {c.shape}")
    cells = [(int(c[i, j]), i, j) for i in range(c.shape[0]) for j in range(c.shape[1])
             if i != j and c[i, j] > 0]
    cells.sort(key=lambda v: (-v[0], v[1], v[2]))
    return [(i, j, n) for n, i, j in cells[:k]]
