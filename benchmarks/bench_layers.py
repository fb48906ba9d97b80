"""Training throughput of a network on MNIST, with the time of every layer's forward and backward.

One training step is timed piece by piece over ``--batches`` batches of real
MNIST images (batch 50): the exact forward of each layer, the loss, the
reverse-time backward of each layer (with the trainer's stabilisers and
supervisory spike), and the optimiser step. BLAS runs single-threaded, as in
training.

The network is either freshly initialised (``--arch``, ``--pool``, default
configuration, gains initialised as in training) or the trained network of a
checkpoint (``--checkpoint``, with its own configuration). A trained network
fires differently from a freshly initialised one -- the second convolution of
15C5-P2-40C5-P2-300 fires several times more after a few epochs -- so the time
of a step changes as training goes on. ``--checkpoint`` may be repeated, and
``--init`` adds the freshly initialised network of the first checkpoint's
architecture: the networks are then timed side by side in this one process,
taking turns batch by batch on the same images, so that they can be compared
on this noisy machine.

Usage::

    python benchmarks/bench_layers.py [--arch 15C5-P2-40C5-P2-300] [--batches 10] [--json]
    python benchmarks/bench_layers.py --checkpoint runs/RUN/epoch-011.h5 --init [--batches 10]
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from eventsnn.checkpoint import build_network, load_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.datasets import load_dataset
from eventsnn.loss import count_loss
from eventsnn.optim import AdamW, clip_grad_norm
from eventsnn.train import INIT_SAMPLES, encode_images, init_gains

EPOCH = 60000


class Timed:
    """One network under test, with its optimiser and its accumulated times."""

    def __init__(self, name, cfg, net):
        self.name, self.cfg, self.net = name, cfg, net
        self.opt = AdamW([a for _, a in net.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(net.layers)
        self.fwd, self.bwd, self.spikes, self.other = np.zeros(n), np.zeros(n), np.zeros(n), 0.0

    def step(self, xb, yb, count: bool):
        """One timed training step on the images ``xb`` with labels ``yb``."""
        cfg, net = self.cfg, self.net
        n_layers = len(net.layers)
        gp = cfg.grad_params()
        t0 = time.perf_counter()
        xs = encode_images(xb, cfg)
        t_other = time.perf_counter() - t0
        records, tf = [], np.zeros(n_layers)
        for l, layer in enumerate(net.layers):
            t0 = time.perf_counter()
            xs, rec = layer.forward(xs, net.params, net.t_end)
            tf[l] = time.perf_counter() - t0
            records.append(rec)
            if count:
                self.spikes[l] += xs.n_events
        t0 = time.perf_counter()
        cl = count_loss(xs, yb, steps=cfg.steps, t_end=cfg.t_end, desired=cfg.desired,
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
        self.opt.step(flat)
        t_other += time.perf_counter() - t0
        if count:
            self.fwd += tf
            self.bwd += tb
            self.other += t_other

    def summary(self, n: int) -> dict:
        total = (self.fwd.sum() + self.bwd.sum() + self.other) / n
        rows = [{"layer": l, "kind": repr(layer), "forward_ms_per_sample": 1e3 * self.fwd[l] / n,
                 "backward_ms_per_sample": 1e3 * self.bwd[l] / n,
                 "events_out_per_sample": self.spikes[l] / n}
                for l, layer in enumerate(self.net.layers)]
        return {"network": self.name, "arch": self.cfg.arch, "pool": self.cfg.pool, "samples": n,
                "ms_per_sample": 1e3 * total, "samples_per_s": 1.0 / total,
                "epoch_minutes": total * EPOCH / 60, "other_ms_per_sample": 1e3 * self.other / n,
                "layers": rows}


def fresh(cfg: TrainConfig, x) -> Timed:
    net = build_network(cfg, 10, x.shape[1:])
    init_gains(net, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
    return Timed(f"{cfg.arch} (initialised)", cfg, net)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="15C5-P2-40C5-P2-300")
    ap.add_argument("--pool", default="adjusted-avg")
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="time this checkpoint's trained network (may be repeated; --arch/--pool "
                         "then ignored)")
    ap.add_argument("--init", action="store_true",
                    help="with --checkpoint: also time the freshly initialised network of the "
                         "first checkpoint's configuration, side by side")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.init and not args.checkpoint:
        ap.error("--init compares with a checkpoint: give --checkpoint too")
    x, y = load_dataset("mnist", "train", args.data_dir)
    nets = []
    for path in args.checkpoint:
        ck = load_checkpoint(path)
        what = f"average of {len(ck.averaged_from)}" if ck.averaged_from else f"epoch {ck.epoch}"
        nets.append(Timed(f"{path} ({what})", ck.config, ck.network))
    if args.init or not nets:
        cfg = nets[0].cfg if nets else TrainConfig(arch=args.arch, pool=args.pool)
        nets.append(fresh(cfg, x))
    rng = np.random.default_rng(0)
    bs = nets[0].cfg.batch_size
    with threadpool_limits(1, user_api="blas"):
        for b in range(args.batches + 1):  # batch 0 compiles / warms up, not counted
            idx = rng.integers(0, len(y), bs)
            for t in nets:  # the networks take turns on the same images
                t.step(x[idx], y[idx], count=b > 0)
    n = args.batches * bs
    out = {"numba_threads": numba.get_num_threads(), "networks": [t.summary(n) for t in nets]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for s in out["networks"]:
        print(f"{s['network']}: {s['arch']} (pool {s['pool']}), {n} samples, "
              f"numba threads {out['numba_threads']}")
        print(f"{'layer':60s} {'fwd ms':>8s} {'bwd ms':>8s} {'events out':>10s}  (per sample)")
        for r in s["layers"]:
            print(f"{r['kind'][:60]:60s} {r['forward_ms_per_sample']:8.2f} "
                  f"{r['backward_ms_per_sample']:8.2f} {r['events_out_per_sample']:10.0f}")
        print(f"{'encode, loss, clip, AdamW':60s} {s['other_ms_per_sample']:8.2f}")
        print(f"total {s['ms_per_sample']:.2f} ms/sample = {s['samples_per_s']:.1f} samples/s "
              f"-> {s['epoch_minutes']:.1f} min per 60k epoch\n")


if __name__ == "__main__":
    main()
