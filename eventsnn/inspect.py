"""Look inside: how the gradient flows through the spikes (Eqs. 6, 8, 11-14).

Every function takes a network and the result of its forward pass (or the
inputs to run) and returns plain dataclasses of numpy arrays and numbers;
``to_dict()`` gives their JSON form. No stabiliser of the official code is
applied here (no |dt/du| cap, no input-gradient scale, no dropped windows):
the quantities are those of the paper's equations.

* :func:`spike_flow` — one spike: its window (t_{k-1}, t_k], every input event
  of the window with its share d t_k / d t_m of Eq. 12 (the shares sum to 1,
  Eq. 6) and, given G_k = dL/dt_k, the gradient G_k x share it passes to each
  input event (Eq. 13). The paper's Fig. 2 for one neuron.
* :func:`spike_gradients` — G of every spike of every layer for a loss
  gradient at the output (the network's backward, Eq. 13, layer by layer);
  :func:`loss_gradient` — the count loss of a training configuration.
* :func:`gradient_sums` / :func:`verify_invariance` — the total gradient
  carried by the spikes of each layer (Eq. 8) and, on sampled spikes, the
  worst |sum of shares - 1| (Eq. 6). Dense, conv, max and adjusted-avg pooling
  conserve the total; plain avg pooling loses exactly the share of the silent
  positions of its windows, sum over pooled events of g (k^2 - n)/k^2.
* :func:`gradcheck` — with h = d eps/dt, the backward's dL/dw against central
  finite differences of the exact forward simulation.
* :func:`reverse_gradient` — the reverse-gradient problem (Eq. 11, Fig. 4):
  the share of input-event gradients whose sign is opposite to
  sign(G_k) sign(w a_m), with h = d eps/dt and with h = exp (never, since h > 0).
* :func:`membrane_potential`, :func:`simulate`, :func:`save_simulation`,
  :func:`load_simulation` — spike trains of every layer and membrane traces
  with the exact resets, stored in HDF5 (atomic write).

Time is in model units throughout (one unit = one step of the official code).

Discrete time (a network or forward pass on the official clock,
``net.time == "discrete"``): :func:`spike_gradients`, :func:`gradient_sums`,
:func:`loss_gradient`, :func:`verify_invariance` (Eq. 8 only: no continuous
shares to sum) and :func:`simulate` without membrane traces work; the
functions that need continuous spike windows or differentiable spike times
raise :class:`ContinuousTimeOnly` (a ``ValueError``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .engine.conv import receptive_field
from .io import FileFormatError, atomic_h5, open_h5, read_spike_trains, write_spike_trains
from .kernels import deps, eps, h
from .network import ForwardResult, Network
from .params import GradParams
from .spikes import SpikeTrains

#: Default relative tolerance of the conservation checks (Eq. 8).
INVARIANCE_RTOL = 1e-9
#: Default tolerance of the gradient check (relative error of dL/dw).
GRADCHECK_RTOL = 1e-5
#: Default relative step of the finite differences (times the RMS weight of the layer).
GRADCHECK_STEP = 1e-5
#: Format tag of the simulation files written by :func:`save_simulation`.
SIMULATION_FORMAT = "eventsnn.simulation/1"
#: Upper bound on membrane samples (neurons x points) one simulation may store.
MAX_MEMBRANE_VALUES = 20_000_000


class ContinuousTimeOnly(ValueError):
    """An inspection that needs the exact continuous-time engine, asked of a network (or a
    forward pass) on the discrete clock."""


def require_continuous(time: str, what: str) -> None:
    """Raise :class:`ContinuousTimeOnly` unless ``time`` (a network's or a forward pass's
    ``time``) is "continuous"; ``what`` names the inspection in the message."""
    if time != "continuous":
        raise ContinuousTimeOnly(f"{what} needs exact continuous time, and this network runs on the "
                                 "discrete clock (--time discrete); verify-invariance, simulate "
                                 "(without membrane traces) and evaluate work in discrete time")


#: Layer kinds made of neurons of their own (windows, shares, membrane potentials).
NEURON_KINDS = ("dense", "conv")


def require_neurons(net: Network, l: int, what: str) -> None:
    """ValueError unless layer ``l`` of ``net`` is made of neurons (``NEURON_KINDS``)."""
    kind = net.layers[l].kind
    if kind not in NEURON_KINDS:
        kind = "pooling" if kind == "pool" else kind
        raise ValueError(f"layer {l} is a {kind} layer (no neurons of its own): {what} needs a dense "
                         "or conv layer")

# ----------------------------------------------------------------------------------
# layers, spikes and windows
# ----------------------------------------------------------------------------------
def _layer_index(net: Network, layer: int) -> int:
    n = len(net.layers)
    if not -n <= int(layer) < n:
        raise IndexError(f"layer {layer} out of range for {n} layers")
    return int(layer) % n


def layer_name(net: Network, layer: int) -> str:
    """A short readable name: ``"conv 15C5 -> (15, 24, 24)"``, ``"pool P2 max"``,
    ``"dense 800"``, ``"output (dense 10)"``."""
    l = _layer_index(net, layer)
    lay = net.layers[l]
    if lay.kind == "conv":
        pad = f"p{lay.padding}" if lay.padding else ""
        return f"conv {lay.c_out}C{lay.k}{pad} -> {tuple(lay.out_shape)}"
    if lay.kind == "pool":
        return f"pool P{lay.k} {lay.pool_kind} -> {tuple(lay.out_shape)}"
    if lay.kind == "residual":
        return f"residual R{lay.c_out}C{lay.k} -> {tuple(lay.out_shape)}"
    if lay.kind == "dropout":
        return f"dropout {lay.p:g}"
    if l == len(net.layers) - 1:
        return f"output (dense {lay.n_out})"
    return f"dense {lay.n_out}"


def spike_index(trains: SpikeTrains, sample: int, neuron: int, spike: int) -> int:
    """Index in ``trains`` (flat, all samples) of the ``spike``-th spike of ``neuron`` in ``sample``.

    Raises
    ------
    IndexError
        If the sample does not exist or the neuron fired fewer times.
    """
    if not -trains.n_samples <= sample < trains.n_samples:
        raise IndexError(f"sample {sample} out of range for {trains.n_samples} samples")
    s = sample % trains.n_samples
    a, b = trains.offsets[s], trains.offsets[s + 1]
    mine = a + np.flatnonzero(trains.neurons[a:b] == neuron)
    if not 0 <= spike < mine.size:
        raise IndexError(f"neuron {neuron} fired {mine.size} times in sample {s}: no spike {spike}")
    return int(mine[spike])


class _LayerView:
    """The input events of one dense or conv layer and the effective weights its forward used."""

    def __init__(self, net: Network, result: ForwardResult, layer: int):
        require_continuous(result.time, "looking into a spike's window (Eqs. 6, 12)")
        self.index = _layer_index(net, layer)
        lay = net.layers[self.index]
        require_neurons(net, self.index, "looking into a spike's window")
        self.kind = lay.kind
        self.layer = lay
        self.inputs = result.inputs if self.index == 0 else result.spikes[self.index - 1]
        self.outputs = result.spikes[self.index]
        self.weight = result.records[self.index].engine.weight  # as used by the forward pass
        self.t_end = result.t_end
        self.params = net.params

    def neuron_inputs(self, sample: int, neuron: int):
        """(sources, times, amplitudes, weights) of the input events reaching ``neuron`` in
        ``sample`` with t <= t_end, in time order."""
        inp = self.inputs
        a, b = inp.offsets[sample], inp.offsets[sample + 1]
        src, t, amp = inp.neurons[a:b], inp.times[a:b], inp.amplitudes[a:b]
        keep = t <= self.t_end
        if self.kind == "conv":
            rf, wts = receptive_field(neuron, self.weight, self.layer.geometry)
            row = np.zeros(inp.n_neurons)
            row[rf] = wts
            reach = np.zeros(inp.n_neurons, dtype=bool)
            reach[rf] = True
            keep &= reach[src]
        else:
            row = self.weight[neuron]
        src, t, amp = src[keep], t[keep], amp[keep]
        return src, t, amp, row[src]

    def spike_times(self, sample: int, neuron: int) -> np.ndarray:
        out = self.outputs
        a, b = out.offsets[sample], out.offsets[sample + 1]
        return out.times[a:b][out.neurons[a:b] == neuron]


def _window(t_in: np.ndarray, t_out: np.ndarray, k: int) -> slice:
    """Indices (a slice of the time-sorted inputs) of the window (t_{k-1}, t_k] of spike k."""
    lo = np.searchsorted(t_in, t_out[k - 1], side="right") if k else 0
    hi = np.searchsorted(t_in, t_out[k], side="right")
    return slice(int(lo), int(hi))


def _shares(c, lags, kernel, params, tau_grad):
    """(h values, Eq. 12 denominator, shares) of one window; shares NaN if the denominator is 0."""
    hv = h(lags, kernel, tau_m=params.tau_m, tau_s=params.tau_s, tau_grad=tau_grad)
    num = c * hv
    denom = float(np.sum(num))
    shares = num / denom if denom != 0.0 else np.full(num.size, np.nan)
    return hv, denom, shares


def _sample_spikes(trains: SpikeTrains, max_spikes, rng, candidates=None) -> np.ndarray:
    """Indices of at most ``max_spikes`` spikes (all when ``max_spikes`` is None), sorted."""
    idx = np.arange(trains.n_events) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if max_spikes is not None and idx.size > max_spikes:
        idx = np.sort(rng.choice(idx, size=int(max_spikes), replace=False))
    return idx


def _by_neuron(trains: SpikeTrains, spikes: np.ndarray):
    """Group spike indices by (sample, neuron): yields (sample, neuron, [(index, rank k)])."""
    smp = trains.samples
    groups: dict = {}
    for i in spikes:
        groups.setdefault((int(smp[i]), int(trains.neurons[i])), []).append(int(i))
    for (s, n), members in groups.items():
        a, b = trains.offsets[s], trains.offsets[s + 1]
        mine = a + np.flatnonzero(trains.neurons[a:b] == n)
        rank = {int(m): r for r, m in enumerate(mine)}
        yield s, n, [(i, rank[i]) for i in members]


# ----------------------------------------------------------------------------------
# one spike (Fig. 2)
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SpikeFlow:
    """The window of one output spike and how its gradient is shared.

    Attributes
    ----------
    layer, sample, neuron, spike : int
        Which spike: the ``spike``-th spike (0-based) of ``neuron`` in ``layer``
        for ``sample``.
    time : float
        t_k (model time units).
    window : (float, float)
        (t_{k-1}, t_k]; for the first spike (0, t_k], whose window also holds the
        events at t = 0.
    sources, times, amplitudes, weights, h, shares : ndarray (n_window,)
        For every input event of the window: source neuron, time, amplitude,
        effective weight, h(t_k - t_m) and d t_k / d t_m (Eq. 12).
    share_sum : float
        Sum of the shares (Eq. 6: 1 up to rounding).
    slope : float
        u'(t_k), the true slope at the crossing.
    kernel : str
    grad : float
        G_k = dL/dt_k when given to :func:`spike_flow` (NaN otherwise).
    """

    layer: int
    sample: int
    neuron: int
    spike: int
    time: float
    window: tuple
    sources: np.ndarray
    times: np.ndarray
    amplitudes: np.ndarray
    weights: np.ndarray
    h: np.ndarray
    shares: np.ndarray
    share_sum: float
    slope: float
    kernel: str
    grad: float = math.nan

    def gradient_shares(self, grad: float | None = None) -> np.ndarray:
        """dL/dt_m of each window event given G_k (default: :attr:`grad`), Eq. 13 for this spike alone."""
        return (self.grad if grad is None else grad) * self.shares

    def to_dict(self) -> dict:
        """JSON-ready form (every input event of the window as one record)."""
        g = self.gradient_shares() if math.isfinite(self.grad) else np.full(self.shares.size, math.nan)
        return {
            "layer": self.layer, "sample": self.sample, "neuron": self.neuron, "spike": self.spike,
            "time": self.time, "window": list(self.window), "slope": self.slope,
            "kernel": self.kernel, "grad": _num(self.grad), "share_sum": _num(self.share_sum),
            "gradient_sum": _num(float(np.sum(g))),
            "inputs": [
                {"source": int(s), "time": float(t), "amplitude": float(a), "weight": float(w),
                 "h": float(hv), "share": _num(float(sh)), "gradient": _num(float(gg))}
                for s, t, a, w, hv, sh, gg in zip(self.sources, self.times, self.amplitudes,
                                                   self.weights, self.h, self.shares, g)
            ],
        }


def _num(x):
    """A float for JSON (None for NaN / inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def spike_flow(net: Network, result: ForwardResult, *, sample: int, layer: int, neuron: int,
               spike: int = 0, kernel: str = "exp", tau_grad: float = 2.5,
               grad: float | None = None) -> SpikeFlow:
    """The gradient flow of one spike: its window, its input events and their Eq. 12 shares.

    Parameters
    ----------
    net : Network
    result : ForwardResult
        From ``net.forward``.
    sample, layer, neuron, spike : int
        The spike to inspect (``layer`` may be negative, -1 = output layer).
    kernel : {"exp", "depsilon"}
    tau_grad : float
    grad : float, optional
        G_k = dL/dt_k of the spike (e.g. from :func:`spike_gradients`); stored in
        :attr:`SpikeFlow.grad`.

    Returns
    -------
    SpikeFlow

    Raises
    ------
    IndexError
        If the sample, layer or neuron does not exist or the neuron has fewer spikes.
    ValueError
        If the layer is a pooling layer.
    """
    GradParams(kernel=kernel, tau_grad=tau_grad)
    view = _LayerView(net, result, layer)
    out = view.outputs
    if not -out.n_samples <= sample < out.n_samples:
        raise IndexError(f"sample {sample} out of range for {out.n_samples} samples")
    sample %= out.n_samples
    if not 0 <= neuron < out.n_neurons:
        raise IndexError(f"neuron {neuron} out of range for {out.n_neurons} neurons of layer {view.index}")
    times_out = view.spike_times(sample, neuron)
    if not 0 <= spike < times_out.size:
        raise IndexError(f"neuron {neuron} of layer {view.index} fired {times_out.size} times in "
                         f"sample {sample}: no spike {spike}")
    src, t_in, amp, w = view.neuron_inputs(sample, neuron)
    win = _window(t_in, times_out, spike)
    tk = float(times_out[spike])
    lags = tk - t_in[win]
    c = w[win] * amp[win]
    p = net.params
    hv, _, shares = _shares(c, lags, kernel, p, tau_grad)
    slope = float(np.sum(c * deps(lags, p.tau_m, p.tau_s)))
    return SpikeFlow(
        layer=view.index, sample=sample, neuron=int(neuron), spike=int(spike), time=tk,
        window=(float(times_out[spike - 1]) if spike else 0.0, tk), sources=src[win],
        times=t_in[win], amplitudes=amp[win], weights=w[win], h=hv, shares=shares,
        share_sum=float(np.sum(shares)), slope=slope, kernel=kernel,
        grad=math.nan if grad is None else float(grad),
    )


def membrane_potential(net: Network, result: ForwardResult, *, sample: int, layer: int,
                       neuron: int, times) -> np.ndarray:
    """The exact membrane potential u(t) of one neuron at the given times.

    ``u(t) = sum over inputs with t_last < t_m <= t of w a_m eps(t - t_m)``, with
    t_last the neuron's last spike strictly before t (so u(t_k) = theta at a
    spike and u restarts from 0 just after it).

    Parameters
    ----------
    net, result : the network and its forward pass.
    sample, layer, neuron : int
        Which neuron (``layer`` a dense or conv layer; may be negative).
    times : array_like of float
        Where to evaluate u (model time units), any order.

    Returns
    -------
    ndarray float64, shape of ``times`` (threshold units: theta = ``net.params.threshold``).
    """
    view = _LayerView(net, result, layer)
    if not -view.outputs.n_samples <= sample < view.outputs.n_samples:
        raise IndexError(f"sample {sample} out of range for {view.outputs.n_samples} samples")
    sample %= view.outputs.n_samples
    if not 0 <= neuron < view.outputs.n_neurons:
        raise IndexError(f"neuron {neuron} out of range for {view.outputs.n_neurons} neurons")
    t = np.asarray(times, dtype=np.float64)
    flat = t.reshape(-1)
    _, t_in, amp, w = view.neuron_inputs(sample, neuron)
    ut, inv = np.unique(t_in, return_inverse=True)  # events at one time act together
    cs = np.bincount(inv.reshape(-1), weights=w * amp, minlength=ut.size)
    t_out = view.spike_times(sample, neuron)
    pos = np.searchsorted(t_out, flat, side="left")
    last = t_out[np.maximum(pos - 1, 0)] if t_out.size else np.zeros(flat.size)
    last = np.where(pos > 0, last, -np.inf)
    u = np.zeros(flat.size)
    p = net.params
    block = max(1, 2_000_000 // max(ut.size, 1))
    for a in range(0, flat.size, block):
        tt, ll = flat[a:a + block, None], last[a:a + block, None]
        lag = tt - ut[None, :]
        live = (ut[None, :] > ll) & (lag >= 0.0)
        u[a:a + block] = eps(np.where(live, lag, -1.0), p.tau_m, p.tau_s) @ cs
    return u.reshape(t.shape)


# ----------------------------------------------------------------------------------
# gradients of every spike
# ----------------------------------------------------------------------------------
def loss_gradient(result: ForwardResult, labels, config, *, supervision: str | None = None):
    """The count loss of a training configuration on a forward pass.

    Parameters
    ----------
    result : ForwardResult
    labels : array_like of int (n_samples,)
    config : TrainConfig
        Gives T, t_end, the targets and the supervision rule.
    supervision : {"end", "last-rise", "none"}, optional
        Overrides ``config.supervision``.

    Returns
    -------
    CountLoss
        ``grad`` (G of every output spike) and ``forced`` (the supervisory spikes).
    """
    from .loss import count_loss

    sup = config.supervision if supervision is None else supervision
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    sup_t = Network.supervision_times(result, labels, sup)
    return count_loss(result.spikes[-1], labels, steps=config.steps, t_end=config.t_end,
                      desired=config.desired, undesired=config.undesired, supervision=sup,
                      supervision_times=sup_t)


def spike_gradients(net: Network, result: ForwardResult, grad_out, *, kernel: str = "exp",
                    tau_grad: float = 2.5, forced=None, input_grad: bool = True):
    """G = dL/dt of every spike of every layer (Eq. 13, no stabiliser).

    Parameters
    ----------
    net, result : the network and its forward pass.
    grad_out : array_like (n_output_spikes,)
        dL/dt of the output spikes.
    kernel, tau_grad : the backward kernel h of Eq. 12.
    forced : ForcedSpikes, optional
        Supervisory spikes (their gradient flows into the layers below too).
    input_grad : bool
        Also the gradient of the network's input events (``grads.events[0]``).

    Returns
    -------
    per_layer : list of ndarray
        ``per_layer[l]`` is aligned with ``result.spikes[l]`` (the last one is ``grad_out``).
    grads : Gradients
        The full backward (``grads.events[0]``: the input events).
    """
    g = np.asarray(grad_out, dtype=np.float64).reshape(-1)
    grads = net.backward(result, g, kernel=kernel, tau_grad=tau_grad, forced=forced,
                         input_grad=input_grad)
    n = len(net.layers)
    per_layer = [grads.events[l + 1] for l in range(n - 1)] + [g]
    return per_layer, grads


def gradient_sums(grads, grad_out) -> list:
    """Total spike-time gradient carried by each layer's events (Eq. 8).

    Parameters
    ----------
    grads : Gradients
        From ``net.backward(..., input_grad=True)``.
    grad_out : array_like
        The dL/dt given to ``net.backward`` for the output spikes.

    Returns
    -------
    list of float
        ``[sum(grad_out), sum over the output layer's input events, ..., sum over the
        network's input events]``: from the output down to the input. Without
        stabilisers and forced spikes every entry equals the first (Eq. 8) through
        dense, conv, max and adjusted-avg pooling layers; plain avg pooling loses
        the share of the silent positions of its windows; ``input_grad_scale``
        multiplies the sum by that scale at each dense or conv layer.
    """
    sums = [float(np.sum(grad_out))]
    for ev in reversed(grads.events):
        if ev is None:
            raise ValueError("grads has no input-event gradient for the first layer: use input_grad=True")
        sums.append(float(np.sum(ev)))
    return sums


# ----------------------------------------------------------------------------------
# Eq. 6 and Eq. 8 through the whole network
# ----------------------------------------------------------------------------------
def share_sums(net: Network, result: ForwardResult, layer: int, *, kernel: str = "exp",
               tau_grad: float = 2.5, max_spikes: int | None = 500, rng=None):
    """Sum of the Eq. 12 shares of (a random sample of) the spikes of one layer (Eq. 6).

    Parameters
    ----------
    net, result : the network and its forward pass.
    layer : int
        A dense or conv layer.
    kernel, tau_grad : the backward kernel h.
    max_spikes : int or None
        Check at most this many spikes, drawn at random (None: all).
    rng : numpy.random.Generator or int, optional

    Returns
    -------
    spikes : ndarray int64 — indices of the checked spikes in ``result.spikes[layer]``.
    sums : ndarray float64 — their sums of shares (NaN for a window whose
        denominator is exactly 0: its shares are undefined).
    """
    GradParams(kernel=kernel, tau_grad=tau_grad)
    rng = np.random.default_rng(rng)
    view = _LayerView(net, result, layer)
    idx = _sample_spikes(view.outputs, max_spikes, rng)
    sums = np.full(idx.size, np.nan)
    where = {int(i): j for j, i in enumerate(idx)}
    for s, n, members in _by_neuron(view.outputs, idx):
        _, t_in, amp, w = view.neuron_inputs(s, n)
        t_out = view.spike_times(s, n)
        c_all = w * amp
        for i, k in members:
            win = _window(t_in, t_out, k)
            _, _, shares = _shares(c_all[win], t_out[k] - t_in[win], kernel, net.params, tau_grad)
            sums[where[i]] = np.sum(shares)
    return idx, sums


@dataclass(frozen=True, eq=False)
class LayerInvariance:
    """The gradient sums around one layer (see :func:`verify_invariance`).

    Attributes
    ----------
    layer : int
    name, kind : str
    n_out, n_in : int — events out of and into the layer (the output layer's events
        include the supervisory spikes that take part in the backward).
    sum_out : float — total dL/dt carried by the layer's output events (Eq. 8).
    sum_in : float — total passed on to its input events.
    expected_in : float — what theory predicts for ``sum_in``: ``sum_out``, or for
        plain avg pooling ``sum_out - expected_loss``.
    expected_loss : float — sum over pooled events of g (k^2 - n)/k^2 (avg pooling), else 0.
    rel_error : float — |sum_in - expected_in| / scale, scale = |sum_out| (or the sum of
        |dL/dt| of the output events when that is 0).
    conserved : bool — |sum_in - sum_out| <= rtol x scale.
    spikes_checked : int — spikes whose shares were summed (Eq. 6); 0 for pooling.
    worst_share_error : float or None — max |sum of shares - 1| over them.
    undefined_windows : int — checked windows whose Eq. 12 denominator is exactly 0.
    dropped : int — windows the backward dropped (denominator exactly 0).
    """

    layer: int
    name: str
    kind: str
    n_out: int
    n_in: int
    sum_out: float
    sum_in: float
    expected_in: float
    expected_loss: float
    rel_error: float
    conserved: bool
    spikes_checked: int
    worst_share_error: float | None
    undefined_windows: int
    dropped: int

    @property
    def loss(self) -> float:
        """sum_out - sum_in: the gradient the layer did not pass on."""
        return self.sum_out - self.sum_in

    def to_dict(self) -> dict:
        return {"layer": self.layer, "name": self.name, "kind": self.kind, "events_out": self.n_out,
                "events_in": self.n_in, "sum": self.sum_out, "sum_in": self.sum_in,
                "expected_in": self.expected_in, "loss": self.loss, "expected_loss": self.expected_loss,
                "rel_error": self.rel_error, "conserved": self.conserved,
                "spikes_checked": self.spikes_checked,
                "worst_share_error": None if self.worst_share_error is None else _num(self.worst_share_error),
                "undefined_windows": self.undefined_windows, "dropped_windows": self.dropped}


@dataclass(frozen=True, eq=False)
class InvarianceReport:
    """Result of :func:`verify_invariance`.

    Attributes
    ----------
    kernel : str
    layers : list of LayerInvariance — from the output layer down to the first layer.
    total : float — sum of dL/dt of the output spikes.
    input_sum : float — what reaches the network's input events.
    conserved : bool — every layer passes on what it receives, and the total of every
        layer's events equals the output total, within ``rtol`` (relative).
    matches_theory : bool — every layer passes what theory predicts (within ``rtol``;
        for plain avg pooling the loss of the silent share) and every checked
        spike's shares sum to 1 within ``share_tol``.
    rtol, share_tol : float
    supervisory : (int, int) — supervisory spikes taking part in the backward, given.
    """

    kernel: str
    layers: list
    total: float
    input_sum: float
    conserved: bool
    matches_theory: bool
    rtol: float
    share_tol: float
    supervisory: tuple = (0, 0)

    @property
    def worst_share_error(self) -> float | None:
        errs = [l.worst_share_error for l in self.layers if l.worst_share_error is not None]
        return max(errs) if errs else None

    def to_dict(self) -> dict:
        return {"kernel": self.kernel, "total": self.total, "input_sum": self.input_sum,
                "conserved": self.conserved, "matches_theory": self.matches_theory,
                "rtol": self.rtol, "share_tol": self.share_tol,
                "worst_share_error": self.worst_share_error,
                "supervisory_spikes": {"used": self.supervisory[0], "given": self.supervisory[1]},
                "layers": [l.to_dict() for l in self.layers]}


def forced_windows(net: Network, result: ForwardResult, forced):
    """Which supervisory spikes take part in the backward: those with at least one input
    event in their window (t_prev, t], t_prev the neuron's last real spike before t.

    Returns
    -------
    ndarray bool (n_forced,)
    """
    view = _LayerView(net, result, -1)
    ok = np.zeros(np.size(forced.times), dtype=bool)
    for q, (s, i, t) in enumerate(zip(np.reshape(forced.samples, -1), np.reshape(forced.neurons, -1),
                                      np.reshape(forced.times, -1))):
        _, t_in, _, _ = view.neuron_inputs(int(s), int(i))
        t_out = view.spike_times(int(s), int(i))
        before = t_out[t_out < t]
        t_prev = before[-1] if before.size else -np.inf
        ok[q] = bool(np.any((t_in > t_prev) & (t_in <= t)))
    return ok


def _forced_share_sums(net, result, forced, use, kernel, tau_grad):
    """Sums of the Eq. 12 shares of the windows of the participating supervisory spikes."""
    view = _LayerView(net, result, -1)
    sums = []
    for s, i, t in zip(np.reshape(forced.samples, -1)[use], np.reshape(forced.neurons, -1)[use],
                       np.reshape(forced.times, -1)[use]):
        _, t_in, amp, w = view.neuron_inputs(int(s), int(i))
        t_out = view.spike_times(int(s), int(i))
        before = t_out[t_out < t]
        win = (t_in > (before[-1] if before.size else -np.inf)) & (t_in <= t)
        _, _, shares = _shares(w[win] * amp[win], t - t_in[win], kernel, net.params, tau_grad)
        sums.append(np.sum(shares))
    return np.array(sums)


def verify_invariance(net: Network, result: ForwardResult, grad_out, *, kernel: str = "exp",
                      tau_grad: float = 2.5, forced=None, max_spikes: int | None = 500, rng=None,
                      rtol: float = INVARIANCE_RTOL, share_tol: float = INVARIANCE_RTOL) -> InvarianceReport:
    """Propagate a loss gradient through the network and check Eqs. 6 and 8 layer by layer.

    Parameters
    ----------
    net, result : the network and its forward pass.
    grad_out : array_like (n_output_spikes,)
        dL/dt of the output spikes (e.g. ``loss_gradient(...).grad``).
    kernel, tau_grad : the backward kernel h of Eq. 12 (no stabiliser).
    forced : ForcedSpikes, optional
        Supervisory spikes of the loss (``loss_gradient(...).forced``): they count as
        spikes of the output layer when their window holds an input event
        (:func:`forced_windows`; the others take no part in the backward).
    max_spikes : int or None
        Spikes per dense/conv layer whose shares are summed (Eq. 6), drawn at random.
    rng : numpy.random.Generator or int, optional
    rtol : float
        Relative tolerance of the sums (Eq. 8).
    share_tol : float
        Tolerance of |sum of shares - 1| (Eq. 6).

    Returns
    -------
    InvarianceReport
    """
    rng = np.random.default_rng(rng)
    per_layer, grads = spike_gradients(net, result, grad_out, kernel=kernel, tau_grad=tau_grad,
                                       forced=forced)
    n = len(net.layers)
    clock = result.time == "discrete"  # Eq. 8 only: no continuous-time shares to sum (Eq. 6)
    f_use = np.zeros(0, dtype=bool)
    if forced is not None and np.size(forced.times):
        # on the clock every given supervisory spike is written into the raster
        f_use = np.ones(np.size(forced.times), dtype=bool) if clock else forced_windows(net, result, forced)
    rows = []
    for l in range(n - 1, -1, -1):
        lay = net.layers[l]
        g_out = per_layer[l]
        if l == n - 1 and f_use.any():
            g_out = np.concatenate([g_out, np.reshape(forced.grads, -1)[f_use]])
        g_in = grads.events[l]
        sum_out, sum_in = float(np.sum(g_out)), float(np.sum(g_in))
        scale = abs(sum_out) or float(np.sum(np.abs(g_out))) or 1.0
        expected_loss = 0.0
        checked, worst, undefined, dropped = 0, None, 0, 0
        if lay.kind == "pool":
            if lay.pool_kind == "avg":
                rec = result.records[l]
                k2 = lay.k * lay.k
                expected_loss = float(np.sum(g_out * (k2 - rec.count) / k2))
        elif clock or lay.kind not in NEURON_KINDS:  # Eq. 8 sums only (residual: its convs inside)
            dropped = int(grads.layers[l].raw.n_dropped)
        else:
            dropped = int(grads.layers[l].raw.n_dropped)
            _, sums = share_sums(net, result, l, kernel=kernel, tau_grad=tau_grad,
                                 max_spikes=max_spikes, rng=rng)
            if l == n - 1 and f_use.any():
                sums = np.concatenate([sums, _forced_share_sums(net, result, forced, f_use, kernel,
                                                                tau_grad)])
            checked = int(sums.size)
            ok = np.isfinite(sums)
            undefined = int(np.count_nonzero(~ok))
            worst = float(np.max(np.abs(sums[ok] - 1.0))) if ok.any() else None
        expected_in = sum_out - expected_loss
        rows.append(LayerInvariance(
            layer=l, name=layer_name(net, l), kind=lay.kind, n_out=int(g_out.size), n_in=int(g_in.size),
            sum_out=sum_out, sum_in=sum_in, expected_in=expected_in, expected_loss=expected_loss,
            rel_error=abs(sum_in - expected_in) / scale,
            conserved=abs(sum_in - sum_out) <= rtol * scale, spikes_checked=checked,
            worst_share_error=worst, undefined_windows=undefined, dropped=dropped,
        ))
    theory = all(r.rel_error <= rtol and r.undefined_windows == 0 and r.dropped == 0
                 and (r.worst_share_error is None or r.worst_share_error <= share_tol) for r in rows)
    total = rows[0].sum_out
    scale = abs(total) or float(np.sum(np.abs(per_layer[-1]))) or 1.0
    # each layer passes on what it got, and every layer's total is the output's
    conserved = all(r.conserved and abs(r.sum_in - total) <= rtol * scale for r in rows)
    return InvarianceReport(
        kernel=kernel, layers=rows, total=total, input_sum=rows[-1].sum_in,
        conserved=conserved, matches_theory=theory, rtol=rtol, share_tol=share_tol,
        supervisory=(int(np.count_nonzero(f_use)), int(f_use.size)),
    )


# ----------------------------------------------------------------------------------
# finite differences
# ----------------------------------------------------------------------------------
def _occurrence(trains: SpikeTrains) -> np.ndarray:
    """Rank of every spike among the spikes of its (sample, neuron)."""
    order = np.lexsort((trains.times, trains.neurons, trains.samples))
    key = trains.samples[order] * max(trains.n_neurons, 1) + trains.neurons[order]
    start = np.r_[True, key[1:] != key[:-1]] if key.size else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(key.size), 0)) if key.size else key
    rank = np.empty(key.size, dtype=np.int64)
    rank[order] = np.arange(key.size) - first
    return rank


