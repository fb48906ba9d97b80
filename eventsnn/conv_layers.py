"""Convolution and pooling layers with the interface of :class:`~eventsnn.layers.DenseLayer`.

:class:`ConvLayer` — a convolution of exact SRM neurons (C_in, H, W) -> (C_out,
H_out, W_out). Its neurons see the effective kernel after weight
standardisation per output channel (official code)::

    K_eff[c] = gain_c (K[c] - mean_c) / sqrt(var_c + 1e-5) + offset_c

mean and (population) variance over the channel's C_in k k entries; ``gain``
and ``offset`` are learnable, initialised to 1 and 0. With
``weight_norm=False`` K_eff is K itself. Forward and backward (Eqs. 12-14,
dL/dK summed over all output positions) are those of
:mod:`eventsnn.engine.conv`.

:class:`PoolLayer` — non-overlapping k x k pooling in continuous time ("max",
"avg", "adjusted-avg"); no parameters. The rule for coincident spikes and the
dropped remainder rows/columns are documented in :mod:`eventsnn.engine.conv`.

Neuron indices are flattened (C, H, W) row-major, so a dense layer can follow
either layer directly (its ``n_in`` = ``n_out`` of the layer before).
"""

from __future__ import annotations

import numpy as np

from .engine.conv import (
    POOL_KINDS,
    ConvGeometry,
    PoolGeometry,
    conv_backward,
    conv_forward,
    pool_backward,
    pool_forward,
    receptive_field,
)
from .engine.sweep import ForcedSpikes
from .layers import LayerGrads, LayerRecord, WeightedLayer, cuda_engine, standardise, standardise_backward
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains


def _shape3(in_shape) -> tuple:
    try:
        shape = tuple(int(v) for v in in_shape)
    except TypeError:
        raise ValueError(f"in_shape must be (C, H, W), got {in_shape!r}") from None
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"in_shape must be (C, H, W) (or (H, W)) of positive sizes, got {in_shape!r}")
    return shape


class ConvLayer(WeightedLayer):
    """Convolution of exact SRM neurons.

    Parameters
    ----------
    in_shape : (C_in, H, W) or (H, W)
        Shape of the input (flattened row-major into neuron indices).
    c_out : int
        Output channels.
    k : int
        Kernel size (k x k).
    stride, padding : int
        Stride (>= 1) and zero padding (>= 0; padded positions have no events).
    weight_norm : bool
        Weight standardisation per output channel with learnable gain/offset (default True).
    rng : numpy.random.Generator, optional
        Initialisation: K ~ U(-1/sqrt(C_in k k), 1/sqrt(C_in k k)).

    Attributes
    ----------
    weight : ndarray float64 (C_out, C_in, k, k) — plain numpy array; assigning it
        validates the shape and writes in place (optimisers keep their reference).
    gain, offset : ndarray float64 (C_out,) — weight-standardisation parameters.
    in_shape, out_shape : tuple — (C_in, H, W) and (C_out, H_out, W_out).
    n_in, n_out : int — their products.
    """

    kind = "conv"

    def __init__(self, in_shape, c_out: int, k: int, *, stride: int = 1, padding: int = 0,
                 weight_norm: bool = True, rng: np.random.Generator | None = None):
        c_in, h, w = _shape3(in_shape)
        self.geometry = ConvGeometry(c_in, h, w, c_out, k, stride, padding)
        g = self.geometry
        self.in_shape, self.out_shape = g.in_shape, g.out_shape
        self.n_in, self.n_out = g.n_in, g.n_out
        self.c_in, self.c_out, self.k = g.c_in, g.c_out, g.k
        self.stride, self.padding = g.stride, g.padding
        self.weight_norm = bool(weight_norm)
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / np.sqrt(g.n_taps)
        self._weight = rng.uniform(-bound, bound, g.weight_shape)
        self.gain = np.ones(g.c_out)
        self.offset = np.zeros(g.c_out)

    def _standardised(self):
        flat = self._weight.reshape(self.c_out, -1)
        return standardise(flat, self.gain, self.offset)

    @property
    def effective_weight(self) -> np.ndarray:
        """What the neurons see (C_out, C_in, k, k): standardised per output channel, or
        ``weight`` itself without weight_norm."""
        if not self.weight_norm:
            return self._weight
        return self._standardised()[0].reshape(self.geometry.weight_shape)

    def receptive_field(self, neuron: int):
        """(input neuron indices, effective weights) of one output neuron."""
        return receptive_field(neuron, self.effective_weight, self.geometry)

    def parameters(self) -> dict:
        """Learnable arrays by name (views: the optimiser updates them in place)."""
        if self.weight_norm:
            return {"weight": self._weight, "gain": self.gain, "offset": self.offset}
        return {"weight": self._weight}

    def forward(self, inputs: SpikeTrains, params: NeuronParams, t_end: float, *, path: str = "auto"):
        """Exact forward; returns (output SpikeTrains, LayerRecord).

        ``path`` ("auto", "dense", "sparse") chooses how currents are computed (same result).
        """
        if inputs.n_neurons != self.n_in:
            raise ValueError(f"layer expects {self.n_in} inputs {self.in_shape}, "
                             f"got events from {inputs.n_neurons} neurons")
        if self.weight_norm:
            w_eff, w_hat, inv_std = self._standardised()
            w_eff = w_eff.reshape(self.geometry.weight_shape)
            gain = self.gain.copy()
        else:
            # a copy: the record must not change when the parameters are updated in place
            w_eff, w_hat, inv_std, gain = self._weight.copy(), None, None, None
        forward = cuda_engine().conv_forward if self.device == "cuda" else conv_forward
        out, rec = forward(inputs, w_eff, self.geometry, params, t_end, path=path)
        return out, LayerRecord(rec, w_hat, inv_std, gain)

    def backward(self, record: LayerRecord, grad_out, grad_params: GradParams | None = None, *,
                 need_input_grad: bool = True, forced: ForcedSpikes | None = None) -> LayerGrads:
        """Reverse-time backward (Eqs. 12-14, weight sharing) and the weight-standardisation
        chain rule. Uses the parameters as they were at the forward pass."""
        backward = cuda_engine().conv_backward if self.device == "cuda" else conv_backward
        raw = backward(record.engine, grad_out, grad_params, need_input_grad=need_input_grad,
                       forced=forced)
        if record.w_hat is None:
            return LayerGrads(raw.d_weight, None, None, raw.d_times, raw.d_amplitudes, raw)
        d_w, d_gain, d_offset = standardise_backward(raw.d_weight.reshape(self.c_out, -1),
                                                     record.w_hat, record.inv_std, record.gain)
        return LayerGrads(d_w.reshape(self.geometry.weight_shape), d_gain, d_offset, raw.d_times,
                          raw.d_amplitudes, raw)

    def __repr__(self) -> str:
        return (f"ConvLayer({self.in_shape} -> {self.out_shape}, k={self.k}, stride={self.stride}, "
                f"padding={self.padding}, weight_norm={self.weight_norm})")


