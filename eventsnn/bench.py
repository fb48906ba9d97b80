"""Continuous vs discrete time, side by side, in one process: time and memory of a training step.

Same network, same input events, same training step, two engines:

* network: ``arch`` (default 784-800, the output layer of 10 added), weights from
  ``seed``, gains set by the trainer's binary search (:func:`eventsnn.train.init_gains`,
  continuous time) on the benchmark images, so that the spike rates are those
  training starts from;
* inputs: synthetic digit-like images (a few Gaussian blobs on a square grid,
  seeded), normalised like MNIST and encoded as 5 current impulses per pixel at
  t = 0..4 over the window (0, 5] (:func:`eventsnn.encode.current`);
* one training step: :func:`eventsnn.train.batch_gradients` (encoding, forward,
  count loss with the supervisory spike, backward with the official stabilisers,
  no input-event gradient) -- everything but the optimiser update;
* engines: exact continuous time, and the official clock with T steps over the
  same window, dt = 5/T, decay factors 1 - dt/tau (time constants in the same
  physical units) -- :meth:`eventsnn.network.Network.set_time`. The clock is
  measured twice: as eventsnn runs it (currents only for the steps that hold
  input events, hidden spikes scattered event by event: the strongest
  clock-driven baseline we have) and with ``every_step`` (one BLAS product over
  every step of every layer, zeros included: the official code's computation).

Time: seconds per training sample = the best of ``repeats`` runs of one batch,
divided by the batch size; the engines are run alternately in the same process
(same cores, same load). BLAS runs on one thread, numba on all (as the trainer).

Memory: the peak of the step's allocations traced by :mod:`tracemalloc`
(numpy reports every array it allocates to tracemalloc; the compiled kernels of
both engines allocate nothing; BLAS scratch buffers are not traced). Measured in
a separate run from the timing (tracing slows allocation down).
"""

from __future__ import annotations

import os
import platform
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from .arch import parse_arch
from .checkpoint import build_network
from .config import TrainConfig
from .train import batch_gradients, encode_images, init_gains

#: Steps T of the discrete engine in the benchmark table.
BENCH_STEPS = (5, 20, 100)
#: Window of the benchmark (5 impulses at t = 0..4 over (0, 5]).
BENCH_T_END = 5


