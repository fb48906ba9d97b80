"""Sparse spike trains of a batch: the struct of arrays every layer consumes and emits.

An *event* is (time, source neuron, amplitude): an ordinary spike has amplitude
1, a current impulse of an encoded image carries a pixel value, an
average-pooled spike carries 1/k^2. A batch of samples is stored as flat arrays
with per-sample offsets (CSR layout): sample ``s`` owns the events
``offsets[s]:offsets[s+1]``, sorted by time (ties by neuron index). There is no
per-neuron cap and no sentinel padding: a neuron that fires n times has n
events, a silent neuron has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def csr_offsets(counts) -> np.ndarray:
    """CSR offsets of per-item counts.

    Parameters
    ----------
    counts : array_like of int, shape (n,)
        Number of entries owned by each item, in item order.

    Returns
    -------
    offsets : int64 ndarray, shape (n + 1,)
        ``offsets[0] == 0``; item ``i`` owns ``[offsets[i], offsets[i + 1])``.
    """
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def offsets_of(owner, n: int) -> np.ndarray:
    """CSR offsets of entries sorted by owner: int64 (n + 1,), owner ``i`` owns
    ``[offsets[i], offsets[i + 1])``; ``owner`` is int of shape (n_entries,) in ``[0, n)``."""
    return csr_offsets(np.bincount(owner, minlength=n))


@dataclass(frozen=True, eq=False)
class SpikeTrains:
    """Events of a batch of samples, struct of arrays.

    Parameters
    ----------
    times : array_like of float64, shape (n_events,)
        Event times (model time units), finite; sorted within each sample.
    neurons : array_like of int, shape (n_events,)
        Source neuron index of each event, in ``[0, n_neurons)``.
    amplitudes : array_like of float64, shape (n_events,)
        Amplitude a_m of each event (1 for spikes), finite.
    offsets : array_like of int, shape (n_samples + 1,)
        Sample ``s`` owns events ``offsets[s]:offsets[s+1]``; ``offsets[0] == 0``,
        ``offsets[-1] == n_events``, non-decreasing.
    n_neurons : int
        Number of source neurons (the size of the layer that emitted the events).

    Raises
    ------
    ValueError
        If any of the above does not hold; the message names the argument.

    Examples
    --------
    >>> st = SpikeTrains([0.5, 1.0, 0.2], [3, 0, 1], [1.0, 1.0, 1.0], [0, 2, 3], 4)
    >>> st.n_samples, st.sample(1).times
    (2, array([0.2]))
    """

    times: np.ndarray
    neurons: np.ndarray
    amplitudes: np.ndarray
    offsets: np.ndarray
    n_neurons: int

    def __post_init__(self):
        times = np.ascontiguousarray(self.times, dtype=np.float64).reshape(-1)
        try:
            neurons_in = np.asarray(self.neurons)
            if neurons_in.size and not np.issubdtype(neurons_in.dtype, np.integer):
                if not np.all(neurons_in == np.round(neurons_in)):
                    raise ValueError
            neurons = np.ascontiguousarray(neurons_in, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError("neurons must be integer indices") from None
        amps = np.ascontiguousarray(self.amplitudes, dtype=np.float64).reshape(-1)
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64).reshape(-1)
        n_neurons = int(self.n_neurons)
        n = times.size
        if neurons.size != n or amps.size != n:
            raise ValueError(
                f"times, neurons and amplitudes must have the same length "
                f"(got {n}, {neurons.size}, {amps.size})"
            )
        if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n:
            raise ValueError(
                f"offsets must start at 0 and end at the number of events ({n}); got {offsets[:1]}...{offsets[-1:]}"
            )
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing")
        if n_neurons < 0:
            raise ValueError(f"n_neurons must be >= 0, got {n_neurons}")
        if not np.all(np.isfinite(times)):
            raise ValueError("times must be finite (no NaN or inf)")
        if not np.all(np.isfinite(amps)):
            raise ValueError("amplitudes must be finite (no NaN or inf)")
        if n and (neurons.min() < 0 or neurons.max() >= n_neurons):
            raise ValueError(f"neurons must lie in [0, n_neurons={n_neurons})")
        if n > 1:
            dt = np.diff(times)
            starts = offsets[1:-1]
            ok = dt >= 0
            # a decrease across a sample boundary is allowed
            boundary = starts[(starts > 0) & (starts < n)] - 1
            ok[boundary] = True
            if not np.all(ok):
                raise ValueError("times must be sorted within each sample (use SpikeTrains.from_unsorted)")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "neurons", neurons)
        object.__setattr__(self, "amplitudes", amps)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "n_neurons", n_neurons)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_unsorted(cls, times, neurons, amplitudes, samples, n_samples: int, n_neurons: int):
        """Build from events in any order, given the sample index of each event.

        Events are sorted by (sample, time, neuron).
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        neurons = np.asarray(neurons, dtype=np.int64).reshape(-1)
        amplitudes = np.asarray(amplitudes, dtype=np.float64).reshape(-1)
        samples = np.asarray(samples, dtype=np.int64).reshape(-1)
        if samples.size != times.size:
            raise ValueError("samples must have one entry per event")
        if samples.size and (samples.min() < 0 or samples.max() >= n_samples):
            raise ValueError(f"samples must lie in [0, n_samples={n_samples})")
        order = np.lexsort((neurons, times, samples))
        return cls(times[order], neurons[order], amplitudes[order], offsets_of(samples, n_samples), n_neurons)

    @classmethod
    def empty(cls, n_samples: int, n_neurons: int) -> "SpikeTrains":
        """A batch of ``n_samples`` samples without any event."""
        z = np.zeros(0)
        return cls(z, z.astype(np.int64), z, np.zeros(n_samples + 1, dtype=np.int64), n_neurons)

    # -- views ------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Number of samples in the batch."""
        return self.offsets.size - 1

    @property
    def n_events(self) -> int:
        """Total number of events of the batch."""
        return self.times.size

    @property
    def samples(self) -> np.ndarray:
        """Sample index of every event, int64 of shape (n_events,)."""
        return np.repeat(np.arange(self.n_samples, dtype=np.int64), np.diff(self.offsets))

    def sample(self, s: int) -> "SpikeTrains":
        """The events of sample ``s`` as a one-sample batch (views, no copy)."""
        if not -self.n_samples <= s < self.n_samples:
            raise IndexError(f"sample {s} out of range for {self.n_samples} samples")
        s = s % self.n_samples
        a, b = self.offsets[s], self.offsets[s + 1]
        return SpikeTrains(
            self.times[a:b], self.neurons[a:b], self.amplitudes[a:b],
            np.array([0, b - a], dtype=np.int64), self.n_neurons,
        )

    def select(self, samples) -> "SpikeTrains":
        """A new batch made of the given samples, in the given order."""
        idx = np.asarray(samples, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self.n_samples or idx.max() >= self.n_samples):
            raise IndexError(f"sample index out of range for {self.n_samples} samples")
        idx = idx % max(self.n_samples, 1)
        starts, stops = self.offsets[idx], self.offsets[idx + 1]
        offsets = csr_offsets(stops - starts)
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) if idx.size else np.zeros(0, np.int64)
        take = take.astype(np.int64)
        return SpikeTrains(self.times[take], self.neurons[take], self.amplitudes[take], offsets, self.n_neurons)

    def counts(self) -> np.ndarray:
        """Spike counts, int64 of shape (n_samples, n_neurons)."""
        out = np.zeros((self.n_samples, self.n_neurons), dtype=np.int64)
        np.add.at(out, (self.samples, self.neurons), 1)
        return out

    def first_times(self) -> np.ndarray:
        """Time of the first event of every (sample, neuron), +inf where there is none;
        float64 of shape (n_samples, n_neurons)."""
        out = np.full((self.n_samples, self.n_neurons), np.inf)
        np.minimum.at(out, (self.samples, self.neurons), self.times)
        return out

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return f"SpikeTrains(n_samples={self.n_samples}, n_neurons={self.n_neurons}, n_events={self.n_events})"

    def equals(self, other: "SpikeTrains") -> bool:
        """Exact equality of every array and of ``n_neurons``."""
        return (
            isinstance(other, SpikeTrains)
            and self.n_neurons == other.n_neurons
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.times, other.times)
            and np.array_equal(self.neurons, other.neurons)
            and np.array_equal(self.amplitudes, other.amplitudes)
        )