class PoolLayer:
    """Non-overlapping k x k pooling in continuous time (no parameters).

    Parameters
    ----------
    in_shape : (C, H, W) or (H, W)
    k : int
        Window size; H and W are floored to multiples of k (the remainder is dropped).
    kind : {"max", "avg", "adjusted-avg"}
        See :mod:`eventsnn.engine.conv` (default "adjusted-avg", the official code's).
    """

    #: the layer type, as ``DenseLayer.kind`` / ``ConvLayer.kind``; the pooling rule is ``pool_kind``
    kind = "pool"
    #: the network's device (:func:`eventsnn.device.set_device`); pooling, a cheap relabelling
    #: of events, always runs on the host
    device = "cpu"

    def __init__(self, in_shape, k: int, kind: str = "adjusted-avg"):
        if kind not in POOL_KINDS:
            raise ValueError(f"pooling kind must be one of {POOL_KINDS}, got {kind!r}")
        self.geometry = PoolGeometry(*_shape3(in_shape), k)
        g = self.geometry
        self.pool_kind = kind
        self.k = g.k
        self.in_shape, self.out_shape = g.in_shape, g.out_shape
        self.n_in, self.n_out = g.n_in, g.n_out

    def parameters(self) -> dict:
        """No learnable arrays."""
        return {}

    def forward(self, inputs: SpikeTrains, params: NeuronParams | None = None,
                t_end: float | None = None):
        """Pooled events; returns (output SpikeTrains, PoolRecord). ``params`` and ``t_end``
        are accepted for the common layer interface and not used."""
        return pool_forward(inputs, self.geometry, self.pool_kind)

    def backward(self, record, grad_out, grad_params: GradParams | None = None, *,
                 need_input_grad: bool = True, forced: ForcedSpikes | None = None) -> LayerGrads:
        """dL/dt of the input events (no parameters: ``weight``, ``gain``, ``offset`` are None).
        Pooling has no stabiliser (GradParams is accepted and ignored) and no neuron to force."""
        if forced is not None and np.size(forced.times):
            raise ValueError("a pooling layer has no neurons to force a spike on")
        raw = pool_backward(record, grad_out)
        return LayerGrads(None, None, None, raw.d_times, raw.d_amplitudes, raw)

    def __repr__(self) -> str:
        return f"PoolLayer({self.in_shape} -> {self.out_shape}, k={self.k}, kind='{self.pool_kind}')"