def _before_counts(ev_unit, ev_time, sp_unit, sp_time) -> np.ndarray:
    """For every spike: the number of events of its unit at or before its time (exact merge)."""
    n_e = ev_time.size
    unit = np.concatenate([ev_unit, sp_unit])
    time = np.concatenate([ev_time, sp_time])
    kind = np.concatenate([np.zeros(n_e, np.int8), np.ones(sp_time.size, np.int8)])
    order = np.lexsort((kind, time, unit))  # events before spikes at equal times
    cum = np.cumsum(kind[order] == 0)
    pos = np.empty(order.size, dtype=np.int64)
    pos[order] = np.arange(order.size)
    at = cum[pos[n_e:]]
    first_of_unit = np.searchsorted(np.sort(ev_unit), sp_unit, side="left")
    return at - first_of_unit


def _event_structure(net: Network, result: ForwardResult) -> list:
    """What must not change for the spike times to be differentiable, per layer: the spike
    counts of every (sample, neuron), then for every spike of a dense or conv layer how many
    of the input events that reach its neuron come at or before it (no event crosses a
    window boundary). Arrays aligned by (sample, neuron, rank of the spike)."""
    from .engine.conv import build_unit_lists

    out = []
    for l, lay in enumerate(net.layers):
        st = result.spikes[l]
        out.append(st.counts())
        if lay.kind not in NEURON_KINDS:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        inp = result.inputs if l == 0 else result.spikes[l - 1]
        if lay.kind == "conv":  # the events of each (sample, output position)
            ul = build_unit_lists(inp, lay.geometry, result.t_end)
            ev_unit = np.repeat(np.arange(ul.unit_group_offsets.size - 1), np.diff(ul.unit_group_offsets))
            ev_time = ul.group_times
            sp_unit = st.samples * lay.geometry.n_pos + st.neurons % lay.geometry.n_pos
        else:
            keep = inp.times <= result.t_end
            ev_unit, ev_time = inp.samples[keep], inp.times[keep]
            sp_unit = st.samples
        before = _before_counts(ev_unit, ev_time, sp_unit, st.times)
        out.append(before[np.lexsort((st.times, st.neurons, st.samples))])
    return out