class EventSamples:
    """A dataset of event samples that indexes like an image array.

    ``samples[i]``, ``samples[a:b]``, ``samples[index_array]`` select samples
    (a new :class:`EventSamples`), ``len(samples)`` is the number of samples and
    ``samples.shape`` is ``(n_samples,) + input_shape``, so training and
    evaluation code written for image arrays takes event datasets unchanged;
    ``samples.trains`` is the :class:`SpikeTrains` itself.

    Parameters
    ----------
    trains : SpikeTrains
    input_shape : tuple of int
        Shape of one sample's input (its product is ``trains.n_neurons``), e.g.
        (2, 34, 34) for N-MNIST.
    """

    def __init__(self, trains: SpikeTrains, input_shape):
        if not isinstance(trains, SpikeTrains):
            raise TypeError("trains must be a SpikeTrains")
        shape = tuple(int(v) for v in np.atleast_1d(input_shape))
        if int(np.prod(shape)) != trains.n_neurons:
            raise ValueError(f"input_shape {shape} has {int(np.prod(shape))} inputs, the events come "
                             f"from {trains.n_neurons}")
        self.trains = trains
        self.input_shape = shape

    @property
    def shape(self) -> tuple:
        return (self.trains.n_samples,) + self.input_shape

    @property
    def nbytes(self) -> int:
        t = self.trains
        return int(t.times.nbytes + t.neurons.nbytes + t.amplitudes.nbytes + t.offsets.nbytes)

    def __len__(self) -> int:
        return self.trains.n_samples

    def __getitem__(self, index) -> "EventSamples":
        n = self.trains.n_samples
        if isinstance(index, slice):
            idx = np.arange(n)[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            idx = idx.reshape(-1).astype(np.int64)
        return EventSamples(self.trains.select(idx), self.input_shape)

    def __repr__(self) -> str:
        return f"EventSamples(n_samples={len(self)}, input_shape={self.input_shape}, n_events={self.trains.n_events})"
