"""Encoders: from static images to input events (:class:`~eventsnn.spikes.SpikeTrains`).

* :func:`current` — the paper's real-valued input current: every pixel j emits
  T impulses of amplitude x_j at t = 0, 1, ..., T-1 (the official code feeds the
  normalised image at each of its T steps; an input at step n acts like an
  impulse at time n). The simulation window is then (0, T].
* :func:`latency` — time-to-first-spike coding: pixel intensity p in (0, 1]
  gives one spike of amplitude 1 at t = t_max (1 - p); pixels with p <= 0 stay
  silent.
"""

from __future__ import annotations

import numpy as np

from .spikes import SpikeTrains, csr_offsets


def _as_images(images) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if x.ndim < 1:
        raise ValueError("images must have shape (n_samples, ...)")
    if x.ndim == 1:
        x = x[None, :]
    x = x.reshape(x.shape[0], -1)
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf")
    return x


def current(images, steps: int = 5) -> SpikeTrains:
    """Encode images as T current impulses per pixel at t = 0..T-1.

    Parameters
    ----------
    images : array_like of float, shape (n_samples, ...)
        Pixel values (e.g. normalised); flattened per sample. Pixels equal to 0
        emit no event (an impulse of amplitude 0 has no effect).
    steps : int
        Number of impulses T (>= 1).

    Returns
    -------
    SpikeTrains
        ``n_neurons`` = pixels per image; per sample the events are ordered by
        time, then pixel index.

    Examples
    --------
    >>> st = current(np.ones((2, 4)), steps=3)
    >>> st.n_events, st.times[:5]
    (24, array([0., 0., 0., 0., 1.]))
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = _as_images(images)
    n, d = x.shape
    nonzero = x != 0.0
    shape = (n, steps, d)
    sel = np.broadcast_to(nonzero[:, None, :], shape)
    times = np.broadcast_to(np.arange(steps, dtype=np.float64)[None, :, None], shape)[sel]
    neurons = np.broadcast_to(np.arange(d, dtype=np.int64)[None, None, :], shape)[sel]
    amps = np.broadcast_to(x[:, None, :], shape)[sel]
    offsets = csr_offsets(nonzero.sum(axis=1) * steps)
    return SpikeTrains(times, neurons, amps, offsets, d)


def latency(images, t_max: float = 5.0) -> SpikeTrains:
    """Time-to-first-spike encoding: one spike per pixel at t = t_max (1 - p).

    Parameters
    ----------
    images : array_like of float, shape (n_samples, ...)
        Intensities, expected in [0, 1] (values are clipped to it); pixels
        with p <= 0 emit nothing.
    t_max : float
        Latency of the faintest pixel (> 0).

    Returns
    -------
    SpikeTrains
        Amplitude 1 events, ``n_neurons`` = pixels per image.
    """
    t_max = float(t_max)
    if not np.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"t_max must be a finite positive number, got {t_max}")
    x = np.clip(_as_images(images), 0.0, 1.0)
    s, j = np.nonzero(x > 0)
    times = t_max * (1.0 - x[s, j])
    return SpikeTrains.from_unsorted(times, j, np.ones(s.size), s, x.shape[0], x.shape[1])
