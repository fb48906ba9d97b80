"""Priority-queue engine: exact event-driven simulation of any network graph.

This is the reference engine of eventsnn. It simulates SRM neurons (Eqs. 1-3
of the paper) connected by an arbitrary graph -- feed-forward, recurrent, with
self-connections -- in exact continuous time. The layer sweep of
:mod:`eventsnn.engine.sweep` is faster but limited to feed-forward stacks; on
those both engines agree to the crossing solver's tolerance.

Model
-----
Neuron i has the potential::

    u_i(t) = sum over input events m with t_last < t_m <= t of c_m eps(t - t_m)
    eps(s) = A (exp(-s/tau_m) - exp(-s/tau_s)),   A = tau_m / (tau_m - tau_s)

where t_last is the time of its last spike and c_m the efficacy of event m:
``weights_in[i, j] * a_m`` for an external event of input j with amplitude
a_m, ``weights_rec[i, k]`` for a spike of neuron k (spikes have amplitude 1).
Neuron i fires at the first t in (0, t_end] where u_i reaches theta. After a
spike at t_k every input with t_m <= t_k is forgotten -- inputs arriving
exactly at t_k included -- and u restarts from 0 (no reset kernel). There is no
transmission delay: a spike of neuron k at t is an input event at t of every
neuron i with ``weights_rec[i, k] != 0``; since eps(0) = 0 it changes nothing
at t itself. A consequence of the two rules: a self-connection
``weights_rec[k, k]`` never has any effect (the spike reaches its own neuron
exactly at the spike time and is forgotten).

State of a neuron
-----------------
Each neuron carries (V, R, t_ref), its potential and synaptic trace at t_ref
(see :mod:`eventsnn.crossing`), with::

    u(t) = V exp(-(t - t_ref)/tau_m) + R eps(t - t_ref)     for t >= t_ref

An input of efficacy c at time t moves the state to t (``t_ref <- t``) and adds
c to R. A spike at t_k sets ``V = R = 0, t_ref = t_k``. Between two
inputs the potential has at most one critical point, so its first crossing of
theta on (t_ref, t_end] is found exactly by
:func:`eventsnn.crossing._first_crossing` (bracketed by the ends and the
critical point, solved by safeguarded Newton/bisection to ``rtol``).

Algorithm
---------
Per sample, a binary heap (``heapq``) holds the *predicted* spikes
``(time, neuron, version)``; the external input events, already sorted by
time, are merged with it. Repeatedly take the earliest event:

* a predicted spike whose version is no longer the neuron's current version is
  stale (the neuron received an input since) and is dropped;
* a valid predicted spike of neuron k at t_k is emitted; neuron k is reset and
  the spike is delivered at t_k to the targets of k: each target is decayed to
  t_k, receives ``w`` in R and is re-predicted (its version is bumped,
  which invalidates its previous prediction). Only these targets are touched;
* an external input time t: all external events at exactly t are applied
  together (efficacies summed per target neuron) and each touched neuron is
  re-predicted once.

Order at equal times. Spikes come before inputs at the same time, and spikes
of different neurons at the same time are emitted in neuron-index order.
Hence an input (external, or a spike of another neuron) reaching a neuron
exactly at one of its spike times is forgotten: an external input at t_k is
taken after the spike and finds ``t <= t_last``; a spike delivered at t_k
finds either ``t <= t_last`` (the target, of lower index, already fired at t_k)
or a valid prediction at exactly t_k (the target fires next, at t_k) and is
discarded in both cases. A predicted crossing at d = L = t_end - t_ref is
reported exactly at ``t_end``.

Runaway activity. Strong recurrent excitation can produce a very large number
of spikes. ``max_spikes`` bounds the number of spikes per sample; exceeding it
raises :class:`RuntimeError`.

Relation to the layer sweep. On a feed-forward stack (see
:func:`feedforward_weights`) the two engines compute the same spikes; their
times differ only at the solver tolerance (the sweep brackets each crossing by
the next input group, this engine by ``t_end``, and they sum efficacies in a
different order). A crossing within the tolerance of an input time is a tie
that the two engines may resolve differently (the sweep snaps such a spike
onto the input time and forgets that input; this engine does so only when the
times are bitwise equal).

Cost: O((E + S F) log H) per sample for E external events, S spikes of mean
fan-out F and H heap entries (stale predictions stay in the heap until they
surface). The event loop is compiled with numba and runs samples one by one.
"""

