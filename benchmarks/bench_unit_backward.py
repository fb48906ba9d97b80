"""Sparse convolution backward: per-spike window walks against channel-parallel unit walks.

The record is the second convolution of ``15C5-P2-40C5-P2-300`` (40C5 on the
pooled 15 x 12 x 12 spikes: the sparse path) on ``--images`` real MNIST training
images, gains initialised as in training; its output gradient comes from the
count loss (with the supervisory spike) passed back through the layers above, and
the trainer's stabilisers apply. Both host functions --
:func:`eventsnn.engine.conv._backward_units_path` (one walk per spike) and
:func:`eventsnn.engine.unit_backward.backward_units_path` (two walks per unit over
all channels) -- run side by side in this process, alternating, ``--repeat``
times after one warm-up call each (compilation); reported: the best and the
median ms per sample of each, the ratio of the medians and the largest
difference of the results relative to their largest magnitude.

Usage::

    python benchmarks/bench_unit_backward.py [--images 50] [--repeat 7] [--data-dir data] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from eventsnn.checkpoint import build_network
from eventsnn.config import TrainConfig
from eventsnn.datasets import load_dataset
from eventsnn.engine.conv import _backward_units_path
from eventsnn.engine.unit_backward import backward_units_path, units_path_buffers
from eventsnn.loss import count_loss
from eventsnn.train import INIT_SAMPLES, encode_images, init_gains

ARCH = "15C5-P2-40C5-P2-300"
CONV2 = 2  # layer index of 40C5


def conv2_case(n_images: int, data_dir="data", seed: int = 0):
    """(conv record, grad_out, GradParams) of the second convolution on ``n_images`` MNIST
    training images, as in a training step of the default configuration."""
    cfg = TrainConfig(arch=ARCH)
    x, y = load_dataset("mnist", "train", data_dir)
    net = build_network(cfg, 10, x.shape[1:])
    init_gains(net, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
    idx = np.random.default_rng(seed).choice(len(y), n_images, replace=False)
    xs, records = encode_images(x[idx], cfg), []
    for layer in net.layers:
        xs, rec = layer.forward(xs, net.params, net.t_end)
        records.append(rec)
    cl = count_loss(xs, y[idx], steps=cfg.steps, t_end=cfg.t_end, desired=cfg.desired,
                    undesired=cfg.undesired, supervision=cfg.supervision)
    gp = cfg.grad_params()
    g = cl.grad
    last = len(net.layers) - 1
    for l in range(last, CONV2, -1):
        g = net.layers[l].backward(records[l], g, gp, need_input_grad=True,
                                   forced=cl.forced if l == last else None).events
    rec = records[CONV2].engine
    assert not rec.dense, "the second convolution must take the sparse path"
    return rec, g, gp


def run_path(path, rec, grad, gp, need_input=True):
    """One call of a units path on the real spikes of ``rec``: (seconds, flags, dKT, ent_dt, ent_da)."""
    KT, dKT_c, ent_dt, ent_da = units_path_buffers(rec, need_input)
    spikes = (rec.out_unit, rec.out_channel, rec.outputs.times, rec.out_slope, rec.out_row,
              rec.out_wstart)
    cap = gp.max_dt_du if gp.max_dt_du is not None else -1.0
    t0 = time.perf_counter()
    flags = path(rec, gp, spikes, grad, False, 0.0, cap, need_input, KT, dKT_c, ent_dt, ent_da)
    dt = time.perf_counter() - t0
    return dt, flags, dKT_c.sum(axis=0), ent_dt, ent_da


def rel_diff(a, b) -> float:
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return float(np.abs(a - b).max(initial=0.0) / scale) if scale else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with threadpool_limits(1, user_api="blas"):
        rec, grad, gp = conv2_case(args.images, args.data_dir)
        paths = {"per-spike (conv._backward_units_path)": _backward_units_path,
                 "per-unit (unit_backward.backward_units_path)": backward_units_path}
        results = {name: run_path(f, rec, grad, gp) for name, f in paths.items()}  # warm-up
        times = {name: [] for name in paths}
        for _ in range(args.repeat):
            for name, f in paths.items():
                times[name].append(run_path(f, rec, grad, gp)[0])
    (old, new) = (results[name] for name in paths)
    n = args.images
    rows = {name: {"best_ms_per_sample": 1e3 * min(t) / n,
                   "median_ms_per_sample": 1e3 * float(np.median(t)) / n} for name, t in times.items()}
    old_name, new_name = paths
    out = {
        "arch": ARCH, "images": n, "repeat": args.repeat, "numba_threads": numba.get_num_threads(),
        "spikes": int(rec.outputs.n_events), "entries": int(rec.units.n_entries), "paths": rows,
        "ratio_median": rows[old_name]["median_ms_per_sample"] / rows[new_name]["median_ms_per_sample"],
        "flags_equal": bool(np.array_equal(old[1], new[1])),
        "rel_diff": {"d_weight": rel_diff(old[2], new[2]), "ent_dt": rel_diff(old[3], new[3]),
                     "ent_da": rel_diff(old[4], new[4])},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{ARCH}, second convolution (sparse path): {n} images, {out['spikes']} output spikes, "
          f"{out['entries']} entries, numba threads {out['numba_threads']}, {args.repeat} repetitions")
    for name, r in rows.items():
        print(f"  {name:48s} best {r['best_ms_per_sample']:8.3f}  median "
              f"{r['median_ms_per_sample']:8.3f} ms/sample")
    print(f"  ratio (medians) {out['ratio_median']:.2f}x; flags equal: {out['flags_equal']}; "
          f"max relative difference {out['rel_diff']}")


if __name__ == "__main__":
    main()
