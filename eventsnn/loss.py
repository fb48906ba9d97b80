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
does not reset the neuron. ``"none"`` switches it off.

Readout: the largest spike count wins; ties go to the earlier first spike,
then to the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.sweep import ForcedSpikes
from .spikes import SpikeTrains

SUPERVISION = ("end", "last-rise", "none")


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
        Time of each sample's supervisory spike; required for "last-rise"
        (ignored otherwise).
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
    if supervision == "last-rise":
        if supervision_times is None:
            raise ValueError('supervision="last-rise" needs supervision_times (see last_rise_times)')
        sup_t = np.asarray(supervision_times, dtype=np.float64).reshape(-1)
        if sup_t.size != S:
            raise ValueError(f"supervision_times must have one entry per sample ({S}), got {sup_t.size}")
    else:
        sup_t = np.full(S, float(t_end))
    if supervision != "none":
        counts[rows, labels] += 1
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
        forced = ForcedSpikes(samples=rows, neurons=labels, times=sup_t, grads=G[rows, labels])
    return CountLoss(loss, grad, forced, counts)


def readout(outputs: SpikeTrains) -> np.ndarray:
    """Predicted class per sample: largest count, ties by earlier first spike, then lower index.

    Returns
    -------
    ndarray int64 (n_samples,)
    """
    counts = outputs.counts()
    first = outputs.first_times()
    best = counts == counts.max(axis=1, keepdims=True)
    return np.argmin(np.where(best, first, np.inf), axis=1).astype(np.int64)
