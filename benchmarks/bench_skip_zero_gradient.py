"""The backward with and without the samples that carry no gradient.

Once a network is trained, the count loss is zero for most samples of a batch:
none of their output spikes (nor their supervisory spike) has a gradient, so
every window of theirs contributes exact zeros. The backward of every layer
walks only the samples with a gradient (``eventsnn.engine.sweep.gradient_samples``).
This times the gradients of the same batches (``eventsnn.train.batch_gradients``:
forward, count loss, backward; no update, so both see the same network) with
that restriction (shipped) and without it (every sample walked, as before),
taking turns batch by batch in one process, and checks that the gradients are
bit-identical.

Usage::

    NUMBA_NUM_THREADS=2 python benchmarks/bench_skip_zero_gradient.py [CHECKPOINT] [--batches 10] [--data-dir data]
        [--time discrete]

``--time discrete`` runs the checkpoint's network on the clock (the official
algorithm, ``T = steps``), whose backward skips the same samples.

CHECKPOINT defaults to the committed epoch-12 network of the declared elastic
run (``docs/runs/conv-elastic-40/epoch-012.h5``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numba
import numpy as np
from bench_freed_memory import DEFAULT_CHECKPOINT  # this directory is on sys.path when run as a script
from threadpoolctl import threadpool_limits

from eventsnn import augment
from eventsnn.allocator import keep_freed_memory
from eventsnn.checkpoint import load_checkpoint
from eventsnn.datasets import load_dataset
from eventsnn.engine import discrete, sweep
from eventsnn.train import augment_images, batch_gradients


def every_sample(n_samples, spike_samples, grad, forced=None):
    """The previous behaviour: every sample's windows are walked."""
    return np.ones(n_samples, dtype=np.bool_)


ARMS = {"every sample (before)": every_sample, "samples with a gradient (shipped)": sweep.gradient_samples}


def use(fn):
    sweep.gradient_samples = fn  # sweep.with_gradient looks it up there
    discrete.gradient_samples = fn  # the clock's backward has its own reference


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--time", choices=("continuous", "discrete"), default="continuous",
                    help="engine: exact continuous time, or the clock (T = the checkpoint's steps)")
    args = ap.parse_args(argv)
    keep_freed_memory()  # as in training
    x, y = load_dataset("mnist", "train", args.data_dir)
    ck = load_checkpoint(args.checkpoint)
    cfg, net = ck.config, ck.network
    if args.time != cfg.time:
        cfg = dataclasses.replace(cfg, time=args.time)
        net.set_time(cfg.time, cfg.steps if cfg.time == "discrete" else None)
    rng = np.random.default_rng(args.seed)
    n_all = (args.batches + 1) * cfg.batch_size
    order = rng.permutation(len(y))[:n_all]
    transforms = augment.draw_epoch(cfg.augment, rng, n_all)  # the run's own augmentation
    names = list(ARMS)
    spent = dict.fromkeys(names, 0.0)
    active = []
    same = True
    try:
        with threadpool_limits(1, user_api="blas"):
            for b in range(args.batches + 1):  # batch 0 compiles / warms up, not counted
                a = b * cfg.batch_size
                idx = order[a:a + cfg.batch_size]
                images = augment_images(x[idx], transforms[a:a + cfg.batch_size], cfg)
                grads = {}
                for name in (names if b % 2 else names[::-1]):
                    use(ARMS[name])
                    t0 = time.perf_counter()
                    grads[name], _ = batch_gradients(net, images, y[idx], cfg)
                    if b:
                        spent[name] += time.perf_counter() - t0
                same &= all(np.array_equal(p, q) for p, q in zip(*grads.values()))
                if b:  # samples of the batch with a gradient (from the output layer's loss)
                    use(_counting(active))
                    batch_gradients(net, images, y[idx], cfg)
    finally:
        use(ARMS[names[1]])
    n = args.batches * cfg.batch_size
    print(f"{args.checkpoint} ({cfg.arch}, augment {cfg.augment}, {cfg.time} time): gradients of {n} "
          f"training samples per arm, numba threads {numba.get_num_threads()}")
    print(f"samples with a gradient per batch of {cfg.batch_size}: {' '.join(map(str, active))}")
    for name in names:
        print(f"{name:36s} {1e3 * spent[name] / n:8.2f} ms / sample (forward, loss, backward)")
    print(f"gradients bit-identical: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


def _counting(active: list):
    """gradient_samples that records, for the output layer (its first call), how many samples are active."""
    seen = []

    def fn(n_samples, spike_samples, grad, forced=None):
        out = ARMS["samples with a gradient (shipped)"](n_samples, spike_samples, grad, forced)
        if not seen:
            seen.append(1)
            active.append(int(out.sum()))
        return out
    return fn


if __name__ == "__main__":
    main()
