"""Small test-side helpers shared by the layer tests (plain loops, independent of the library)."""

from __future__ import annotations

import numpy as np


def spike_ranks(out):
    """Rank of every output spike among the spikes of its (sample, neuron)."""
    ranks = np.zeros(out.n_events, dtype=np.int64)
    seen = {}
    for k, (s, i) in enumerate(zip(out.samples.tolist(), out.neurons.tolist())):
        ranks[k] = seen.get((s, i), 0)
        seen[(s, i)] = ranks[k] + 1
    return ranks
