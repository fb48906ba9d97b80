"""Layers of SRM neurons with learnable parameters.

:class:`DenseLayer` — a fully connected layer. Its neurons see the effective
weights, after weight standardisation (official code, always on there)::

    W_eff[i, :] = gain_i (W[i, :] - mean_i) / sqrt(var_i + 1e-5) + offset_i

with the mean and (population) variance over the row's inputs; ``gain`` and
``offset`` are learnable, initialised to 1 and 0. With ``weight_norm=False``
W_eff is W itself. The exact forward and the reverse-time backward
(Eqs. 12-14) are those of :mod:`eventsnn.engine.sweep`; the backward maps
dL/dW_eff back to dL/dW, dL/dgain and dL/doffset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .engine.sweep import DenseGrads, DenseRecord, ForcedSpikes, dense_backward, dense_forward
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains

WS_EPS = 1e-5


@njit(cache=True, parallel=True)
def _standardise(weight, gain, offset, w_eff, w_hat, inv_std):
    n_out, n_in = weight.shape
    for i in prange(n_out):
        mean = 0.0
        for j in range(n_in):
            mean += weight[i, j]
        mean /= n_in
        var = 0.0
        for j in range(n_in):
            c = weight[i, j] - mean
            var += c * c
        r = 1.0 / math.sqrt(var / n_in + WS_EPS)
        inv_std[i] = r
        for j in range(n_in):
            wh = (weight[i, j] - mean) * r
            w_hat[i, j] = wh
            w_eff[i, j] = gain[i] * wh + offset[i]


@njit(cache=True, parallel=True)
def _standardise_backward(d_eff, w_hat, inv_std, gain, d_w, d_gain, d_offset):
    n_out, n_in = d_eff.shape
    for i in prange(n_out):
        sg = 0.0
        so = 0.0
        for j in range(n_in):
            sg += d_eff[i, j] * w_hat[i, j]
            so += d_eff[i, j]
        d_gain[i] = sg
        d_offset[i] = so
        # d_hat = gain * d_eff; d_w = inv_std (d_hat - mean(d_hat) - w_hat mean(d_hat w_hat))
        m1 = gain[i] * so / n_in
        m2 = gain[i] * sg / n_in
        for j in range(n_in):
            d_w[i, j] = inv_std[i] * (gain[i] * d_eff[i, j] - m1 - w_hat[i, j] * m2)


def standardise(weight: np.ndarray, gain: np.ndarray, offset: np.ndarray):
    """Weight standardisation per output row.

    Returns
    -------
    w_eff : ndarray (n_out, n_in)
    w_hat : ndarray (n_out, n_in) — (W - mean)/sqrt(var + 1e-5)
    inv_std : ndarray (n_out,)
    """
    w = np.ascontiguousarray(weight, dtype=np.float64)
    w_eff = np.empty_like(w)
    w_hat = np.empty_like(w)
    inv_std = np.empty(w.shape[0])
    _standardise(w, np.ascontiguousarray(gain, dtype=np.float64),
                 np.ascontiguousarray(offset, dtype=np.float64), w_eff, w_hat, inv_std)
    return w_eff, w_hat, inv_std


def standardise_backward(d_eff: np.ndarray, w_hat: np.ndarray, inv_std: np.ndarray, gain: np.ndarray):
    """Gradients of W, gain and offset from the gradient of W_eff (see :func:`standardise`)."""
    d_w = np.empty_like(w_hat)
    d_gain = np.empty(w_hat.shape[0])
    d_offset = np.empty(w_hat.shape[0])
    _standardise_backward(np.ascontiguousarray(d_eff), w_hat, inv_std,
                          np.ascontiguousarray(gain, dtype=np.float64), d_w, d_gain, d_offset)
    return d_w, d_gain, d_offset


@dataclass(frozen=True, eq=False)
class LayerRecord:
    """Forward state of a layer: the engine's record and the standardisation factors."""

    engine: DenseRecord
    w_hat: np.ndarray | None
    inv_std: np.ndarray | None
    gain: np.ndarray | None


@dataclass(frozen=True, eq=False)
class LayerGrads:
    """Gradients of one layer: parameters and input events.

    Attributes
    ----------
    weight, gain, offset : ndarray — dL/dW (shape of ``layer.weight``), dL/dgain, dL/doffset
        (gain/offset are None without weight standardisation).
    events : ndarray (n_in_events,) — dL/dt of every input event (Eq. 13).
    amplitudes : ndarray (n_in_events,) — dL/da of every input event.
    raw : DenseGrads — the engine's result (flags for diagnostics).
    """

    weight: np.ndarray
    gain: np.ndarray | None
    offset: np.ndarray | None
    events: np.ndarray
    amplitudes: np.ndarray
    raw: DenseGrads


