"""The discrete clock against exact continuous time, at decreasing dt (``eventsnn dt-convergence``).

The same network (same weights) and the same input events are run once in
exact continuous time (the reference) and then on the official clock with T
steps of dt = t_end / T for each T (:meth:`eventsnn.network.Network.set_time`;
decay factors 1 - dt/tau, so the clock approaches continuous time as dt -> 0,
see :mod:`eventsnn.engine.discrete`). Per T and layer:

* count mismatch: the share of (sample, neuron) pairs whose spike counts differ,
  and the total |count difference| over the reference's spike total;
* spike-time error: mean |t_discrete - t_continuous| over the spikes of the
  pairs whose counts agree (k-th spike against k-th spike; model time units).
  The clock reports a spike at the start of the step whose end first reaches
  the threshold, so the error is of the order of dt per layer;
* output: the share of samples whose predicted class agrees with the
  reference and, with labels, the accuracy difference (both readouts: the
  count readout of continuous time, so that only the clock differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inspect import layer_name
from .loss import readout
from .network import Network
from .spikes import SpikeTrains

#: Default clock steps of the comparison.
CONVERGENCE_STEPS = (5, 10, 20, 50, 100, 200)


def _keys(st: SpikeTrains):
    """(pair key s n_neurons + i, rank of the spike within its pair) of every event."""
    pair = st.samples * max(st.n_neurons, 1) + st.neurons
    order = np.lexsort((st.times, pair))
    p = pair[order]
    start = np.r_[True, p[1:] != p[:-1]] if p.size else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(p.size), 0)) if p.size else p
    rank = np.empty(p.size, dtype=np.int64)
    rank[order] = np.arange(p.size) - first
    return pair, rank


def _tally(ref: SpikeTrains, other: SpikeTrains) -> np.ndarray:
    """[pairs, mismatched pairs, sum |count diff|, ref spikes, other spikes, matched spikes,
    sum |dt|, max |dt|] of ``other`` against ``ref`` (sums: they add up over batches)."""
    if ref.n_samples != other.n_samples or ref.n_neurons != other.n_neurons:
        raise ValueError("the spike trains to compare must have the same samples and neurons")
    c_ref, c_oth = ref.counts(), other.counts()
    same = (c_ref == c_oth).reshape(-1)
    pr, kr = _keys(ref)
    po, ko = _keys(other)
    width = int(max(c_ref.max(initial=0), c_oth.max(initial=0))) + 1
    ok_r, ok_o = same[pr], same[po]
    _, ir, io = np.intersect1d(pr[ok_r] * width + kr[ok_r], po[ok_o] * width + ko[ok_o],
                               assume_unique=True, return_indices=True)
    dt = np.abs(ref.times[ok_r][ir] - other.times[ok_o][io])
    return np.array([same.size, np.count_nonzero(~same), np.abs(c_ref - c_oth).sum(), c_ref.sum(),
                     c_oth.sum(), dt.size, dt.sum(), dt.max(initial=0.0)], dtype=np.float64)


def _summary(t: np.ndarray) -> dict:
    pairs, mism, cdiff, n_ref, n_oth, matched, dt_sum, dt_max = t
    return {"pairs_mismatched": float(mism / pairs) if pairs else 0.0,
            "count_error": float(cdiff / max(n_ref, 1)),
            "time_error": float(dt_sum / matched) if matched else None,
            "time_error_max": float(dt_max) if matched else None,
            "matched": int(matched), "spikes_ref": int(n_ref), "spikes_other": int(n_oth)}


def compare_spikes(ref: SpikeTrains, other: SpikeTrains) -> dict:
    """Count mismatch and spike-time error of ``other`` against ``ref`` (same batch shape).

    Returns
    -------
    dict — ``pairs_mismatched`` (share of (sample, neuron) pairs with different counts),
    ``count_error`` (sum |count difference| / reference spikes), ``time_error`` (mean
    |dt| over the matched spikes, None when none match), ``time_error_max``,
    ``matched`` (spikes compared), ``spikes_ref``, ``spikes_other``.
    """
    return _summary(_tally(ref, other))


@dataclass(frozen=True)
class ConvergenceReport:
    """Result of :func:`dt_convergence`.

    Attributes
    ----------
    t_end : float; n_samples : int
    layers : list of str — layer names.
    reference : dict — spikes per layer (total) and, with labels, accuracy of continuous time.
    rows : list of dict — per T: ``steps``, ``dt``, ``layers`` (one :func:`compare_spikes`
        dict per layer), ``agreement``, ``accuracy`` and ``accuracy_diff`` (None without labels).
    """

    t_end: float
    n_samples: int
    layers: list
    reference: dict
    rows: list

    def to_dict(self) -> dict:
        return {"t_end": self.t_end, "n_samples": self.n_samples, "layers": self.layers,
                "reference": self.reference, "rows": self.rows}


def dt_convergence(net: Network, inputs: SpikeTrains, steps=CONVERGENCE_STEPS, labels=None, *,
                   batch_size: int = 100, progress=None) -> ConvergenceReport:
    """Run ``net`` on ``inputs`` in continuous time and on the clock for each T in ``steps``.

    Parameters
    ----------
    net : Network — left in its time mode.
    inputs : SpikeTrains
    steps : sequence of int >= 1
    labels : array_like of int (n_samples,), optional — for the accuracies.
    batch_size : int — samples per forward pass (the clock's memory grows with T).
    progress : callable, optional — receives one line per T.

    Returns
    -------
    ConvergenceReport
    """
    steps = [int(t) for t in steps]
    if not steps or min(steps) < 1:
        raise ValueError(f"steps must be integers >= 1, got {steps}")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size != inputs.n_samples:
            raise ValueError(f"labels must have one entry per sample ({inputs.n_samples}), got {labels.size}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    S = inputs.n_samples
    batches = [np.arange(a, min(a + int(batch_size), S)) for a in range(0, S, int(batch_size))]
    mode, n_steps = net.time, net.steps
    try:
        net.set_time("continuous")
        ref = [net.forward(inputs.select(b)).spikes for b in batches]
        pred_ref = np.concatenate([readout(r[-1]) for r in ref]) if batches else np.zeros(0, np.int64)
        reference = {"spikes": [int(sum(r[l].n_events for r in ref)) for l in range(len(net.layers))],
                     "accuracy": None if labels is None else float(np.mean(pred_ref == labels))}
        rows = []
        for T in steps:
            net.set_time("discrete", T)
            tally = np.zeros((len(net.layers), 8))
            preds = []
            for b, r in zip(batches, ref):
                res = net.forward(inputs.select(b))
                preds.append(readout(res.spikes[-1]))
                for l, (a, d) in enumerate(zip(r, res.spikes)):
                    t = _tally(a, d)
                    tally[l, :7] += t[:7]
                    tally[l, 7] = max(tally[l, 7], t[7])
            pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
            acc = None if labels is None else float(np.mean(pred == labels))
            row = {"steps": T, "dt": net.t_end / T,
                   "layers": [_summary(t) for t in tally],
                   "agreement": float(np.mean(pred == pred_ref)) if pred.size else 1.0,
                   "accuracy": acc,
                   "accuracy_diff": None if acc is None else acc - reference["accuracy"]}
            rows.append(row)
            if progress is not None:
                progress(format_row(row))
    finally:
        net.set_time(mode, n_steps)
    return ConvergenceReport(net.t_end, inputs.n_samples,
                             [layer_name(net, l) for l in range(len(net.layers))], reference, rows)


def format_row(row: dict) -> str:
    out = row["layers"][-1]
    te = "-" if out["time_error"] is None else f"{out['time_error']:.4f}"
    hid = row["layers"][0]
    hte = "-" if hid["time_error"] is None else f"{hid['time_error']:.4f}"
    acc = "" if row["accuracy_diff"] is None else f", accuracy diff {100 * row['accuracy_diff']:+.2f} %"
    return (f"T = {row['steps']:4d} (dt = {row['dt']:.4g}): layer 0 count mismatch "
            f"{100 * hid['pairs_mismatched']:.2f} %, time error {hte}; output count mismatch "
            f"{100 * out['pairs_mismatched']:.2f} %, time error {te}; agreement "
            f"{100 * row['agreement']:.1f} %{acc}")