@dataclass(frozen=True, eq=False)
class GradcheckLayer:
    """The checked weights of one layer (see :func:`gradcheck`).

    Attributes
    ----------
    layer : int
    name : str
    step : float — the first perturbation tried (``step`` x RMS weight of the layer).
    indices : list of tuple — the checked weights (index into ``layer.weight``).
    steps : ndarray — the perturbation used for each (``step`` or 10x, 100x smaller).
    analytic, numeric, rel_error : ndarray — dL/dw of the backward, the central
        difference, and |numeric - analytic| / max(|numeric|, |analytic|, floor) with
        floor = 1e-3 x max |dL/dw| of the layer.
    skipped : int — perturbations that changed a spike count (not comparable).
    skipped_order : int — perturbations that moved a spike across an input event of its
        layer (an event enters or leaves a window: the spike times are not
        differentiable there either).
    """

    layer: int
    name: str
    step: float
    indices: list
    steps: np.ndarray
    analytic: np.ndarray
    numeric: np.ndarray
    rel_error: np.ndarray
    skipped: int
    skipped_order: int = 0

    @property
    def max_rel_error(self) -> float | None:
        return float(np.max(self.rel_error)) if self.rel_error.size else None

    def to_dict(self) -> dict:
        return {"layer": self.layer, "name": self.name, "step": self.step, "checked": len(self.indices),
                "skipped": self.skipped, "skipped_order": self.skipped_order,
                "max_rel_error": self.max_rel_error,
                "checks": [{"index": list(map(int, i)), "analytic": float(a), "numeric": float(nu),
                            "rel_error": float(e), "step": float(h)}
                           for i, a, nu, e, h in zip(self.indices, self.analytic, self.numeric,
                                                     self.rel_error, self.steps)]}