from __future__ import annotations

import heapq
import math
import numbers

import numpy as np
from numba import njit

from ..crossing import CROSSING_MAX_ITER, CROSSING_RTOL, _first_crossing
from ..kernels import _deps, _eps
from ..params import NeuronParams
from ..spikes import SpikeTrains, csr_offsets

#: Status codes of the compiled event loop.
_STATUS_OK = 0
_STATUS_MAX_SPIKES = 1


# ----------------------------------------------------------------------------------
# compiled kernels
# ----------------------------------------------------------------------------------
@njit(cache=True)
def _decay_to(j, t, V, R, t_ref, tau_m, tau_s):
    """Move the state of neuron j to time t >= t_ref[j]."""
    dt = t - t_ref[j]
    if dt > 0.0:
        if V[j] != 0.0 or R[j] != 0.0:
            V[j] = V[j] * math.exp(-dt / tau_m) + R[j] * _eps(dt, tau_m, tau_s)
            R[j] *= math.exp(-dt / tau_s)
        t_ref[j] = t


@njit(cache=True)
def _predict(j, heap, V, R, t_ref, version, pred, tau_m, tau_s, theta, t_end, rtol, max_iter):
    """Re-predict the next spike of neuron j from its state: bump its version
    (invalidating any earlier prediction) and push the new one, if any."""
    version[j] += 1
    pred[j] = np.inf
    L = t_end - t_ref[j]
    if L <= 0.0 or (V[j] == 0.0 and R[j] == 0.0):
        return
    d = _first_crossing(V[j], R[j], L, math.exp(-L / tau_m), _eps(L, tau_m, tau_s),
                        _deps(L, tau_m, tau_s),
                        tau_m, tau_s, theta, t_ref[j], rtol, max_iter)
    if d < 0.0:
        return
    tk = t_ref[j] + d if d < L else t_end
    pred[j] = tk
    heapq.heappush(heap, (tk, j, version[j]))


