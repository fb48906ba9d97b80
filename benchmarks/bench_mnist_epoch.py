"""Training time per MNIST epoch of 784-800, against the time of its dense matmuls alone.

Measures, in one process and side by side:

* ``train``: seconds per training sample of the full step (encode, exact
  forward of both layers, count loss, reverse-time backward, clip, AdamW) with
  the default configuration (batch 50, T = 5), over ``--batches`` batches of
  real MNIST images after the gain initialisation;
* ``matmul (engine)``: the two BLAS products the engine itself performs per
  batch for the input layer (forward currents X W^T over the distinct rows of
  X, and the weight gradient gamma X), same shapes, same number of batches;
* ``matmul (clock T=5)``: the products a clock-driven simulation of the same
  layer would do (one W x per time step forward and backward: 5x the rows).

The ratio train / matmul says how far the event machinery is from the dense
linear-algebra floor. BLAS runs single-threaded, as in training.

Usage::

    python benchmarks/bench_mnist_epoch.py [--batches 200] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from eventsnn.checkpoint import build_network
from eventsnn.config import TrainConfig
from eventsnn.datasets import load_dataset
from eventsnn.optim import AdamW
from eventsnn.train import INIT_SAMPLES, encode_images, init_gains, train_step

EPOCH = 60000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = TrainConfig()
    x, y = load_dataset("mnist", "train", args.data_dir)
    net = build_network(cfg, 10, x.shape[1:])
    init_gains(net, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
    opt = AdamW([a for _, a in net.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = cfg.batch_size
    n = args.batches * bs
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))[:n]
    rows = {}
    with threadpool_limits(1, user_api="blas"):
        train_step(net, opt, x[order[:bs]], y[order[:bs]], cfg)  # compile / warm up
        t0 = time.perf_counter()
        for a in range(0, n, bs):
            idx = order[a:a + bs]
            train_step(net, opt, x[idx], y[idx], cfg)
        rows["train"] = (time.perf_counter() - t0) / n
        w = net.layers[0].effective_weight
        for name, reps in (("matmul (engine)", 1), ("matmul (clock T=5)", cfg.steps)):
            X = rng.standard_normal((bs * reps, w.shape[1]))
            G = rng.standard_normal((w.shape[0], bs * reps))
            t0 = time.perf_counter()
            for _ in range(args.batches):
                X @ w.T
                G @ X
            rows[name] = (time.perf_counter() - t0) / n
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "numba_threads": numba.get_num_threads(),
                    "blas_threads": 1},
        "samples_measured": n,
        "seconds_per_sample": rows,
        "epoch_seconds": {k: v * EPOCH for k, v in rows.items()},
        "ratio_train_to_matmul_engine": rows["train"] / rows["matmul (engine)"],
        "ratio_train_to_matmul_clock": rows["train"] / rows["matmul (clock T=5)"],
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{n} samples, numba threads {numba.get_num_threads()}, BLAS threads 1")
    for k, v in rows.items():
        print(f"{k:20s} {1e3 * v:8.3f} ms/sample  -> {v * EPOCH:7.1f} s per 60k epoch")
    print(f"ratio train / matmul (engine)     {out['ratio_train_to_matmul_engine']:.1f}")
    print(f"ratio train / matmul (clock T=5)  {out['ratio_train_to_matmul_clock']:.1f}")


if __name__ == "__main__":
    main()