@dataclass(frozen=True, eq=False)
class GradcheckReport:
    """Result of :func:`gradcheck`: per layer with weights, and ``passed`` when every layer
    has at least one comparable perturbation and all relative errors are <= ``rtol``."""

    layers: list
    rtol: float
    passed: bool

    @property
    def skipped(self) -> int:
        """Perturbations skipped because a spike count changed."""
        return sum(l.skipped for l in self.layers)

    @property
    def skipped_order(self) -> int:
        """Perturbations skipped because a spike crossed an input event."""
        return sum(l.skipped_order for l in self.layers)

    @property
    def max_rel_error(self) -> float | None:
        errs = [l.max_rel_error for l in self.layers if l.max_rel_error is not None]
        return max(errs) if errs else None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "rtol": self.rtol, "skipped": self.skipped,
                "skipped_order": self.skipped_order,
                "max_rel_error": self.max_rel_error, "layers": [l.to_dict() for l in self.layers]}


def gradcheck(net: Network, inputs: SpikeTrains, *, weights_per_layer: int = 8,
              step: float = GRADCHECK_STEP, rtol: float = GRADCHECK_RTOL, retries: int = 2,
              rng=None) -> GradcheckReport:
    """Compare the backward's dL/dw with central finite differences of the forward.

    The objective is L = sum_k g_k t_k over the output spikes with fixed random
    g (one per (sample, neuron, rank of the spike)); the backward uses h = d eps/dt
    without stabilisers or supervisory spike, so it is the exact derivative. In
    every layer with weights, ``weights_per_layer`` raw weights are drawn
    (three quarters among those with a non-zero gradient) and perturbed by
    +-``step`` x (RMS weight of the layer). A perturbation that changes a spike
    count, or moves a spike across an input event of its layer (an event enters
    or leaves a window: the spike times are not differentiable there), is
    retried with a 10x smaller step (``retries`` times), then skipped and
    counted. The network is left unchanged.

    Parameters
    ----------
    net : Network
    inputs : SpikeTrains
    weights_per_layer : int
    step : float
        Relative step of the central differences.
    rtol : float
        Largest relative error that passes.
    retries : int
        Smaller steps tried after a perturbation that changed the event structure.
    rng : numpy.random.Generator or int, optional

    Returns
    -------
    GradcheckReport
    """
    require_continuous(net.time, "gradcheck (finite differences of spike times)")
    if int(weights_per_layer) < 1:
        raise ValueError(f"weights_per_layer must be >= 1, got {weights_per_layer}")
    if not float(step) > 0:
        raise ValueError(f"step must be > 0, got {step}")
    rng = np.random.default_rng(rng)
    result = net.forward(inputs)
    out = result.spikes[-1]
    if not out.n_events:
        raise ValueError("the network emits no output spike on these samples: L = sum g_k t_k is "
                         "constant, nothing to check (use more samples)")
    max_rank = int(_occurrence(out).max()) + 1 if out.n_events else 1
    table = rng.normal(size=(out.n_samples, out.n_neurons, max_rank + 64))

    def objective(res):
        o = res.spikes[-1]
        return float(np.sum(table[o.samples, o.neurons, np.minimum(_occurrence(o), table.shape[2] - 1)]
                            * o.times))

    g = table[out.samples, out.neurons, _occurrence(out)]
    grads = net.backward(result, g, kernel="depsilon", input_grad=False)
    base = _event_structure(net, result)

    def change(res):
        """None, "count" (a spike count changed) or "order" (a spike crossed an input event)."""
        other = _event_structure(net, res)
        if not all(np.array_equal(a, b) for a, b in zip(other[0::2], base[0::2])):
            return "count"
        if not all(np.array_equal(a, b) for a, b in zip(other[1::2], base[1::2])):
            return "order"
        return None

    if any(lay.kind == "residual" for lay in net.layers):
        raise ValueError("gradcheck does not look inside residual blocks yet: check a network without them")
    layers = []
    for l, lay in enumerate(net.layers):
        if lay.kind not in NEURON_KINDS:
            continue
        W = lay.weight  # the live array, perturbed in place and restored
        an_all = grads.weights[l]
        hstep = float(step) * max(float(np.sqrt(np.mean(W * W))), 1e-12)
        nz = np.flatnonzero(an_all.reshape(-1) != 0.0)
        m = int(weights_per_layer)
        n_nz = min(nz.size, m - m // 4) if nz.size else 0
        picks = list(rng.choice(nz, size=n_nz, replace=False)) if n_nz else []
        rest = np.setdiff1d(np.arange(W.size), picks)
        picks += list(rng.choice(rest, size=min(m - n_nz, rest.size), replace=False))
        floor = 1e-3 * float(np.max(np.abs(an_all))) if an_all.size else 0.0
        idxs, an, nu, err, steps, skipped = [], [], [], [], [], {"count": 0, "order": 0}
        for flat in picks:
            idx = np.unravel_index(int(flat), W.shape)
            old = float(W[idx])
            why, fd, used = None, None, None
            for shrink in range(int(retries) + 1):  # a smaller step is less likely to cross an event
                hh = hstep * 10.0 ** -shrink
                try:
                    W[idx] = old + hh
                    up = float(W[idx]) - old
                    rp = net.forward(inputs)
                    W[idx] = old - hh
                    down = old - float(W[idx])
                    rm = net.forward(inputs)
                finally:
                    W[idx] = old
                why = change(rp) or change(rm)
                if why is None:
                    fd, used = (objective(rp) - objective(rm)) / (up + down), hh
                    break
            if why is not None:
                skipped[why] += 1
                continue
            a = float(an_all[idx])
            denom = max(abs(fd), abs(a), floor)
            idxs.append(tuple(int(i) for i in idx))
            an.append(a)
            nu.append(fd)
            steps.append(used)
            err.append(abs(fd - a) / denom if denom > 0 else 0.0)
        layers.append(GradcheckLayer(layer=l, name=layer_name(net, l), step=hstep, indices=idxs,
                                     steps=np.array(steps), analytic=np.array(an), numeric=np.array(nu),
                                     rel_error=np.array(err), skipped=skipped["count"],
                                     skipped_order=skipped["order"]))
    passed = bool(layers) and all(l.rel_error.size and l.max_rel_error <= rtol for l in layers)
    return GradcheckReport(layers=layers, rtol=float(rtol), passed=bool(passed))


# ----------------------------------------------------------------------------------
# the reverse-gradient problem (Eq. 11, Fig. 4)
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ReverseLayer:
    """Sign reversals in one layer under one kernel (see :func:`reverse_gradient`).

    Attributes
    ----------
    layer : int
    name, kernel : str
    spikes : int — spikes of the layer with G != 0 (with the supervisory spikes of the
        output layer that take part in the backward).
    spikes_checked : int — of which were examined.
    contributions : int — non-zero terms G_k x share_km examined.
    reversed : int — of which sign(G_k share) = -sign(G_k) sign(w a_m).
    mass : float, reversed_mass : float — sum of |G_k share| over all / reversed terms.
    nonpositive_windows : int — windows whose Eq. 12 denominator is <= 0 (left out:
        all their terms flip sign; the official code drops them).
    lag_edges : ndarray (41,) — bins of the lag t_k - t_m over [0, t_end].
    lag_counts, lag_reversed : ndarray (40,) — examined / reversed terms per lag bin.
    """

    layer: int
    name: str
    kernel: str
    spikes: int
    spikes_checked: int
    contributions: int
    reversed: int
    mass: float
    reversed_mass: float
    nonpositive_windows: int
    lag_edges: np.ndarray = field(repr=False)
    lag_counts: np.ndarray = field(repr=False)
    lag_reversed: np.ndarray = field(repr=False)

    @property
    def fraction(self) -> float:
        return self.reversed / self.contributions if self.contributions else 0.0

    @property
    def mass_fraction(self) -> float:
        return self.reversed_mass / self.mass if self.mass else 0.0

    def to_dict(self) -> dict:
        return {"layer": self.layer, "name": self.name, "kernel": self.kernel, "spikes": self.spikes,
                "spikes_checked": self.spikes_checked, "contributions": self.contributions,
                "reversed": self.reversed, "fraction": self.fraction,
                "mass_fraction": self.mass_fraction, "nonpositive_windows": self.nonpositive_windows}


@dataclass(frozen=True, eq=False)
class ReverseReport:
    """Result of :func:`reverse_gradient`: one :class:`ReverseLayer` per (layer, kernel),
    the totals per kernel, and ``ok`` when h = exp reverses nothing."""

    rows: list
    tau_m: float
    tau_s: float
    tau_grad: float
    t_end: float

    def totals(self, kernel: str) -> dict:
        rows = [r for r in self.rows if r.kernel == kernel]
        n = sum(r.contributions for r in rows)
        rev = sum(r.reversed for r in rows)
        mass = sum(r.mass for r in rows)
        rmass = sum(r.reversed_mass for r in rows)
        return {"contributions": n, "reversed": rev, "fraction": rev / n if n else 0.0,
                "mass_fraction": rmass / mass if mass else 0.0,
                "nonpositive_windows": sum(r.nonpositive_windows for r in rows)}

    @property
    def kernels(self) -> list:
        return list(dict.fromkeys(r.kernel for r in self.rows))

    @property
    def ok(self) -> bool:
        return "exp" not in self.kernels or self.totals("exp")["reversed"] == 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "tau_m": self.tau_m, "tau_s": self.tau_s, "tau_grad": self.tau_grad,
                "totals": {k: self.totals(k) for k in self.kernels},
                "layers": [r.to_dict() for r in self.rows]}


