"""eventsnn: spiking neural networks trained with event-driven backpropagation in exact continuous time.

Implements the method of Zhu et al., "Training Spiking Neural Networks with
Event-driven Backpropagation" (NeurIPS 2022) with spike times found by exact
root-finding instead of a discrete clock.
"""

import os as _os

# numba's OpenMP threads spin while waiting at the end of every parallel loop; on a
# machine whose cores are shared (another process, BLAS threads) that made training
# 3x slower with 2 threads than with 1 (docs/performance.md). Passive waiting costs
# nothing measurable when the cores are free. A value set by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import encode  # noqa: E402
from .kernels import deps, eps, h  # noqa: E402
from .network import Network  # noqa: E402
from .neuron import neuron_spike_times, neuron_time_gradients  # noqa: E402
from .params import GradParams, NeuronParams  # noqa: E402
from .spikes import SpikeTrains  # noqa: E402

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
