"""eventsnn: spiking neural networks trained with event-driven backpropagation in exact continuous time.

Implements the method of Zhu et al., "Training Spiking Neural Networks with
Event-driven Backpropagation" (NeurIPS 2022) with spike times found by exact
root-finding instead of a discrete clock.
"""

from . import encode
from .kernels import deps, eps, h
from .network import Network
from .neuron import neuron_spike_times, neuron_time_gradients
from .params import GradParams, NeuronParams
from .spikes import SpikeTrains

__version__ = "0.1.0"

__all__ = [
    "GradParams",
    "Network",
    "NeuronParams",
    "SpikeTrains",
    "deps",
    "encode",
    "eps",
    "h",
    "neuron_spike_times",
    "neuron_time_gradients",
    "__version__",
]