def reverse_gradient(net: Network, result: ForwardResult, grad_out, *,
                     kernels=("depsilon", "exp"), tau_grad: float = 2.5, forced=None,
                     max_spikes: int | None = 2000, rng=None) -> ReverseReport:
    """Count the input-event gradients whose sign is reversed (Eq. 11, Fig. 4).

    For each kernel the loss gradient is propagated (:func:`spike_gradients`);
    in every dense/conv layer each spike k with G_k != 0 passes G_k x share_km
    to the input events m of its window (Eq. 13). The expected direction is
    sign(G_k) sign(w a_m) (the event's efficacy; a_m = 1 for spikes): a term of
    the other sign is *reversed*. With h = d eps/dt that happens exactly where
    d eps/dt < 0 (the falling part of the kernel, lags beyond its peak); with
    h = exp never. Windows whose denominator is <= 0 are counted apart.

    Parameters
    ----------
    net, result : the network and its forward pass.
    grad_out : array_like (n_output_spikes,)
        dL/dt of the output spikes.
    kernels : sequence of {"exp", "depsilon"}
    tau_grad : float
    forced : ForcedSpikes, optional
    max_spikes : int or None
        Spikes examined per layer and kernel (drawn at random among those with G != 0).
    rng : numpy.random.Generator or int, optional

    Returns
    -------
    ReverseReport
    """
    require_continuous(result.time, "reverse-gradient (Eq. 11 on the spike windows)")
    rng = np.random.default_rng(rng)
    p = net.params
    n = len(net.layers)
    f_use = np.zeros(0, dtype=bool)
    if forced is not None and np.size(forced.times):
        f_use = forced_windows(net, result, forced)
    rows = []
    for kernel in kernels:
        GradParams(kernel=kernel, tau_grad=tau_grad)
        per_layer, _ = spike_gradients(net, result, grad_out, kernel=kernel, tau_grad=tau_grad,
                                       forced=forced, input_grad=False)
        for l, lay in enumerate(net.layers):
            if lay.kind not in NEURON_KINDS:
                continue
            view = _LayerView(net, result, l)
            G = per_layer[l]
            live = np.flatnonzero(G != 0.0)
            idx = _sample_spikes(view.outputs, max_spikes, rng, live)
            acc = _ReverseCount(kernel, p, tau_grad, result.t_end)
            for s, nrn, members in _by_neuron(view.outputs, idx):
                _, t_in, amp, w = view.neuron_inputs(s, nrn)
                t_out = view.spike_times(s, nrn)
                c_all = w * amp
                for i, k in members:
                    win = _window(t_in, t_out, k)
                    acc.add(G[i], c_all[win], t_out[k] - t_in[win])
            n_live, n_checked = int(live.size), int(idx.size)
            if l == n - 1 and f_use.any():  # the supervisory spikes are output spikes too
                fg = np.reshape(forced.grads, -1)
                for q in np.flatnonzero(f_use & (fg != 0.0)):
                    s, nrn = int(np.reshape(forced.samples, -1)[q]), int(np.reshape(forced.neurons, -1)[q])
                    t = float(np.reshape(forced.times, -1)[q])
                    _, t_in, amp, w = view.neuron_inputs(s, nrn)
                    t_out = view.spike_times(s, nrn)
                    before = t_out[t_out < t]
                    win = (t_in > (before[-1] if before.size else -np.inf)) & (t_in <= t)
                    acc.add(fg[q], w[win] * amp[win], t - t_in[win])
                    n_live += 1
                    n_checked += 1
            rows.append(ReverseLayer(
                layer=l, name=layer_name(net, l), kernel=kernel, spikes=n_live,
                spikes_checked=n_checked, contributions=acc.n, reversed=acc.n_rev, mass=acc.mass,
                reversed_mass=acc.rmass, nonpositive_windows=acc.nonpos, lag_edges=acc.edges,
                lag_counts=acc.hist_all, lag_reversed=acc.hist_rev,
            ))
    return ReverseReport(rows=rows, tau_m=p.tau_m, tau_s=p.tau_s, tau_grad=float(tau_grad),
                         t_end=result.t_end)