@njit(cache=True)
def _run_sample(ext_t, ext_src, ext_amp, in_ptr, in_tgt, in_w, rec_ptr, rec_tgt, rec_w,
                n, A, tau_m, tau_s, theta, t_end, rtol, max_iter, max_spikes):
    """Event loop of one sample.

    Parameters
    ----------
    ext_t, ext_src, ext_amp : external events sorted by time, all in [0, t_end].
    in_ptr, in_tgt, in_w : CSR by input source of the non-zero ``weights_in``
        (targets of source j: ``in_tgt[in_ptr[j]:in_ptr[j+1]]``, weights ``in_w``).
    rec_ptr, rec_tgt, rec_w : same for ``weights_rec`` by source neuron.
    n : number of neurons. A : kernel prefactor.
    max_spikes : spike budget of the sample, < 0 for none.

    Returns
    -------
    times, neurons : the emitted spikes in emission order.
    status : ``_STATUS_OK`` or ``_STATUS_MAX_SPIKES``.
    t_stop : time of the spike that exceeded ``max_spikes`` (``t_end`` if none).
    """
    V = np.zeros(n)
    R = np.zeros(n)
    t_ref = np.zeros(n)
    t_last = np.full(n, -np.inf)  # time of the last spike
    version = np.zeros(n, dtype=np.int64)
    pred = np.full(n, np.inf)  # time of the valid prediction, inf if none
    acc = np.zeros(n)
    stamp = np.full(n, -1, dtype=np.int64)
    touched = np.empty(n, dtype=np.int64)
    cap = 64
    out_t = np.empty(cap)
    out_n = np.empty(cap, dtype=np.int64)
    n_out = 0
    heap = [(np.inf, -1, -1)]  # sentinel: never popped, types the heap
    ne = ext_t.size
    ie = 0
    n_groups = 0
    while True:
        # drop stale predictions
        while heap[0][1] >= 0 and heap[0][2] != version[heap[0][1]]:
            heapq.heappop(heap)
        ts = heap[0][0]
        te = ext_t[ie] if ie < ne else np.inf
        if ts == np.inf and te == np.inf:
            break
        if ts <= te:
            # ---- a spike (spikes before inputs at equal times)
            item = heapq.heappop(heap)
            k = item[1]
            if max_spikes >= 0 and n_out >= max_spikes:
                return out_t[:n_out].copy(), out_n[:n_out].copy(), _STATUS_MAX_SPIKES, ts
            if n_out == cap:
                cap *= 2
                nt = np.empty(cap)
                nt[:n_out] = out_t[:n_out]
                out_t = nt
                nn = np.empty(cap, dtype=np.int64)
                nn[:n_out] = out_n[:n_out]
                out_n = nn
            out_t[n_out] = ts
            out_n[n_out] = k
            n_out += 1
            V[k] = 0.0
            R[k] = 0.0
            t_ref[k] = ts
            t_last[k] = ts
            version[k] += 1
            pred[k] = np.inf
            for q in range(rec_ptr[k], rec_ptr[k + 1]):
                j = rec_tgt[q]
                if ts <= t_last[j] or pred[j] == ts:
                    continue  # j fires (or fired) at ts: the input is forgotten
                _decay_to(j, ts, V, R, t_ref, tau_m, tau_s)
                R[j] += rec_w[q]
                _predict(j, heap, V, R, t_ref, version, pred, tau_m, tau_s, theta, t_end,
                         rtol, max_iter)
        else:
            # ---- all external events at time te, efficacies summed per target
            nt_ = 0
            while ie < ne and ext_t[ie] == te:
                src = ext_src[ie]
                a = ext_amp[ie]
                for q in range(in_ptr[src], in_ptr[src + 1]):
                    j = in_tgt[q]
                    if stamp[j] != n_groups:
                        stamp[j] = n_groups
                        touched[nt_] = j
                        nt_ += 1
                        acc[j] = 0.0
                    acc[j] += in_w[q] * a
                ie += 1
            n_groups += 1
            for r in range(nt_):
                j = touched[r]
                if te <= t_last[j]:
                    continue  # input exactly at a spike time: forgotten
                _decay_to(j, te, V, R, t_ref, tau_m, tau_s)
                R[j] += acc[j]
                _predict(j, heap, V, R, t_ref, version, pred, tau_m, tau_s, theta, t_end,
                         rtol, max_iter)
    return out_t[:n_out].copy(), out_n[:n_out].copy(), _STATUS_OK, t_end


# ----------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------
def _csr_by_source(weight: np.ndarray):
    """Non-zero entries of ``weight[target, source]`` grouped by source.

    Returns ``(ptr, targets, weights)``: the targets of source j are
    ``targets[ptr[j]:ptr[j+1]]`` (increasing), with weights ``weights[...]``.
    """
    wt = weight.T
    mask = wt != 0.0
    ptr = csr_offsets(mask.sum(axis=1))
    _, targets = np.nonzero(mask)
    return ptr, targets.astype(np.int64), np.ascontiguousarray(wt[mask], dtype=np.float64)


def _check_matrix(name: str, value, shape) -> np.ndarray:
    try:
        w = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 2-D array of numbers") from None
    if w.ndim != 2 or w.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or inf")
    return w