def cuda_engine():
    """The GPU engine :mod:`eventsnn.engine.cuda`, imported on first use (importing
    eventsnn never imports numba.cuda)."""
    from .engine import cuda

    return cuda


class WeightedLayer:
    """Base of the layers with a weight array: ``weight`` is a plain numpy array that
    users may read and assign (validated: same shape, finite; written in place so
    that optimisers keep their reference).

    ``device`` ("cpu" or "cuda") is the engine that runs forward and backward; set it
    with :func:`eventsnn.device.set_device` (both give the same results)."""

    _weight: np.ndarray
    device = "cpu"

    @property
    def weight(self) -> np.ndarray:
        return self._weight

    @weight.setter
    def weight(self, value):
        w = np.array(value, dtype=np.float64)
        if w.shape != self._weight.shape:
            raise ValueError(f"weight must have shape {self._weight.shape}, got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weight contains NaN or inf")
        self._weight[...] = w


class DenseLayer(WeightedLayer):
    """Fully connected layer of exact SRM neurons.

    Parameters
    ----------
    n_in, n_out : int
        Numbers of inputs and neurons.
    weight_norm : bool
        Weight standardisation with learnable gain/offset (default True).
    rng : numpy.random.Generator, optional
        Initialisation: W ~ U(-1/sqrt(n_in), 1/sqrt(n_in)).

    Attributes
    ----------
    weight : ndarray float64 (n_out, n_in) — plain numpy array, read/assign freely.
    gain, offset : ndarray float64 (n_out,) — weight-standardisation parameters.
    """

    kind = "dense"

    def __init__(self, n_in: int, n_out: int, *, weight_norm: bool = True,
                 rng: np.random.Generator | None = None):
        if int(n_in) < 1 or int(n_out) < 1:
            raise ValueError(f"a dense layer needs n_in >= 1 and n_out >= 1, got {n_in}, {n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.weight_norm = bool(weight_norm)
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / np.sqrt(self.n_in)
        self._weight = rng.uniform(-bound, bound, (self.n_out, self.n_in))
        self.gain = np.ones(self.n_out)
        self.offset = np.zeros(self.n_out)


    @property
    def effective_weight(self) -> np.ndarray:
        """What the neurons see: standardised weights, or ``weight`` itself without weight_norm."""
        if not self.weight_norm:
            return self._weight
        return standardise(self._weight, self.gain, self.offset)[0]

    def parameters(self) -> dict:
        """Learnable arrays by name (views: the optimiser updates them in place)."""
        if self.weight_norm:
            return {"weight": self._weight, "gain": self.gain, "offset": self.offset}
        return {"weight": self._weight}

    def forward(self, inputs: SpikeTrains, params: NeuronParams, t_end: float):
        """Exact forward; returns (output SpikeTrains, LayerRecord)."""
        if inputs.n_neurons != self.n_in:
            raise ValueError(f"layer expects {self.n_in} inputs, got events from {inputs.n_neurons} neurons")
        if self.weight_norm:
            w_eff, w_hat, inv_std = standardise(self._weight, self.gain, self.offset)
            gain = self.gain.copy()
        else:
            # a copy: the record must not change when the parameters are updated in place
            w_eff, w_hat, inv_std, gain = self._weight.copy(), None, None, None
        forward = cuda_engine().dense_forward if self.device == "cuda" else dense_forward
        out, rec = forward(inputs, w_eff, params, t_end)
        return out, LayerRecord(rec, w_hat, inv_std, gain)

    def backward(self, record: LayerRecord, grad_out, grad_params: GradParams, *,
                 need_input_grad: bool = True, forced: ForcedSpikes | None = None) -> LayerGrads:
        """Reverse-time backward (Eqs. 12-14) and the weight-standardisation chain rule.

        Uses the parameters as they were at the forward pass (stored in ``record``).
        """
        backward = cuda_engine().dense_backward if self.device == "cuda" else dense_backward
        raw = backward(record.engine, grad_out, grad_params, need_input_grad=need_input_grad,
                       forced=forced)
        if record.w_hat is None:
            return LayerGrads(raw.d_weight, None, None, raw.d_times, raw.d_amplitudes, raw)
        d_w, d_gain, d_offset = standardise_backward(raw.d_weight, record.w_hat, record.inv_std,
                                                     record.gain)
        return LayerGrads(d_w, d_gain, d_offset, raw.d_times, raw.d_amplitudes, raw)

    def __repr__(self) -> str:
        return f"DenseLayer({self.n_in} -> {self.n_out}, weight_norm={self.weight_norm})"