class _ReverseCount:
    """Accumulates the terms G_k share_km of windows and their sign reversals."""

    def __init__(self, kernel, params, tau_grad, t_end, bins: int = 40):
        self.kernel, self.params, self.tau_grad = kernel, params, tau_grad
        self.n = self.n_rev = self.nonpos = 0
        self.mass = self.rmass = 0.0
        self.edges = np.linspace(0.0, t_end, bins + 1)
        self.hist_all = np.zeros(bins, dtype=np.int64)
        self.hist_rev = np.zeros(bins, dtype=np.int64)

    def add(self, G, c, lags):
        _, denom, shares = _shares(c, lags, self.kernel, self.params, self.tau_grad)
        if not denom > 0.0:
            self.nonpos += 1
            return
        terms = G * shares
        nz = (terms != 0.0) & (c != 0.0)
        rev = nz & (terms * np.sign(G) * np.sign(c) < 0.0)
        self.n += int(np.count_nonzero(nz))
        self.n_rev += int(np.count_nonzero(rev))
        self.mass += float(np.sum(np.abs(terms[nz])))
        self.rmass += float(np.sum(np.abs(terms[rev])))
        self.hist_all += np.histogram(lags[nz], self.edges)[0]
        self.hist_rev += np.histogram(lags[rev], self.edges)[0]


