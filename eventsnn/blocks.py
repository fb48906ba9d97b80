"""Composite layers: channel dropout and SEW residual (ADD) blocks, in continuous time.

Both keep the common layer interface (``forward(inputs, params, t_end)`` ->
(SpikeTrains, record); ``backward(record, grad_out, grad_params, *,
need_input_grad, forced)`` -> grads with ``events``, ``amplitudes``, ``raw``).

:class:`DropoutLayer` — training-time dropout of whole channels (conv
outputs, ``Dropout2d``) or single neurons (dense outputs): every event of a
dropped (sample, channel) is removed, every kept event has its amplitude
scaled by 1/(1 - p), so the expected input current of the next layer is
unchanged. The backward passes dL/dt of a kept event back to it unchanged
(its time is not moved by the dropout) and 0 to a dropped one; dL/da is
scaled by 1/(1 - p). Inactive (identity) when ``rng`` is None, which is how
evaluation runs; the trainer gives it a generator per epoch.

:class:`ResidualBlock` — a SEW block with ADD connection (Fang et al. 2021):
``out = conv2(conv1(x)) + shortcut(x)``; on spikes, ADD is the union of the two
event streams (an event of each stream stays an event of the sum, with its
amplitude; coincident events of one neuron simply add their currents in the
next layer). The shortcut is the identity when the channel counts agree,
else a 1x1 spiking convolution. Both convolutions keep the spatial size
("same" padding, p = (k - 1)/2). Backward: the gradient of every output event
goes back to the stream it came from; the conv path runs Eqs. 12-14 through
conv2 then conv1; the gradients of the input events are the sum of the conv
path's and the shortcut's, so the total gradient of Eq. 8 is conserved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conv_layers import ConvLayer, _shape3
from .engine.conv import PoolGrads
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains, offsets_of


@dataclass(frozen=True, eq=False)
class DropoutRecord:
    """``kept`` indices of the input events that survived; ``scale`` = 1/(1 - p);
    ``n_in_events``. ``kept`` is None for the identity (evaluation)."""

    kept: np.ndarray | None
    scale: float
    n_in_events: int


@dataclass(frozen=True, eq=False)
class PassGrads:
    """Gradients of a parameter-free layer: ``events``/``amplitudes`` of its input
    events; ``raw`` has no windows (for the trainer's diagnostics)."""

    events: np.ndarray
    amplitudes: np.ndarray
    raw: PoolGrads
    weight = None
    gain = None
    offset = None


def _no_windows(d_times, d_amps) -> PassGrads:
    return PassGrads(d_times, d_amps, PoolGrads(d_times, d_amps, np.zeros(0, dtype=np.int8)))


class DropoutLayer:
    """Dropout of channels (``in_shape`` (C, H, W)) or neurons (``in_shape`` (N,)).

    Parameters
    ----------
    in_shape : tuple of int
    p : float in [0, 1)
        Drop probability.

    Attributes
    ----------
    rng : numpy.random.Generator or None
        Active (training) when set; None (the default) makes the layer the identity.
    """

    kind = "dropout"

    def __init__(self, in_shape, p: float):
        shape = tuple(int(v) for v in np.atleast_1d(in_shape))
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.in_shape = self.out_shape = shape
        self.n_in = self.n_out = int(np.prod(shape))
        #: neurons per channel (1 for dense inputs)
        self.per_channel = int(np.prod(shape[1:])) if len(shape) == 3 else 1
        self.rng: np.random.Generator | None = None

    def parameters(self) -> dict:
        return {}

    def forward(self, inputs: SpikeTrains, params: NeuronParams | None = None, t_end: float | None = None):
        if inputs.n_neurons != self.n_in:
            raise ValueError(f"dropout expects {self.n_in} inputs, got events from {inputs.n_neurons} neurons")
        if self.rng is None or self.p == 0.0:
            return inputs, DropoutRecord(None, 1.0, inputs.n_events)
        n_chan = self.n_in // self.per_channel
        keep = self.rng.random((inputs.n_samples, n_chan)) >= self.p
        smp = inputs.samples
        kept = np.flatnonzero(keep[smp, inputs.neurons // self.per_channel])
        offsets = offsets_of(smp[kept], inputs.n_samples)
        scale = 1.0 / (1.0 - self.p)
        out = SpikeTrains(inputs.times[kept], inputs.neurons[kept], inputs.amplitudes[kept] * scale,
                          offsets, inputs.n_neurons)
        return out, DropoutRecord(kept, scale, inputs.n_events)

    def backward(self, record: DropoutRecord, grad_out, grad_params: GradParams | None = None, *,
                 need_input_grad: bool = True, forced=None, grad_amplitudes=None) -> PassGrads:
        """dL/dt of the input events (kept: unchanged, dropped: 0)."""
        if forced is not None and np.size(forced.times):
            raise ValueError("a dropout layer has no neurons to force a spike on")
        g = np.asarray(grad_out, dtype=np.float64).reshape(-1)
        if record.kept is None:
            return _no_windows(g.copy(), np.zeros_like(g))
        d_times = np.zeros(record.n_in_events)
        d_times[record.kept] = g
        return _no_windows(d_times, np.zeros(record.n_in_events))

    def __repr__(self) -> str:
        return f"DropoutLayer({self.in_shape}, p={self.p}, {'channel' if self.per_channel > 1 else 'neuron'})"


@dataclass(frozen=True, eq=False)
class BlockRecord:
    """Forward state of a :class:`ResidualBlock`: the sub-layers' records, the number of
    conv-path events and ``order`` (output event j is event ``order[j]`` of the
    concatenation [conv path, shortcut])."""

    conv1: object
    conv2: object
    shortcut: object
    n_conv_events: int
    order: np.ndarray


@dataclass(frozen=True, eq=False)
class BlockRaw:
    """Diagnostics of a block's backward: windows of all its convolutions."""

    flags: np.ndarray
    n_dropped: int
    n_nonpositive: int
    n_clamped: int


@dataclass(frozen=True, eq=False)
class BlockGrads:
    """Gradients of a :class:`ResidualBlock`: ``sublayers`` (LayerGrads of conv1, conv2
    and, when it is a projection, the shortcut), ``events``/``amplitudes`` of the
    block's input events, ``raw`` diagnostics."""

    sublayers: list
    events: np.ndarray
    amplitudes: np.ndarray
    raw: BlockRaw
    weight = None
    gain = None
    offset = None

    def parameter_grads(self) -> list:
        """Aligned with the block's :meth:`ResidualBlock.parameters`."""
        flat = []
        for lg in self.sublayers:
            flat.append(lg.weight)
            if lg.gain is not None:
                flat.extend([lg.gain, lg.offset])
        return flat


class ResidualBlock:
    """SEW residual block with ADD connection (see the module docstring).

    Parameters
    ----------
    in_shape : (C_in, H, W)
    c_out : int
    k : int
        Kernel size, odd (padding (k - 1)/2 keeps H and W).
    weight_norm : bool
    rng : numpy.random.Generator, optional
    """

    kind = "residual"

    def __init__(self, in_shape, c_out: int, k: int, *, weight_norm: bool = True,
                 rng: np.random.Generator | None = None):
        c_in, h, w = _shape3(in_shape)
        if int(k) < 1 or int(k) % 2 == 0:
            raise ValueError(f"a residual block needs an odd kernel size (same padding), got {k}")
        pad = (int(k) - 1) // 2
        rng = rng if rng is not None else np.random.default_rng()
        self.conv1 = ConvLayer((c_in, h, w), c_out, k, padding=pad, weight_norm=weight_norm, rng=rng)
        self.conv2 = ConvLayer(self.conv1.out_shape, c_out, k, padding=pad, weight_norm=weight_norm, rng=rng)
        self.shortcut = (None if c_in == c_out
                         else ConvLayer((c_in, h, w), c_out, 1, weight_norm=weight_norm, rng=rng))
        self.in_shape, self.out_shape = (c_in, h, w), self.conv2.out_shape
        self.n_in, self.n_out = c_in * h * w, self.conv2.n_out
        self.c_out, self.k = int(c_out), int(k)
        self.weight_norm = bool(weight_norm)

    @property
    def sublayers(self) -> list:
        """The spiking convolutions, in parameter order."""
        return [self.conv1, self.conv2] + ([self.shortcut] if self.shortcut is not None else [])

    def parameters(self) -> dict:
        names = ["conv1", "conv2", "shortcut"]
        return {f"{names[i]}.{k}": v for i, lay in enumerate(self.sublayers)
                for k, v in lay.parameters().items()}

    def forward(self, inputs: SpikeTrains, params: NeuronParams, t_end: float):
        if inputs.n_neurons != self.n_in:
            raise ValueError(f"residual block expects {self.n_in} inputs {self.in_shape}, "
                             f"got events from {inputs.n_neurons} neurons")
        y1, r1 = self.conv1.forward(inputs, params, t_end)
        y2, r2 = self.conv2.forward(y1, params, t_end)
        if self.shortcut is None:
            s, rs = inputs, None
        else:
            s, rs = self.shortcut.forward(inputs, params, t_end)
        times = np.concatenate([y2.times, s.times])
        neurons = np.concatenate([y2.neurons, s.neurons])
        amps = np.concatenate([y2.amplitudes, s.amplitudes])
        smp = np.concatenate([y2.samples, s.samples])
        order = np.lexsort((neurons, times, smp))
        offsets = y2.offsets + s.offsets
        out = SpikeTrains(times[order], neurons[order], amps[order], offsets, self.n_out)
        return out, BlockRecord(r1, r2, rs, y2.n_events, order)

    def backward(self, record: BlockRecord, grad_out, grad_params: GradParams | None = None, *,
                 need_input_grad: bool = True, forced=None) -> BlockGrads:
        if forced is not None and np.size(forced.times):
            raise ValueError("a residual block cannot carry supervisory spikes (it is never the output layer)")
        g = np.asarray(grad_out, dtype=np.float64).reshape(-1)
        if g.size != record.order.size:
            raise ValueError(f"grad_out must have one entry per output event ({record.order.size}), got {g.size}")
        cat = np.empty_like(g)
        cat[record.order] = g
        g_conv, g_short = cat[:record.n_conv_events], cat[record.n_conv_events:]
        lg2 = self.conv2.backward(record.conv2, g_conv, grad_params, need_input_grad=True)
        lg1 = self.conv1.backward(record.conv1, lg2.events, grad_params, need_input_grad=need_input_grad)
        subs = [lg1, lg2]
        d_times, d_amps = lg1.events, lg1.amplitudes
        if self.shortcut is None:
            if need_input_grad:
                d_times = d_times + g_short
        else:
            lgs = self.shortcut.backward(record.shortcut, g_short, grad_params, need_input_grad=need_input_grad)
            subs.append(lgs)
            if need_input_grad:
                d_times, d_amps = d_times + lgs.events, d_amps + lgs.amplitudes
        raw = BlockRaw(np.concatenate([lg.raw.flags for lg in subs]),
                       sum(int(lg.raw.n_dropped) for lg in subs),
                       sum(int(lg.raw.n_nonpositive) for lg in subs),
                       sum(int(lg.raw.n_clamped) for lg in subs))
        return BlockGrads(subs, d_times, d_amps, raw)

    def __repr__(self) -> str:
        sc = "identity" if self.shortcut is None else "1x1 conv"
        return f"ResidualBlock({self.in_shape} -> {self.out_shape}, k={self.k}, shortcut={sc})"
