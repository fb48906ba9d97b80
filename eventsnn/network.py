"""A feed-forward stack of exact SRM layers: forward over all layers, backward in reverse.

Forward: the output events of layer l are the input events of layer l + 1.
Backward (Eqs. 12-14): dL/dt of the output spikes of the last layer is mapped
to dL/dt of its input events, which are the output spikes of the layer below,
and so on down to the input events; every layer also returns the gradients of
its parameters. The sum of the spike gradients is conserved from layer to
layer (Eq. 8) unless a stabiliser is switched on.

Time mode (:meth:`Network.set_time`): "continuous" (default) runs the exact
event-driven engines; "discrete" runs every layer on the official code's
clock (:mod:`eventsnn.discrete_layers`, :mod:`eventsnn.engine.discrete`) with
the same parameters and the same result types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from .arch import ArchError, parse_arch
from .engine.sweep import ForcedSpikes, last_rise_times
from .engine import discrete as _clock
from . import discrete_layers as _clock_layers
from .blocks import DropoutLayer, ResidualBlock
from .conv_layers import ConvLayer, PoolLayer
from .layers import DenseLayer, LayerGrads
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains


@dataclass(eq=False)
class ForwardResult:
    """Result of :meth:`Network.forward`.

    Attributes
    ----------
    inputs : SpikeTrains — the input events.
    spikes : list of SpikeTrains — ``spikes[l]`` emitted by layer l (l = 0 the
        first hidden layer, -1 the output layer).
    records : list — per-layer state for the backward pass.
    t_end : float — end of the simulation window.
    time : str — "continuous" or "discrete": the engine that made ``records``.
    """

    inputs: SpikeTrains
    spikes: list
    records: list
    t_end: float
    time: str = "continuous"


@dataclass(eq=False)
class Gradients:
    """Result of :meth:`Network.backward`.

    Attributes
    ----------
    weights : list of ndarray — dL/dW of ``net.layers[l].weight`` (same shape).
    gains, offsets : list of ndarray or None — weight-standardisation parameters.
    events : list of ndarray or None — ``events[l]`` is dL/dt of the input events
        of layer l (``events[0]`` is None when ``input_grad=False``).
    layers : list of LayerGrads — everything, including the engine's flags.
    """

    weights: list
    gains: list
    offsets: list
    events: list
    layers: list = field(default_factory=list)

    def parameter_grads(self) -> list:
        """Gradients aligned with :meth:`Network.parameters` (weight, gain, offset per layer)."""
        flat = []
        for lg in self.layers:
            if hasattr(lg, "parameter_grads"):  # composite layer (residual block)
                flat.extend(lg.parameter_grads())
                continue
            if lg.weight is None:  # pooling, dropout: no parameters
                continue
            flat.append(lg.weight)
            if lg.gain is not None:
                flat.extend([lg.gain, lg.offset])
        return flat


#: Time modes of :meth:`Network.set_time`.
TIME_MODES = ("continuous", "discrete")


class Network:
    """Feed-forward spiking network trained with event-driven backpropagation.

    Build one with :meth:`from_arch`. ``net.layers[i].weight`` is a plain numpy
    array users may read and assign.
    """

    def __init__(self, layers, n_classes: int, *, params: NeuronParams | None = None,
                 t_end: float = 5.0, input_shape=None, arch: str = ""):
        self.layers = list(layers)
        self.n_classes = int(n_classes)
        self.params = params if params is not None else NeuronParams()
        self.t_end = float(t_end)
        self.input_shape = tuple(input_shape) if input_shape is not None else (self.layers[0].n_in,)
        self.arch = arch

    @classmethod
    def from_arch(cls, arch: str, n_classes: int, *, tau_m: float = 5.0, tau_s: float = 3.0,
                  threshold: float = 1.0, weight_norm: bool = True, input_shape=None,
                  seed=None, t_end: float = 5.0, pool: str = "adjusted-avg",
                  dropout: float = 0.0) -> "Network":
        """Build a network from an architecture string.

        Parameters
        ----------
        arch : str
            E.g. ``"784-800"``: 784 inputs, a dense layer of 800; or
            ``"15C5-P2-40C5-P2-300"`` (convolutions, pooling, dense; needs
            ``input_shape``). The output layer of ``n_classes`` neurons is added.
            The input size may be omitted when ``input_shape`` is given.
        n_classes : int
        tau_m, tau_s, threshold : float
            Neuron parameters (:class:`NeuronParams`).
        weight_norm : bool
            Weight standardisation with learnable gain/offset.
        input_shape : tuple of int, optional
            Shape of one input sample, (C, H, W) or (H, W) for convolutions; its
            product must equal the input size when the string gives one.
        seed : int or numpy.random.Generator, optional
            Weight initialisation.
        t_end : float
            End of the simulation window (0, t_end] (T for T impulses).
        pool : {"max", "avg", "adjusted-avg"}
            Rule of every pooling layer (``Pk`` tokens).
        dropout : float in [0, 1)
            When > 0, a :class:`~eventsnn.blocks.DropoutLayer` after every hidden
            convolution, residual block and dense layer (channel dropout after
            convolutions); active only while training.

        Examples
        --------
        >>> net = Network.from_arch("784-800", 10, seed=0)
        >>> [layer.weight.shape for layer in net.layers]
        [(800, 784), (10, 800)]
        """
        spec = parse_arch(arch)
        has_conv = any(ls.kind != "dense" for ls in spec.layers)
        if input_shape is not None:
            shape = tuple(int(v) for v in np.atleast_1d(input_shape))
            flat = int(np.prod(shape))
            if spec.n_inputs is not None and spec.n_inputs != flat:
                raise ArchError(f"architecture '{arch}' expects {spec.n_inputs} inputs but input_shape {shape} has {flat}")
        elif spec.n_inputs is not None and not has_conv:
            shape = (spec.n_inputs,)
        elif spec.n_inputs is not None:
            side = int(round(np.sqrt(spec.n_inputs)))
            if side * side != spec.n_inputs:
                raise ArchError(f"architecture '{arch}' has convolutions: give input_shape (C, H, W)")
            shape = (1, side, side)
        else:
            raise ArchError(f"architecture '{arch}' does not give the input size and no input_shape was given")
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        params = NeuronParams(tau_m, tau_s, threshold)
        layers = []
        cur = shape
        for ls in spec.layers:
            if ls.kind == "conv":
                if len(cur) == 1:
                    raise ArchError(f"architecture '{arch}': a convolution cannot follow a dense layer")
                layer = ConvLayer(cur, ls.size, ls.kernel, padding=ls.padding,
                                  weight_norm=weight_norm, rng=rng)
                cur = layer.out_shape
            elif ls.kind == "residual":
                if len(cur) == 1:
                    raise ArchError(f"architecture '{arch}': a residual block cannot follow a dense layer")
                layer = ResidualBlock(cur, ls.size, ls.kernel, weight_norm=weight_norm, rng=rng)
                cur = layer.out_shape
            elif ls.kind == "pool":
                if len(cur) == 1:
                    raise ArchError(f"architecture '{arch}': pooling cannot follow a dense layer")
                layer = PoolLayer(cur, ls.kernel, pool)
                cur = layer.out_shape
            else:
                layer = DenseLayer(int(np.prod(cur)), ls.size, weight_norm=weight_norm, rng=rng)
                cur = (ls.size,)
            layers.append(layer)
            if dropout > 0 and ls.kind != "pool":
                layers.append(DropoutLayer(cur, dropout))
        layers.append(DenseLayer(int(np.prod(cur)), int(n_classes), weight_norm=weight_norm, rng=rng))
        return cls(layers, n_classes, params=params, t_end=t_end, input_shape=shape, arch=spec.text)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    # -- time mode ----------------------------------------------------------------------
    #: "continuous" (exact event-driven engines) or "discrete" (the official clock,
    #: :mod:`eventsnn.engine.discrete`); set with :meth:`set_time`.
    time = "continuous"
    #: Clock steps over (0, t_end] in discrete time (None in continuous time).
    steps = None
    #: Discrete time: currents of every clock step through BLAS, empty steps included.
    every_step = False

    def set_time(self, time: str, steps: int | None = None, *, every_step: bool = False) -> "Network":
        """Choose the engine of :meth:`forward` / :meth:`backward`.

        Parameters
        ----------
        time : {"continuous", "discrete"}
            "discrete" runs the official clock-driven algorithm: the window (0, t_end]
            cut into ``steps`` steps of dt = t_end / steps (official: dt = 1).
        steps : int, optional
            Number of clock steps (discrete time only); default round(t_end).
        every_step : bool
            Discrete time: compute the currents of every step with one BLAS product, steps
            without input included (the official code's computation; same results, slower)
            instead of only the steps that hold events (:class:`~eventsnn.engine.discrete.Clock`).

        Returns
        -------
        Network — ``self``.
        """
        if time not in TIME_MODES:
            raise ValueError(f"time must be one of {TIME_MODES}, got {time!r}")
        if time == "continuous":
            self.time, self.steps, self.every_step = time, None, False
            return self
        clock = _clock.Clock(max(1, round(self.t_end)) if steps is None else steps, self.t_end, every_step)
        for layer in self.layers:
            if layer.kind not in _clock_layers.KINDS:
                raise ValueError(f"discrete time runs {', '.join(_clock_layers.KINDS)} layers; this "
                                 f"network has a {layer.kind} layer")
        clock.decay(self.params.tau_m, "tau_m")
        clock.decay(self.params.tau_s, "tau_s")
        self.time, self.steps, self.every_step = time, clock.steps, clock.every_step
        return self

    @property
    def readout_weighting(self) -> str:
        """Readout of this mode (:func:`eventsnn.loss.readout`): "count" in continuous time,
        "time" (the official time-weighted count) in discrete time."""
        return "time" if self.time == "discrete" else "count"

    def layer_forward(self, layer, inputs: SpikeTrains, t_end: float | None = None):
        """Forward of one layer (``layer`` or its index) in this network's time mode;
        returns (output SpikeTrains, record)."""
        layer = self.layers[layer] if isinstance(layer, (int, np.integer)) else layer
        t_end = self.t_end if t_end is None else float(t_end)
        if self.time == "continuous":
            return layer.forward(inputs, self.params, t_end)
        return _clock_layers.layer_forward(layer, inputs, self.params,
                                           _clock.Clock(self.steps, t_end, self.every_step))

    @staticmethod
    def supervision_times(result: ForwardResult, labels, rule: str):
        """Per-sample time of the label neuron's supervisory spike, for
        :func:`eventsnn.loss.count_loss` (``supervision_times``).

        Continuous time: "last-rise" -> :func:`~eventsnn.engine.sweep.last_rise_times`,
        otherwise None (the loss places it at t_end). Discrete time: the official rule on
        the clock (:func:`eventsnn.engine.discrete.supervision_times`; "end": the last
        step), NaN where no supervisory spike is added; None for "none".
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        rec = result.records[-1].engine
        if result.time == "discrete":
            return None if rule == "none" else _clock.supervision_times(rec, labels, rule)
        if rule != "last-rise":
            return None
        return last_rise_times(rec, np.arange(labels.size), labels)

    def forward(self, inputs: SpikeTrains, *, t_end: float | None = None) -> ForwardResult:
        """Forward through every layer: exact continuous time, or the clock in discrete time.

        Parameters
        ----------
        inputs : SpikeTrains
            Input events with ``n_neurons`` = the network's input size.
        t_end : float, optional
            Window end; defaults to ``self.t_end``.
        """
        t_end = self.t_end if t_end is None else float(t_end)
        if not isinstance(inputs, SpikeTrains):
            raise TypeError("inputs must be a SpikeTrains (see eventsnn.encode)")
        spikes, records = [], []
        x = inputs
        for layer in self.layers:
            x, rec = self.layer_forward(layer, x, t_end)
            spikes.append(x)
            records.append(rec)
        return ForwardResult(inputs, spikes, records, t_end, self.time)

    def backward(self, result: ForwardResult, grad_out, *, kernel: str = "exp", tau_grad: float = 2.5,
                 max_dt_du: float | None = None, input_grad_scale: float = 1.0,
                 drop_nonpositive: bool = False, forced: ForcedSpikes | None = None,
                 input_grad: bool = True) -> Gradients:
        """Reverse-time backward through every layer (Eqs. 12-14).

        Parameters
        ----------
        result : ForwardResult
        grad_out : array_like float64 (n_output_spikes,)
            dL/dt of every output spike, aligned with ``result.spikes[-1].times``.
        kernel, tau_grad : backward kernel h of Eq. 12.
        max_dt_du, input_grad_scale, drop_nonpositive :
            The official code's stabilisers (off by default; see :class:`GradParams`).
        forced : ForcedSpikes, optional
            Supervisory spikes on the output layer.
        input_grad : bool
            Also compute dL/dt of the network's input events (``events[0]``;
            default True). The trainer switches it off: images need no gradient.
        """
        gp = GradParams(kernel=kernel, tau_grad=tau_grad, max_dt_du=max_dt_du,
                        input_grad_scale=input_grad_scale, drop_nonpositive=drop_nonpositive)
        n = len(self.layers)
        out: list[LayerGrads | None] = [None] * n
        g = np.asarray(grad_out, dtype=np.float64)
        for l in range(n - 1, -1, -1):
            backward = (self.layers[l].backward if result.time == "continuous"
                        else partial(_clock_layers.layer_backward, self.layers[l]))
            lg = backward(result.records[l], g, gp, need_input_grad=(l > 0 or input_grad),
                          forced=forced if l == n - 1 else None)
            out[l] = lg
            g = lg.events
        return Gradients(
            weights=[lg.weight for lg in out], gains=[lg.gain for lg in out],  # None for pooling
            offsets=[lg.offset for lg in out],
            events=[lg.events if (l > 0 or input_grad) else None for l, lg in enumerate(out)],
            layers=out,
        )

    def parameters(self) -> list:
        """(name, array) pairs of every learnable array, in a fixed order."""
        return [(f"layers.{l}.{k}", v) for l, layer in enumerate(self.layers)
                for k, v in layer.parameters().items()]

    def __repr__(self) -> str:
        return f"Network('{self.arch}', n_classes={self.n_classes}, layers={self.layers})"
