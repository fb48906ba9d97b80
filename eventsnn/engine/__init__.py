"""Simulation engines: the layer sweep (feed-forward, batched) and the priority-queue engine (any graph)."""

from .queue import feedforward_weights, run_network
from .sweep import ForcedSpikes, dense_backward, dense_forward

__all__ = ["ForcedSpikes", "dense_backward", "dense_forward", "feedforward_weights", "run_network"]
