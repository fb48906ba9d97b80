"""Planned spike buffers: re-run only the overflowing units, or the whole batch.

The sparse convolution plans every unit's spike buffer from its number of input
groups (``PLANNED_SPIKES_PER_NEURON`` per channel); a unit that fires more is
swept again with an exact buffer. ``eventsnn.engine.sweep.run_planned`` re-runs
only those units; before it, the whole batch was swept again. A trained
15C5-P2-40C5-P2-300 outgrows its plan at a handful of the second convolution's
positions in almost every batch, so the whole-batch re-run doubled the cost of
that layer's sweep.

This times the forward of a checkpoint's convolution layer (default: the third
layer, 40C5) on batches of real MNIST images, with the shipped helper and with
the whole-batch re-run (written out here, the same kernels), taking turns batch
by batch in one process, and checks that both give the same spikes. With
``--step`` it times whole training steps instead (forward, loss, backward, AdamW,
as ``bench_layers.py``; the two plans take turns on one network).

Usage::

    python benchmarks/bench_planned_rerun.py CHECKPOINT [--layer 2] [--batches 10] [--data-dir data]
    python benchmarks/bench_planned_rerun.py CHECKPOINT --step [--batches 6]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from bench_layers import Timed  # this directory is on sys.path when run as a script
from threadpoolctl import threadpool_limits

from eventsnn.checkpoint import load_checkpoint
from eventsnn.datasets import load_dataset
from eventsnn.engine import conv as C
from eventsnn.engine.sweep import csr_offsets, run_planned, spike_buffers
from eventsnn.train import encode_images


def rerun_whole_batch(run, caps, make_buffers=spike_buffers):
    """The previous plan: while any item overflowed, sweep every item again with exact sizes."""
    caps = np.asarray(caps, dtype=np.int64)
    counts = np.zeros(caps.size, dtype=np.int64)
    while True:
        offsets = csr_offsets(caps)
        buffers = make_buffers(int(offsets[-1]))
        run(np.arange(caps.size, dtype=np.int64), offsets, counts, buffers)
        if np.all(counts <= caps):
            return offsets, counts, buffers
        caps = counts.copy()


def time_steps(args, cfg, net, x, y, rng, plans):
    """Whole training steps of the network under each plan, taking turns (the order
    alternating batch by batch)."""
    timed = Timed(args.checkpoint, cfg, net)
    spent = dict.fromkeys(plans, 0.0)
    names = list(plans)
    with threadpool_limits(1, user_api="blas"):
        for b in range(args.batches + 1):  # batch 0 compiles / warms up, not counted
            idx = rng.integers(0, len(y), cfg.batch_size)
            for name in (names if b % 2 else names[::-1]):
                C.run_planned = plans[name]
                t0 = time.perf_counter()
                timed.step(x[idx], y[idx], count=False)
                if b:
                    spent[name] += time.perf_counter() - t0
    C.run_planned = run_planned
    n = args.batches * cfg.batch_size
    print(f"{args.checkpoint}: whole training steps, {n} samples per plan, "
          f"numba threads {numba.get_num_threads()}")
    for name, s in spent.items():
        print(f"re-run {name:24s} {1e3 * s / n:8.2f} ms / sample (training step)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--layer", type=int, default=2, help="index of the convolution layer (default 2)")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--step", action="store_true", help="time whole training steps")
    args = ap.parse_args(argv)
    ck = load_checkpoint(args.checkpoint)
    cfg, net = ck.config, ck.network
    x, y = load_dataset("mnist", "train", args.data_dir)
    rng = np.random.default_rng(0)
    plans = {"only overflowing units": run_planned, "whole batch": rerun_whole_batch}
    if args.step:
        return time_steps(args, cfg, net, x, y, rng, plans)
    spent = dict.fromkeys(plans, 0.0)
    over_batches = over_units = n = 0
    for b in range(args.batches + 1):  # batch 0 compiles / warms up, not counted
        xs = encode_images(x[rng.integers(0, len(x), cfg.batch_size)], cfg)
        for layer in net.layers[:args.layer]:
            xs, _ = layer.forward(xs, net.params, net.t_end)
        results = {}
        for name, plan in plans.items():
            C.run_planned = plan  # _scan_units_host looks the helper up at call time
            t0 = time.perf_counter()
            out, rec = net.layers[args.layer].forward(xs, net.params, net.t_end)
            if b:
                spent[name] += time.perf_counter() - t0
            results[name] = out
        C.run_planned = run_planned
        a, c = results.values()
        assert np.array_equal(a.times, c.times) and np.array_equal(a.neurons, c.neurons), \
            "the two plans disagree"
        if b:
            ul, eng = rec.engine.units, rec.engine
            caps = np.minimum(np.diff(ul.unit_group_offsets), C.PLANNED_SPIKES_PER_NEURON) * \
                eng.geometry.c_out
            k = int((np.bincount(eng.out_unit, minlength=caps.size) > caps).sum())
            over_units += k
            over_batches += k > 0
            n += cfg.batch_size
    print(f"{args.checkpoint}: layer {args.layer} ({net.layers[args.layer]!r}), {n} samples, "
          f"numba threads {numba.get_num_threads()}")
    print(f"batches with an overflowing unit: {over_batches} of {args.batches} "
          f"({over_units / max(args.batches, 1):.1f} units per batch of "
          f"{cfg.batch_size * rec.engine.geometry.n_pos})")
    for name, s in spent.items():
        print(f"re-run {name:24s} {1e3 * s / n:8.2f} ms / sample (forward of the layer)")


if __name__ == "__main__":
    main()
