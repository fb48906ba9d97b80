"""Dense-layer forward throughput of the exact layer sweep, in neuron-event updates per second.

One "neuron-event update" is one input event reaching one neuron of the layer
(n_events x n_neurons per sample). The layer has 800 neurons; each sample has
1000-5000 input events from 784 sources at random times in (0, 5] (sparse
path: about one group per event, so every update also screens an interval) and,
for comparison, an MNIST-like image as T = 5 current impulses per pixel
(dense path: 5 groups of 784 events, BLAS). Weights are scaled so that the
neurons fire about once per sample. Measured with 1 numba/BLAS thread (per
core) and with all threads, best of ``--repeat`` runs, after a warm-up.

Usage::

    python benchmarks/bench_dense_forward.py [--samples 20] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numba
import numpy as np

from eventsnn import NeuronParams, SpikeTrains
from eventsnn.encode import current
from eventsnn.engine.sweep import dense_forward

N_OUT = 800
N_IN = 784


def random_events(rng, n_samples, n_events, t_end=5.0):
    times = rng.uniform(0.0, t_end, (n_samples, n_events))
    src = rng.integers(0, N_IN, (n_samples, n_events))
    smp = np.repeat(np.arange(n_samples), n_events)
    return SpikeTrains.from_unsorted(times.ravel(), src.ravel(), np.ones(times.size), smp, n_samples, N_IN)


def calibrated_weight(rng, inputs, params, t_end):
    """Random weights scaled (bisection on a gain) to about one spike per neuron and sample."""
    w0 = rng.normal(0.0, 1.0, (N_OUT, N_IN)) + 0.5
    lo, hi = 1e-4, 10.0
    probe = inputs.select(range(min(4, inputs.n_samples)))
    for _ in range(30):
        g = np.sqrt(lo * hi)
        out, _ = dense_forward(probe, w0 * g, params, t_end)
        if out.n_events / (probe.n_samples * N_OUT) < 1.0:
            lo = g
        else:
            hi = g
    return w0 * np.sqrt(lo * hi)


def measure(inputs, weight, params, t_end, repeat):
    dense_forward(inputs.select([0]), weight, params, t_end)  # warm-up / compile
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out, rec = dense_forward(inputs, weight, params, t_end)
        best = min(best, time.perf_counter() - t0)
    return best, out, rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    rng = np.random.default_rng(0)
    params = NeuronParams()
    t_end = 5.0
    cases = [(f"random times, {n} events", random_events(rng, args.samples, n)) for n in (1000, 2000, 5000)]
    img = rng.random((args.samples, N_IN)) * (rng.random((args.samples, N_IN)) < 0.2)
    cases.append(("image, T=5 current impulses (3920 events)", current((img - 0.1307) / 0.3081, steps=5)))
    rows = []
    max_threads = numba.config.NUMBA_NUM_THREADS
    for name, inputs in cases:
        weight = calibrated_weight(rng, inputs, params, t_end)
        for threads in sorted({1, max_threads}):
            numba.set_num_threads(threads)
            ctx = threadpool_limits(threads) if threadpool_limits else None
            if ctx:
                ctx.__enter__()
            try:
                sec, out, rec = measure(inputs, weight, params, t_end, args.repeat)
            finally:
                if ctx:
                    ctx.__exit__(None, None, None)
            updates = inputs.n_events * N_OUT
            rows.append({
                "case": name, "threads": threads, "path": "dense/BLAS" if rec.dense else "sparse",
                "events_per_sample": inputs.n_events / inputs.n_samples,
                "spikes_per_neuron": out.n_events / (inputs.n_samples * N_OUT),
                "ms_per_sample": 1e3 * sec / inputs.n_samples,
                "updates_per_s": updates / sec,
                "updates_per_s_per_core": updates / sec / threads,
            })
    numba.set_num_threads(max_threads)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": max_threads,
               "numba": numba.__version__, "numpy": np.__version__}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return
    print(f"machine: {machine}")
    print(f"{'case':45s} {'thr':>3s} {'path':>10s} {'spk/neur':>8s} {'ms/sample':>9s} {'updates/s/core':>15s}")
    for r in rows:
        print(f"{r['case']:45s} {r['threads']:3d} {r['path']:>10s} {r['spikes_per_neuron']:8.2f} "
              f"{r['ms_per_sample']:9.2f} {r['updates_per_s_per_core']:15.3e}")


if __name__ == "__main__":
    main()