def run_network(weights_in, weights_rec, inputs: SpikeTrains, params: NeuronParams,
                t_end: float, *, rtol: float = CROSSING_RTOL,
                max_iter: int = CROSSING_MAX_ITER, max_spikes: int | None = None) -> SpikeTrains:
    """Exact event-driven simulation of a network of SRM neurons with any graph.

    Parameters
    ----------
    weights_in : array_like of float64, shape (n, inputs.n_neurons)
        ``weights_in[i, j]``: weight from external input j to neuron i; an
        external event (t, j, a) has efficacy ``weights_in[i, j] * a``.
    weights_rec : array_like of float64, shape (n, n)
        ``weights_rec[i, k]``: weight from neuron k to neuron i (efficacy of a
        spike of k). Any graph: feed-forward, recurrent, self-connections
        (which have no effect, see the module docstring).
    inputs : SpikeTrains
        External events of the batch, times >= 0. Events after ``t_end`` are
        ignored.
    params : NeuronParams
        tau_m, tau_s and threshold, shared by all neurons.
    t_end : float
        End of the simulation window (0, t_end].
    rtol : float, optional
        Relative tolerance of the crossing solver (default
        :data:`eventsnn.crossing.CROSSING_RTOL`).
    max_iter : int, optional
        Iteration limit of the crossing solver (default
        :data:`eventsnn.crossing.CROSSING_MAX_ITER`).
    max_spikes : int or None, optional
        Largest number of spikes allowed in one sample (all neurons together).
        ``None`` (default): no limit.

    Returns
    -------
    SpikeTrains
        The spikes of all ``n`` neurons (amplitude 1), ``n_samples`` equal to
        ``inputs.n_samples``, sorted by time then neuron within each sample.

    Raises
    ------
    TypeError
        If ``inputs`` is not a SpikeTrains or ``params`` not a NeuronParams.
    ValueError
        On a bad shape, a NaN or inf weight, a negative input time, or an
        invalid ``t_end``, ``rtol``, ``max_iter`` or ``max_spikes``.
    RuntimeError
        If a sample emits more than ``max_spikes`` spikes (runaway activity).

    Examples
    --------
    Two neurons; neuron 0 is driven by the input, neuron 1 only by neuron 0:

    >>> import numpy as np
    >>> from eventsnn import NeuronParams, SpikeTrains
    >>> inp = SpikeTrains([0.0], [0], [1.0], [0, 1], 1)
    >>> out = run_network([[3.0], [0.0]], [[0.0, 0.0], [4.0, 0.0]], inp,
    ...                   NeuronParams(), 10.0)
    >>> out.neurons
    array([0, 1])
    >>> bool(out.times[1] > out.times[0])
    True
    """
    if not isinstance(inputs, SpikeTrains):
        raise TypeError(f"inputs must be a SpikeTrains, got {type(inputs).__name__}")
    if not isinstance(params, NeuronParams):
        raise TypeError(f"params must be a NeuronParams, got {type(params).__name__}")
    try:
        t_end = float(t_end)
    except (TypeError, ValueError):
        raise ValueError(f"t_end must be a number, got {t_end!r}") from None
    if not math.isfinite(t_end) or t_end <= 0.0:
        raise ValueError(f"t_end must be a finite positive number, got {t_end}")
    try:
        rtol = float(rtol)
    except (TypeError, ValueError):
        raise ValueError(f"rtol must be a number, got {rtol!r}") from None
    if not math.isfinite(rtol) or rtol <= 0.0:
        raise ValueError(f"rtol must be a finite positive number, got {rtol}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if max_spikes is not None and (
        isinstance(max_spikes, bool) or not isinstance(max_spikes, numbers.Integral) or max_spikes < 0
    ):
        raise ValueError(f"max_spikes must be None or an integer >= 0, got {max_spikes!r}")
    w_rec_arr = np.asarray(weights_rec)
    if w_rec_arr.ndim != 2:
        raise ValueError(f"weights_rec must be a 2-D array (n, n), got shape {w_rec_arr.shape}")
    n = w_rec_arr.shape[0]
    w_rec = _check_matrix("weights_rec", weights_rec, (n, n))
    w_in = _check_matrix("weights_in", weights_in, (n, inputs.n_neurons))
    if inputs.n_events and inputs.times.min() < 0.0:
        raise ValueError("input event times must be >= 0 (the simulation window starts at 0)")

    in_ptr, in_tgt, in_w = _csr_by_source(w_in)
    rec_ptr, rec_tgt, rec_w = _csr_by_source(w_rec)
    budget = -1 if max_spikes is None else int(max_spikes)
    all_t, all_n, counts = [], [], np.zeros(inputs.n_samples, dtype=np.int64)
    for s in range(inputs.n_samples):
        a, b = inputs.offsets[s], inputs.offsets[s + 1]
        times = inputs.times[a:b]
        stop = int(np.searchsorted(times, t_end, side="right"))  # drop events after t_end
        if n == 0:
            continue
        t_s, n_s, status, t_stop = _run_sample(
            times[:stop], inputs.neurons[a:a + stop], inputs.amplitudes[a:a + stop],
            in_ptr, in_tgt, in_w, rec_ptr, rec_tgt, rec_w, n, params.amplitude,
            params.tau_m, params.tau_s, params.threshold, t_end, rtol, int(max_iter), budget,
        )
        if status == _STATUS_MAX_SPIKES:
            raise RuntimeError(
                f"sample {s} exceeded max_spikes={max_spikes}: spike number {max_spikes + 1} "
                f"at t={t_stop:.9g} (t_end={t_end:.9g}); runaway activity (strong recurrent "
                "excitation?): lower the weights, shorten t_end or raise max_spikes"
            )
        order = np.lexsort((n_s, t_s))
        all_t.append(t_s[order])
        all_n.append(n_s[order])
        counts[s] = t_s.size
    offsets = csr_offsets(counts)
    times = np.concatenate(all_t) if all_t else np.zeros(0)
    neurons = np.concatenate(all_n) if all_n else np.zeros(0, dtype=np.int64)
    return SpikeTrains(times, neurons, np.ones(times.size), offsets, n)


