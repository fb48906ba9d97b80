"""Recycling of silent neurons between epochs (``--revive``).

A spiking neuron that emits no spike receives no gradient (every term of
Eqs. 12-14 is attached to a spike), so a neuron that has gone silent for every
training sample stays silent for good. In the MNIST MLP 20-25 % of the hidden
neurons end that way (docs/results.md): their standardised weight row has
turned against every training image (ŵ·x <= 0 for all of them), so raising the
gain alone cannot bring them back.

This module recycles them in the manner of ReDo (Sokar et al., "The Dormant
Neuron Phenomenon in Deep Reinforcement Learning", ICML 2023), adapted to
weight-standardised layers: after an epoch, every unit of a weighted layer
that fired on no training sample of that epoch -- a neuron of a dense layer,
an output channel of a convolution (no spike at any position) -- gets

* its incoming raw weights drawn again from the initialisation distribution
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
* the median gain of the layer's firing units (so that it fires at about
  their rate), offset 0,
* zero AdamW moments for those entries (a fresh start, not the stale moments).

Its outgoing weights are left as they are. The draw uses a generator seeded by
(seed, epoch), so resumed and uninterrupted runs recycle identically. The
convolutions inside residual blocks are not recycled (the trainer reports a
block's firing as one layer).
"""

from __future__ import annotations

import numpy as np


def _units_fired(layer, fired: np.ndarray) -> np.ndarray:
    """Per weight row (dense neuron, conv output channel): fired at least once."""
    rows = layer._weight.shape[0]
    return np.asarray(fired, dtype=bool).reshape(rows, -1).any(axis=1)


def _zero_moments(opt, array: np.ndarray, rows: np.ndarray) -> None:
    for p, m, v in zip(opt.params, opt.m, opt.v):
        if p is array:
            m[rows] = 0.0
            v[rows] = 0.0
            return
    raise ValueError("the optimiser does not hold this layer's parameter")


def revive_silent(net, opt, fired: list, rng: np.random.Generator) -> list:
    """Recycle the silent units of every weighted, weight-standardised layer of ``net``.

    Parameters
    ----------
    net : Network
    opt : AdamW
        The optimiser over ``net.parameters()``; moments of recycled rows are zeroed.
    fired : list of ndarray bool, one per layer of ``net`` (shape (layer.n_out,))
        Whether each neuron fired at least once in the epoch.
    rng : numpy.random.Generator
        Draws the new incoming weights.

    Returns
    -------
    list of int
        Units recycled per layer (0 for layers without weights, without weight
        standardisation, or in which no unit fired at all -- a silent layer has no
        firing units to take a gain from, and is reported by the trainer instead).
    """
    if len(fired) != len(net.layers):
        raise ValueError(f"fired has {len(fired)} entries for {len(net.layers)} layers")
    counts = []
    for layer, f in zip(net.layers, fired):
        if not getattr(layer, "weight_norm", False) or getattr(layer, "_weight", None) is None:
            counts.append(0)
            continue
        alive = _units_fired(layer, f)
        dead = np.flatnonzero(~alive)
        if dead.size == 0 or not alive.any():
            counts.append(0)
            continue
        w = layer._weight
        fan_in = w[0].size
        bound = 1.0 / np.sqrt(fan_in)
        w[dead] = rng.uniform(-bound, bound, (dead.size,) + w.shape[1:])
        layer.gain[dead] = np.median(layer.gain[alive])
        layer.offset[dead] = 0.0
        for arr in (w, layer.gain, layer.offset):
            _zero_moments(opt, arr, dead)
        counts.append(int(dead.size))
    return counts