# ----------------------------------------------------------------------------------
# a fresh network for the checks
# ----------------------------------------------------------------------------------
def fresh_network(config, train_images, n_classes: int) -> Network:
    """The network of ``config`` with fresh weights (seed ``config.seed``) and its gains set by
    the trainer's binary search on the first 50 of ``train_images``.

    Parameters
    ----------
    config : TrainConfig
    train_images : ndarray (n, ...)
        Images in [0, 1]; their shape gives the input shape.
    n_classes : int
    """
    from .checkpoint import build_network
    from .train import INIT_SAMPLES, encode_images, init_gains

    x = np.asarray(train_images)
    net = build_network(config, n_classes, x.shape[1:])
    init_gains(net, encode_images(x[:INIT_SAMPLES], config), config.avg_spike_init)
    return net


def set_pooling(net: Network, kind: str) -> None:
    """Switch every pooling layer of ``net`` to ``kind`` ("max", "avg", "adjusted-avg")."""
    from .engine.conv import POOL_KINDS

    if kind not in POOL_KINDS:
        raise ValueError(f"pooling kind must be one of {POOL_KINDS}, got {kind!r}")
    for lay in net.layers:
        if lay.kind == "pool":
            lay.pool_kind = kind


# ----------------------------------------------------------------------------------
# simulation records (HDF5)
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Simulation:
    """Everything one sample does in a network: the spike trains of every layer and,
    optionally, membrane traces of chosen neurons.

    Attributes
    ----------
    arch : str
    layer_names : list of str
    layer_shapes : list of tuple — output shape of every layer.
    inputs : SpikeTrains — the input events (one sample).
    spikes : list of SpikeTrains — ``spikes[l]``: events emitted by layer l (one sample).
    t_end, tau_m, tau_s, threshold : float
    sample : int or None — index of the sample in its dataset split.
    label : int or None
    membrane_layer : int or None — layer of the traced neurons.
    membrane_neurons : ndarray int64 (n,) or None
    membrane_times : ndarray float64 (N,) or None — the time grid.
    membrane : ndarray float64 (n, N) or None — u(t) of each traced neuron on the grid.
    """

    arch: str
    layer_names: list
    layer_shapes: list
    inputs: SpikeTrains
    spikes: list
    t_end: float
    tau_m: float
    tau_s: float
    threshold: float
    sample: int | None = None
    label: int | None = None
    membrane_layer: int | None = None
    membrane_neurons: np.ndarray | None = None
    membrane_times: np.ndarray | None = None
    membrane: np.ndarray | None = None

    def counts(self) -> list:
        """Number of events per layer (inputs first)."""
        return [self.inputs.n_events] + [s.n_events for s in self.spikes]

    def trace(self, neuron: int):
        """(times, u) of one traced neuron (ValueError if it was not recorded)."""
        if self.membrane is None:
            raise ValueError("no membrane traces in this simulation (record them with membrane_points)")
        hit = np.flatnonzero(self.membrane_neurons == int(neuron))
        if not hit.size:
            raise ValueError(f"neuron {neuron} of layer {self.membrane_layer} was not traced "
                             f"(traced: {_short_list(self.membrane_neurons)})")
        return self.membrane_times, self.membrane[hit[0]]

    def spike_times(self, layer: int, neuron: int) -> np.ndarray:
        """Spike times of one neuron of one layer."""
        st = self.spikes[layer]
        return st.times[st.neurons == int(neuron)]


