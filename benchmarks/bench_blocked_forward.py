"""Forward of event inputs: group by group against blocked screening, side by side.

Two layers of ``15C5-P2-40C5-P2-300`` on ``--images`` real MNIST training images
(gains initialised as in training) take event inputs: the second convolution
(40C5 on the pooled 15 x 12 x 12 spikes, sparse path) and the dense 640 -> 300
layer (the pooled 40 x 4 x 4 spikes, event path). Each runs its forward in this
process with ``block=0`` (every group swept for every neuron: ``_scan_units`` /
``_scan``) and with ``block=SCAN_BLOCK`` (``_scan_units_blocked``), alternating,
``--repeat`` times after a warm-up call each; reported: best and median ms per
sample, the ratio of the medians, and the largest spike-time difference (the
spike lists must be identical).

Usage::

    python benchmarks/bench_blocked_forward.py [--images 50] [--repeat 7] [--data-dir data] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from eventsnn.checkpoint import build_network
from eventsnn.config import TrainConfig
from eventsnn.crossing import CROSSING_MAX_ITER, CROSSING_RTOL
from eventsnn.datasets import load_dataset
from eventsnn.engine import conv as C
from eventsnn.engine import sweep as S
from eventsnn.train import INIT_SAMPLES, encode_images, init_gains

ARCH = "15C5-P2-40C5-P2-300"


def layer_inputs(n_images: int, data_dir, seed: int = 0):
    """(config, network, inputs of every layer) on ``n_images`` MNIST training images."""
    cfg = TrainConfig(arch=ARCH)
    x, _ = load_dataset("mnist", "train", data_dir)
    net = build_network(cfg, 10, x.shape[1:])
    init_gains(net, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
    idx = np.random.default_rng(seed).choice(len(x), n_images, replace=False)
    xs, ins = encode_images(x[idx], cfg), []
    for layer in net.layers:
        ins.append(xs)
        xs, _ = layer.forward(xs, net.params, net.t_end)
    return cfg, net, ins


def conv_runner(cfg, layer, inputs, block):
    geom = layer.geometry
    K = layer.effective_weight.reshape(geom.weight_shape)
    scan = functools.partial(C._scan_units_host, block=block)

    def run():
        rec = C._sparse_conv_forward(inputs, K, geom, cfg.neuron_params(), cfg.t_end, CROSSING_RTOL,
                                     CROSSING_MAX_ITER, scan_units=scan)
        return rec.outputs

    return run


def dense_runner(cfg, layer, inputs, block):
    wt = np.ascontiguousarray(layer.effective_weight.T)

    def run():
        groups = S.group_events(inputs, cfg.t_end)
        return S.scan_groups(groups, layer.n_out, cfg.neuron_params(), cfg.t_end, weight_t=wt,
                             block=block).outputs

    return run


def compare(name, make, n_images, repeat):
    old, new = make(0), make(S.SCAN_BLOCK)
    a, b = old(), new()  # warm-up (compilation) and the results
    if not (np.array_equal(a.offsets, b.offsets) and np.array_equal(a.neurons, b.neurons)):
        raise AssertionError(f"{name}: the blocked forward found other spikes")
    times = {"group by group": [], "blocked": []}
    for _ in range(repeat):
        for key, fn in (("group by group", old), ("blocked", new)):
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) / n_images * 1e3)
    row = {"layer": name, "spikes": int(a.n_events),
           "max_time_difference": float(np.abs(a.times - b.times).max()) if a.n_events else 0.0}
    for key, ts in times.items():
        row[key] = {"best_ms": float(np.min(ts)), "median_ms": float(np.median(ts))}
    row["ratio_of_medians"] = row["group by group"]["median_ms"] / row["blocked"]["median_ms"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg, net, ins = layer_inputs(args.images, args.data_dir)
    conv2, dense = net.layers[2], net.layers[4]
    with threadpool_limits(1, user_api="blas"):
        rows = [
            compare("40C5 (sparse conv)", lambda b: conv_runner(cfg, conv2, ins[2], b), args.images,
                    args.repeat),
            compare("dense 640 -> 300", lambda b: dense_runner(cfg, dense, ins[4], b), args.images,
                    args.repeat),
        ]
    if args.json:
        print(json.dumps({"images": args.images, "threads": numba.get_num_threads(), "rows": rows}, indent=1))
        return
    print(f"{ARCH}: {args.images} images, numba threads {numba.get_num_threads()}, ms per sample")
    print(f"{'layer':22s} {'spikes':>7s} {'old best':>9s} {'old med':>8s} {'new best':>9s} {'new med':>8s}"
          f" {'ratio':>6s} {'max |dt|':>9s}")
    for r in rows:
        o, n = r["group by group"], r["blocked"]
        print(f"{r['layer']:22s} {r['spikes']:7d} {o['best_ms']:9.2f} {o['median_ms']:8.2f} {n['best_ms']:9.2f}"
              f" {n['median_ms']:8.2f} {r['ratio_of_medians']:6.2f} {r['max_time_difference']:9.1e}")


if __name__ == "__main__":
    main()