def feedforward_weights(layer_weights):
    """Block matrices of a dense feed-forward stack, for :func:`run_network`.

    Parameters
    ----------
    layer_weights : sequence of array_like, shapes (n_1, n_in), (n_2, n_1), ...
        ``layer_weights[l][i, j]``: weight from neuron j of layer l-1 (the
        external inputs for l = 0) to neuron i of layer l.

    Returns
    -------
    weights_in : ndarray of float64, shape (n, n_in)
        Rows of layer 0 hold ``layer_weights[0]``; the others are zero.
    weights_rec : ndarray of float64, shape (n, n)
        Block sub-diagonal: ``weights_rec[layer_slices[l], layer_slices[l-1]] =
        layer_weights[l]``.
    layer_slices : list of slice
        Neurons of layer l are ``layer_slices[l]`` of the ``n = n_1 + n_2 + ...``
        neurons, layers in order.

    Raises
    ------
    ValueError
        If the list is empty, a matrix is not 2-D or consecutive shapes do not chain.

    Examples
    --------
    >>> w_in, w_rec, sl = feedforward_weights([np.ones((3, 2)), np.ones((1, 3))])
    >>> w_in.shape, w_rec.shape, sl
    ((4, 2), (4, 4), [slice(0, 3, None), slice(3, 4, None)])
    """
    mats = [np.asarray(w, dtype=np.float64) for w in layer_weights]
    if not mats:
        raise ValueError("layer_weights must hold at least one matrix")
    for l, w in enumerate(mats):
        if w.ndim != 2:
            raise ValueError(f"layer_weights[{l}] must be 2-D, got shape {w.shape}")
        if l and w.shape[1] != mats[l - 1].shape[0]:
            raise ValueError(
                f"layer_weights[{l}] has {w.shape[1]} inputs but layer {l - 1} has "
                f"{mats[l - 1].shape[0]} neurons"
            )
    sizes = [w.shape[0] for w in mats]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    slices = [slice(int(starts[l]), int(starts[l + 1])) for l in range(len(mats))]
    n = int(starts[-1])
    weights_in = np.zeros((n, mats[0].shape[1]))
    weights_in[slices[0]] = mats[0]
    weights_rec = np.zeros((n, n))
    for l in range(1, len(mats)):
        weights_rec[slices[l], slices[l - 1]] = mats[l]
    return weights_in, weights_rec, slices