def _short_list(a, n: int = 10) -> str:
    a = [int(v) for v in np.asarray(a).reshape(-1)]
    return ", ".join(map(str, a[:n])) + (", ..." if len(a) > n else "")


def simulate(net: Network, inputs: SpikeTrains, *, sample: int | None = None, label: int | None = None,
             membrane_points: int = 0, membrane_layer: int = -1, membrane_neurons=None) -> Simulation:
    """Run one sample and record every layer's spikes (and membrane traces).

    Parameters
    ----------
    net : Network
    inputs : SpikeTrains
        The input events of ONE sample.
    sample, label : int, optional
        Stored as metadata (index in the dataset split, class).
    membrane_points : int
        0: no traces; else u(t) on this many equally spaced times in [0, t_end]
        for every traced neuron (exact, :func:`membrane_potential`).
    membrane_layer : int
        Layer of the traced neurons (dense or conv; default the output layer).
    membrane_neurons : sequence of int, optional
        Neurons to trace (default: every neuron of ``membrane_layer``).

    Returns
    -------
    Simulation
    """
    if inputs.n_samples != 1:
        raise ValueError(f"simulate takes the events of one sample, got {inputs.n_samples} samples")
    result = net.forward(inputs)
    p = net.params
    mem = {}
    points = int(membrane_points)
    if points < 0 or points == 1:
        raise ValueError(f"membrane_points must be 0 (no traces) or >= 2, got {membrane_points}")
    if points:
        l = _layer_index(net, membrane_layer)
        require_neurons(net, l, "recording membrane potentials")
        n_out = net.layers[l].n_out
        neurons = (np.arange(n_out) if membrane_neurons is None
                   else np.asarray(membrane_neurons, dtype=np.int64).reshape(-1))
        if neurons.size == 0:
            raise ValueError("membrane_neurons is empty")
        if neurons.min() < 0 or neurons.max() >= n_out:
            raise ValueError(f"membrane neurons must lie in [0, {n_out}) for layer {l}")
        if neurons.size * points > MAX_MEMBRANE_VALUES:
            raise ValueError(f"{neurons.size} neurons x {points} points is more than "
                             f"{MAX_MEMBRANE_VALUES} values: trace fewer neurons or points")
        grid = np.linspace(0.0, result.t_end, points)
        trace = np.stack([membrane_potential(net, result, sample=0, layer=l, neuron=int(n), times=grid)
                          for n in neurons])
        mem = {"membrane_layer": l, "membrane_neurons": neurons, "membrane_times": grid, "membrane": trace}
    return Simulation(
        arch=net.arch, layer_names=[layer_name(net, l) for l in range(len(net.layers))],
        layer_shapes=[tuple(getattr(lay, "out_shape", (lay.n_out,))) for lay in net.layers],
        inputs=inputs, spikes=list(result.spikes), t_end=result.t_end, tau_m=p.tau_m, tau_s=p.tau_s,
        threshold=p.threshold, sample=sample, label=label, **mem,
    )


def save_simulation(path, sim: Simulation) -> None:
    """Write a :class:`Simulation` to HDF5, atomically.

    Layout (format ``eventsnn.simulation/1``): attributes ``format``, ``arch``,
    ``t_end``, ``tau_m``, ``tau_s``, ``threshold``, ``sample``, ``label`` (-1:
    unknown), ``layer_names``, ``layer_shapes`` (JSON); spike-train groups
    (:func:`eventsnn.io.write_spike_trains`) ``inputs`` and ``layers/<l>``;
    optional group ``membrane`` with attribute ``layer`` and datasets
    ``neurons`` (n,), ``times`` (N,), ``potential`` (n, N).
    """
    with atomic_h5(path) as f:
        f.attrs["format"] = SIMULATION_FORMAT
        f.attrs["arch"] = sim.arch
        for key in ("t_end", "tau_m", "tau_s", "threshold"):
            f.attrs[key] = float(getattr(sim, key))
        f.attrs["sample"] = -1 if sim.sample is None else int(sim.sample)
        f.attrs["label"] = -1 if sim.label is None else int(sim.label)
        f.attrs["layer_names"] = json.dumps(list(sim.layer_names))
        f.attrs["layer_shapes"] = json.dumps([list(s) for s in sim.layer_shapes])
        write_spike_trains(f.create_group("inputs"), sim.inputs)
        g = f.create_group("layers")
        for l, st in enumerate(sim.spikes):
            write_spike_trains(g.create_group(str(l)), st)
        if sim.membrane is not None:
            m = f.create_group("membrane")
            m.attrs["layer"] = int(sim.membrane_layer)
            m.create_dataset("neurons", data=sim.membrane_neurons)
            m.create_dataset("times", data=sim.membrane_times)
            m.create_dataset("potential", data=sim.membrane)


def load_simulation(path) -> Simulation:
    """Read a file written by :func:`save_simulation`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If it is not an eventsnn simulation file.
    """
    from pathlib import Path

    path = Path(path)
    with open_h5(path) as f:
        if f.attrs.get("format") != SIMULATION_FORMAT:
            raise FileFormatError(f"{path}: not an eventsnn simulation file (format {f.attrs.get('format')!r}); "
                                  "write one with 'eventsnn simulate'")
        try:
            names = json.loads(f.attrs["layer_names"])
            spikes = [read_spike_trains(f["layers"][str(l)]) for l in range(len(names))]
            mem = {}
            if "membrane" in f:
                m = f["membrane"]
                mem = {"membrane_layer": int(m.attrs["layer"]), "membrane_neurons": m["neurons"][()],
                       "membrane_times": m["times"][()], "membrane": m["potential"][()]}
            sample, label = int(f.attrs["sample"]), int(f.attrs["label"])
            return Simulation(
                arch=str(f.attrs["arch"]), layer_names=names,
                layer_shapes=[tuple(s) for s in json.loads(f.attrs["layer_shapes"])],
                inputs=read_spike_trains(f["inputs"]), spikes=spikes, t_end=float(f.attrs["t_end"]),
                tau_m=float(f.attrs["tau_m"]), tau_s=float(f.attrs["tau_s"]),
                threshold=float(f.attrs["threshold"]), sample=None if sample < 0 else sample,
                label=None if label < 0 else label, **mem,
            )
        except FileFormatError:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise FileFormatError(f"{path}: corrupt simulation file ({exc})") from None