@dataclass(frozen=True)
class BenchSettings:
    """What a benchmark run measures (validated; ValueError names the field)."""

    arch: str = "784-800"
    n_classes: int = 10
    batch: int = 50
    repeats: int = 5
    steps: tuple = BENCH_STEPS
    seed: int = 0

    def __post_init__(self):
        for name in ("n_classes", "batch", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        steps = tuple(int(t) for t in self.steps)
        if not steps or min(steps) < 1:
            raise ValueError(f"steps must be integers >= 1, got {self.steps!r}")
        object.__setattr__(self, "steps", steps)
        n_in = parse_arch(self.arch).n_inputs
        if n_in is None:
            raise ValueError(f"the benchmark architecture must give its input size, got {self.arch!r}")
        side = int(round(np.sqrt(n_in)))
        if side * side != n_in:
            raise ValueError(f"the benchmark needs a square input (side x side pixels), got {n_in} inputs")

    @property
    def n_inputs(self) -> int:
        return parse_arch(self.arch).n_inputs


QUICK = dict(batch=10, repeats=2)


def synthetic_images(n: int, n_pixels: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` digit-like images in [0, 1] (3 Gaussian blobs each), shape (n, side, side),
    side = sqrt(n_pixels)."""
    side = int(round(np.sqrt(n_pixels)))
    yy, xx = np.mgrid[:side, :side]
    x = np.zeros((n, side, side))
    for i in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(0.25 * side, 0.75 * side, 2)
            x[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (rng.uniform(0.2, 0.7) * side) ** 2 * 8)
    return np.clip(x, 0.0, 1.0)


def bench_subject(settings: BenchSettings):
    """(network, images, labels, config): the benchmark network with its gains set, and one batch."""
    rng = np.random.default_rng(settings.seed)
    config = TrainConfig(dataset="mnist", arch=settings.arch, steps=BENCH_T_END, seed=settings.seed)
    images = synthetic_images(settings.batch, settings.n_inputs, rng)
    labels = rng.integers(0, settings.n_classes, settings.batch)
    net = build_network(config, settings.n_classes, images.shape[1:])
    init_gains(net, encode_images(images, config), config.avg_spike_init)
    return net, images, labels, config


def _set_engine(net, steps, every_step=False):
    """steps None: continuous time; else the clock with ``steps`` steps over the window."""
    if steps is None:
        return net.set_time("continuous")
    return net.set_time("discrete", steps, every_step=every_step)


def time_step(net, images, labels, config, steps, repeats: int, every_step: bool = False):
    """(best seconds per sample, spikes per sample) of one training step of ``images``."""
    _set_engine(net, steps, every_step)
    best = np.inf
    spikes = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, stats = batch_gradients(net, images, labels, config)
        best = min(best, time.perf_counter() - t0)
        spikes = sum(stats.spikes)
    return best / len(labels), spikes / len(labels)


def peak_memory_mb(net, images, labels, config, steps, every_step: bool = False) -> float:
    """Peak MB traced by tracemalloc over one training step (see the module docstring)."""
    _set_engine(net, steps, every_step)
    tracemalloc.start()
    try:
        batch_gradients(net, images, labels, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / 2 ** 20


def machine() -> dict:
    """The machine the numbers come from."""
    import numba

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "numba_threads": numba.get_num_threads(), "blas_threads": 1,
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}


def _warm_up(net, images, labels, config, steps_list):
    """Compile the kernels of both engines on a 2-sample batch (numba caches them)."""
    for steps in (None,) + tuple(steps_list):
        for every in (False, True):
            _set_engine(net, steps, every)
            batch_gradients(net, images[:2], labels[:2], config)


def run_bench(settings: BenchSettings, *, progress=None) -> dict:
    """The side-by-side benchmark (module docstring).

    Parameters
    ----------
    settings : BenchSettings
    progress : callable, optional
        Receives one line of text per measured row.

    Returns
    -------
    dict
        ``rows``: per T, ``steps``, ``continuous_s_per_sample``, ``discrete_s_per_sample``,
        ``continuous_peak_mb``, ``discrete_peak_mb``, ``speedup`` (discrete / continuous
        time), ``continuous_spikes_per_sample``, ``discrete_spikes_per_sample``,
        ``discrete_every_step_s_per_sample``, ``discrete_every_step_peak_mb``; and
        the settings, the machine and the memory method.
    """
    from threadpoolctl import threadpool_limits

    net, images, labels, config = bench_subject(settings)
    rows = []
    with threadpool_limits(1, user_api="blas"):
        _warm_up(net, images, labels, config, settings.steps)
        for steps in settings.steps:
            c_t = d_t = e_t = np.inf
            for _ in range(settings.repeats):  # alternate the engines: same load for all
                c, c_spk = time_step(net, images, labels, config, None, 1)
                d, d_spk = time_step(net, images, labels, config, steps, 1)
                e, _ = time_step(net, images, labels, config, steps, 1, every_step=True)
                c_t, d_t, e_t = min(c_t, c), min(d_t, d), min(e_t, e)
            row = {"steps": steps, "dt": BENCH_T_END / steps,
                   "continuous_s_per_sample": c_t, "discrete_s_per_sample": d_t,
                   "continuous_peak_mb": peak_memory_mb(net, images, labels, config, None),
                   "discrete_peak_mb": peak_memory_mb(net, images, labels, config, steps),
                   "speedup": d_t / c_t,
                   "continuous_spikes_per_sample": c_spk, "discrete_spikes_per_sample": d_spk,
                   "discrete_every_step_s_per_sample": e_t,
                   "discrete_every_step_peak_mb": peak_memory_mb(net, images, labels, config, steps, True)}
            rows.append(row)
            if progress is not None:
                progress(format_row(row))
    net.set_time("continuous")
    return {"arch": net.arch, "n_classes": settings.n_classes, "batch": settings.batch,
            "repeats": settings.repeats, "t_end": BENCH_T_END, "input": "5 current impulses per pixel",
            "memory": "tracemalloc peak of one training step (numpy arrays; BLAS scratch not traced)",
            "machine": machine(), "rows": rows}


def format_row(row: dict) -> str:
    return (f"T = {row['steps']:3d} (dt = {row['dt']:.3g}): continuous {1e3 * row['continuous_s_per_sample']:7.3f} "
            f"ms/sample {row['continuous_peak_mb']:6.1f} MB | discrete {1e3 * row['discrete_s_per_sample']:7.3f} "
            f"ms/sample {row['discrete_peak_mb']:6.1f} MB (x{row['speedup']:.2f}) | every step "
            f"{1e3 * row['discrete_every_step_s_per_sample']:7.3f} ms/sample "
            f"{row['discrete_every_step_peak_mb']:6.1f} MB")


def engine_scaling(settings: BenchSettings, *, steps=(5, 10, 20, 50, 100, 200), gains=(0.5, 1, 2, 4, 8),
                   gain_steps: int = 20, progress=None) -> dict:
    """How the cost of each engine grows with the number of time steps and of spikes.

    ``steps``: s/sample of both engines for each T (the continuous engine does not see T).
    ``gains``: the hidden layers' gains multiplied by each factor (more input current,
    more spikes); s/sample and spikes/sample of both engines (discrete with
    ``gain_steps`` steps).

    Returns
    -------
    dict with ``by_steps`` and ``by_spikes`` lists of rows, and the settings.
    """
    from threadpoolctl import threadpool_limits

    net, images, labels, config = bench_subject(settings)
    by_steps, by_spikes = [], []
    with threadpool_limits(1, user_api="blas"):
        _warm_up(net, images, labels, config, tuple(steps) + (gain_steps,))
        for T in steps:
            c, c_spk = time_step(net, images, labels, config, None, settings.repeats)
            d, d_spk = time_step(net, images, labels, config, T, settings.repeats)
            e, _ = time_step(net, images, labels, config, T, settings.repeats, every_step=True)
            by_steps.append({"steps": int(T), "continuous_s_per_sample": c, "discrete_s_per_sample": d,
                             "discrete_every_step_s_per_sample": e,
                             "continuous_spikes_per_sample": c_spk, "discrete_spikes_per_sample": d_spk})
            if progress is not None:
                progress(f"T = {T}: continuous {1e3 * c:.3f} ms, discrete {1e3 * d:.3f} ms, every step "
                         f"{1e3 * e:.3f} ms per sample")
        hidden = [layer for layer in net.layers[:-1] if layer.parameters()]
        base = [layer.gain.copy() for layer in hidden]
        try:
            for f in gains:
                for layer, g in zip(hidden, base):
                    layer.gain[:] = g * f
                c, c_spk = time_step(net, images, labels, config, None, settings.repeats)
                d, d_spk = time_step(net, images, labels, config, gain_steps, settings.repeats)
                by_spikes.append({"gain_factor": float(f), "continuous_s_per_sample": c,
                                  "discrete_s_per_sample": d, "continuous_spikes_per_sample": c_spk,
                                  "discrete_spikes_per_sample": d_spk, "steps": int(gain_steps)})
                if progress is not None:
                    progress(f"gain x{f}: continuous {1e3 * c:.3f} ms ({c_spk:.0f} spikes), "
                             f"discrete {1e3 * d:.3f} ms ({d_spk:.0f} spikes) per sample")
        finally:
            for layer, g in zip(hidden, base):
                layer.gain[:] = g
    net.set_time("continuous")
    return {"arch": net.arch, "batch": settings.batch, "repeats": settings.repeats, "t_end": BENCH_T_END,
            "machine": machine(), "by_steps": by_steps, "by_spikes": by_spikes}
