"""The layers of :mod:`eventsnn.layers` and :mod:`eventsnn.conv_layers` run on a clock.

:class:`~eventsnn.network.Network` in discrete time (``net.time == "discrete"``)
calls :func:`layer_forward` / :func:`layer_backward` instead of the layers'
own exact forward and backward. The parameters are read from the layer as they
are (weight, weight standardisation, geometry, pooling rule); the computation
is :mod:`eventsnn.engine.discrete` (the official discrete-time algorithm); the
results have the layers' types (:class:`~eventsnn.layers.LayerRecord`,
:class:`~eventsnn.layers.LayerGrads`), so that training, checkpoints and the
diagnostics work unchanged. Dropout layers mask events whatever their times
and run as they are; residual blocks are not available on the clock.
"""

from __future__ import annotations

import numpy as np

from .engine import discrete
from .engine.discrete import Clock
from .engine.sweep import ForcedSpikes
from .layers import LayerGrads, LayerRecord, standardise, standardise_backward
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains

#: Layer kinds the clock runs ("dropout" masks events whatever their times: it runs as it is).
KINDS = ("dense", "conv", "pool", "dropout")


def _effective(layer):
    """(w_eff in the layer's weight shape, w_hat, inv_std, gain) as at the forward pass."""
    if not layer.weight_norm:
        # a copy: the record must not change when the parameters are updated in place
        return layer.weight.copy(), None, None, None
    w2 = layer.weight.reshape(layer.weight.shape[0], -1)
    w_eff, w_hat, inv_std = standardise(w2, layer.gain, layer.offset)
    return w_eff.reshape(layer.weight.shape), w_hat, inv_std, layer.gain.copy()


def layer_forward(layer, inputs: SpikeTrains, params: NeuronParams, clock: Clock):
    """Forward of one layer on the clock; returns (output SpikeTrains, record)."""
    if layer.kind not in KINDS:
        raise ValueError(f"discrete time runs {', '.join(KINDS)} layers, not {layer.kind!r} "
                         f"({layer!r})")
    if layer.kind == "dropout":
        return layer.forward(inputs)
    if layer.kind == "pool":
        return discrete.pool_forward(inputs, layer.geometry, layer.pool_kind, clock)
    if inputs.n_neurons != layer.n_in:
        raise ValueError(f"layer expects {layer.n_in} inputs, got events from {inputs.n_neurons} neurons")
    w_eff, w_hat, inv_std, gain = _effective(layer)
    if layer.kind == "conv":
        out, rec = discrete.conv_forward(inputs, w_eff, layer.geometry, params, clock)
    else:
        out, rec = discrete.dense_forward(inputs, w_eff, params, clock)
    return out, LayerRecord(rec, w_hat, inv_std, gain)


def layer_backward(layer, record, grad_out, grad_params: GradParams, *, need_input_grad: bool = True,
                   forced: ForcedSpikes | None = None) -> LayerGrads:
    """Backward of one layer on the clock, with the weight-standardisation chain rule."""
    if layer.kind == "dropout":
        return layer.backward(record, grad_out, grad_params, need_input_grad=need_input_grad, forced=forced)
    if layer.kind == "pool":
        if forced is not None and np.size(forced.times):
            raise ValueError("a pooling layer has no neurons to force a spike on")
        raw = discrete.pool_backward(record, grad_out)
        return LayerGrads(None, None, None, raw.d_times, raw.d_amplitudes, raw)
    raw = discrete.clock_backward(record.engine, grad_out, grad_params, need_input_grad=need_input_grad,
                                  forced=forced)
    if record.w_hat is None:
        return LayerGrads(raw.d_weight, None, None, raw.d_times, raw.d_amplitudes, raw)
    shape = raw.d_weight.shape
    d_w, d_gain, d_offset = standardise_backward(raw.d_weight.reshape(shape[0], -1), record.w_hat,
                                                 record.inv_std, record.gain)
    return LayerGrads(d_w.reshape(shape), d_gain, d_offset, raw.d_times, raw.d_amplitudes, raw)
