"""Look inside: the gradient flow of one spike (Eqs. 6, 12-13).

:func:`spike_flow` takes a network, the result of its forward pass and one
output spike (sample, layer, neuron, k-th spike of that neuron) and returns
every input event of the spike's window (t_{k-1}, t_k] with its share
d t_k / d t_m of Eq. 12. The shares sum to 1 (Eq. 6): the gradient G_k of the
spike is split among its input events without loss, and each event receives
G_k times its share (Eq. 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import deps, h
from .network import ForwardResult, Network
from .neuron import neuron_time_gradients


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
        (t_{k-1}, t_k]; t_{k-1} = 0 for the first spike.
    sources, times, amplitudes, weights, h, shares : ndarray (n_window,)
        For every input event of the window: source neuron, time, amplitude,
        effective weight, h(t_k - t_m) and d t_k / d t_m (Eq. 12).
    share_sum : float
        Sum of the shares (Eq. 6: 1 up to rounding).
    slope : float
        u'(t_k), the true slope at the crossing.
    kernel : str
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

    def gradient_shares(self, grad: float) -> np.ndarray:
        """dL/dt_m of each window event given G_k = ``grad`` (Eq. 13 for this spike alone)."""
        return grad * self.shares


def _input_weights(layer, neuron: int):
    """(effective weight from every input neuron, mask of the inputs it is connected to)."""
    if layer.kind == "pool":
        raise ValueError("a pooling layer has no neurons of its own: inspect a dense or conv layer")
    if layer.kind == "conv":
        src, w = layer.receptive_field(neuron)
        row = np.zeros(layer.n_in)
        row[src] = w
        reach = np.zeros(layer.n_in, dtype=bool)
        reach[src] = True
        return row, reach
    return layer.effective_weight[neuron], np.ones(layer.n_in, dtype=bool)


def spike_flow(net: Network, result: ForwardResult, *, sample: int, layer: int, neuron: int,
               spike: int = 0, kernel: str = "exp", tau_grad: float = 2.5) -> SpikeFlow:
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

    Returns
    -------
    SpikeFlow

    Raises
    ------
    IndexError
        If the sample, layer or neuron does not exist or the neuron has fewer spikes.
    """
    n_layers = len(net.layers)
    if not -n_layers <= layer < n_layers:
        raise IndexError(f"layer {layer} out of range for {n_layers} layers")
    layer %= n_layers
    out = result.spikes[layer]
    if not -out.n_samples <= sample < out.n_samples:
        raise IndexError(f"sample {sample} out of range for {out.n_samples} samples")
    if not 0 <= neuron < out.n_neurons:
        raise IndexError(f"neuron {neuron} out of range for {out.n_neurons} neurons of layer {layer}")
    mine = out.sample(sample)
    times_out = mine.times[mine.neurons == neuron]
    if not 0 <= spike < times_out.size:
        raise IndexError(f"neuron {neuron} of layer {layer} fired {times_out.size} times in sample {sample}")
    inp = (result.inputs if layer == 0 else result.spikes[layer - 1]).sample(sample)
    w_row, reach = _input_weights(net.layers[layer], neuron)
    keep = (inp.times <= result.t_end) & reach[inp.neurons]
    src, t_in, amp = inp.neurons[keep], inp.times[keep], inp.amplitudes[keep]
    eff = w_row[src] * amp
    p = net.params
    dt_dtin, _ = neuron_time_gradients(t_in, eff, times_out, tau_m=p.tau_m, tau_s=p.tau_s,
                                       kernel=kernel, tau_grad=tau_grad)
    tk = float(times_out[spike])
    t_prev = float(times_out[spike - 1]) if spike else 0.0
    win = np.flatnonzero((t_in > (times_out[spike - 1] if spike else -np.inf)) & (t_in <= tk))
    shares = dt_dtin[spike, win]
    lags = tk - t_in[win]
    slope = float(np.sum(eff[win] * deps(lags, p.tau_m, p.tau_s)))
    return SpikeFlow(
        layer=layer, sample=sample % out.n_samples, neuron=neuron, spike=spike, time=tk,
        window=(t_prev, tk), sources=src[win], times=t_in[win], amplitudes=amp[win],
        weights=w_row[src[win]], h=h(lags, kernel, tau_m=p.tau_m, tau_s=p.tau_s, tau_grad=tau_grad),
        shares=shares, share_sum=float(np.sum(shares)), slope=slope, kernel=kernel,
    )


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
