"""Training throughput of a network on MNIST, with the time of every layer's forward and backward.

One training step is timed piece by piece over ``--batches`` batches of real
MNIST images (batch 50, default configuration, gains initialised as in
training): the exact forward of each layer, the loss, the reverse-time
backward of each layer (with the trainer's stabilisers and supervisory spike),
and the optimiser step. BLAS runs single-threaded, as in training.

Usage::

    python benchmarks/bench_layers.py [--arch 15C5-P2-40C5-P2-300] [--batches 10] [--json]
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
from eventsnn.loss import count_loss
from eventsnn.optim import AdamW, clip_grad_norm
from eventsnn.train import INIT_SAMPLES, encode_images, init_gains

EPOCH = 60000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="15C5-P2-40C5-P2-300")
    ap.add_argument("--pool", default="adjusted-avg")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = TrainConfig(arch=args.arch, pool=args.pool)
    x, y = load_dataset("mnist", "train", args.data_dir)
    net = build_network(cfg, 10, x.shape[1:])
    init_gains(net, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
    opt = AdamW([a for _, a in net.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gp = cfg.grad_params()
    n_layers = len(net.layers)
    fwd = np.zeros(n_layers)
    bwd = np.zeros(n_layers)
    spikes = np.zeros(n_layers)
    other = 0.0
    bs = cfg.batch_size
    rng = np.random.default_rng(0)
    with threadpool_limits(1, user_api="blas"):
        for b in range(args.batches + 1):  # batch 0 compiles / warms up, not counted
            idx = rng.integers(0, len(y), bs)
            t0 = time.perf_counter()
            inputs = encode_images(x[idx], cfg)
            t_other = time.perf_counter() - t0
            xs, records, tf = inputs, [], np.zeros(n_layers)
            for l, layer in enumerate(net.layers):
                t0 = time.perf_counter()
                xs, rec = layer.forward(xs, net.params, net.t_end)
                tf[l] = time.perf_counter() - t0
                records.append(rec)
                if b:
                    spikes[l] += xs.n_events
            t0 = time.perf_counter()
            cl = count_loss(xs, y[idx], steps=cfg.steps, t_end=cfg.t_end, desired=cfg.desired,
                            undesired=cfg.undesired, supervision=cfg.supervision)
            t_other += time.perf_counter() - t0
            g, tb, flat = cl.grad, np.zeros(n_layers), []
            for l in range(n_layers - 1, -1, -1):
                t0 = time.perf_counter()
                lg = net.layers[l].backward(records[l], g, gp, need_input_grad=l > 0,
                                            forced=cl.forced if l == n_layers - 1 else None)
                tb[l] = time.perf_counter() - t0
                g = lg.events
                if lg.weight is not None:
                    flat = [lg.weight] + ([lg.gain, lg.offset] if lg.gain is not None else []) + flat
            t0 = time.perf_counter()
            clip_grad_norm(flat, cfg.grad_clip)
            opt.step(flat)
            t_other += time.perf_counter() - t0
            if b:
                fwd += tf
                bwd += tb
                other += t_other
    n = args.batches * bs
    total = (fwd.sum() + bwd.sum() + other) / n
    rows = [{"layer": l, "kind": repr(layer), "forward_ms_per_sample": 1e3 * fwd[l] / n,
             "backward_ms_per_sample": 1e3 * bwd[l] / n, "events_out_per_sample": spikes[l] / n}
            for l, layer in enumerate(net.layers)]
    out = {"arch": args.arch, "pool": args.pool, "numba_threads": numba.get_num_threads(), "samples": n,
           "ms_per_sample": 1e3 * total, "samples_per_s": 1.0 / total, "epoch_minutes": total * EPOCH / 60,
           "other_ms_per_sample": 1e3 * other / n, "layers": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.arch} (pool {args.pool}), {n} samples, numba threads {numba.get_num_threads()}")
    print(f"{'layer':60s} {'fwd ms':>8s} {'bwd ms':>8s} {'events out':>10s}  (per sample)")
    for r in rows:
        print(f"{r['kind'][:60]:60s} {r['forward_ms_per_sample']:8.2f} {r['backward_ms_per_sample']:8.2f} "
              f"{r['events_out_per_sample']:10.0f}")
    print(f"{'encode, loss, clip, AdamW':60s} {out['other_ms_per_sample']:8.2f}")
    print(f"total {out['ms_per_sample']:.2f} ms/sample = {out['samples_per_s']:.1f} samples/s "
          f"-> {out['epoch_minutes']:.1f} min per 60k epoch")


if __name__ == "__main__":
    main()
