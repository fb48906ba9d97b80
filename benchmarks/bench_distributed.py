"""Data-parallel training on Dask against one process: step time, bytes and time of communication.

Measures, in one client process and side by side, for a network on real
MNIST images (default configuration, batch 50, BLAS single-threaded):

* ``single``: the training step in this process (:class:`eventsnn.train.LocalSteps`,
  numba over all cores);
* ``dask-1`` / ``dask-2``: the same steps with :class:`eventsnn.distributed.DataParallel`
  on a ``LocalCluster`` of 1 worker (all cores as numba threads) and of 2
  workers (the cores shared out).

The three runners train their own copy of the same network on the same
batches, interleaved round by round (``--rounds`` rounds of ``--steps``
steps each; every figure is the median over the rounds of its mean per step
in the round), so that the load of a shared machine hits them alike. After each round the weights
are compared with the single-process weights (max |difference|: the
summation-order divergence).

For the Dask runs: the payload per step (parameters out, gradients back), the
exchange time (client sends parameters -> client holds every gradient), the
slowest worker's compute time, the overhead (exchange - compute) and the
client's update (sum, clip, AdamW).

From the measurements the script prints the parameters of the speed-up model
of docs/performance.md ("Scale-out on Dask") and its prediction for N
machines (exchange cost alpha + bytes / beta fitted to echo exchanges of 1/4, 1 and 4
times the parameter vector with 1 and 2 workers, no compute; or given with
``--latency`` s and ``--bandwidth`` GB/s).

Usage::

    python benchmarks/bench_distributed.py [--arch 784-800] [--rounds 5] [--steps 10] [--warmup 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import resource
import time

import numpy as np
from threadpoolctl import threadpool_limits

from eventsnn import distributed as dist
from eventsnn.augment import Transforms
from eventsnn.checkpoint import build_network
from eventsnn.config import TrainConfig
from eventsnn.datasets import load_dataset
from eventsnn.optim import AdamW
from eventsnn.train import INIT_SAMPLES, LocalSteps, batch_gradients, encode_images, init_gains


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Echo:
    """A worker-side actor that returns an array of the size it received (the exchange, no compute)."""

    def call(self, flat):
        return flat.copy()


def exchange_times(client, sizes, repeat):
    """Median seconds of sending a float64 vector of each size to every worker and getting one back."""
    with client.as_current():
        actors = [client.submit(Echo, actor=True, workers=[w], pure=False).result()
                  for w in dist.worker_addresses(client)]
    out = []
    for size in sizes:
        flat = np.random.default_rng(0).random(size)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            [f.result() for f in [a.call(flat) for a in actors]]
            times.append(time.perf_counter() - t0)
        out.append({"bytes": 2 * 8 * size * len(actors), "seconds": float(np.median(times))})
    return out


class Lane:
    """One runner with its own copy of the network and optimiser, stepped round by round."""

    def __init__(self, runner, cfg, net0, x, y):
        self.runner, self.cfg = runner, cfg
        self.net = copy.deepcopy(net0)
        self.opt = AdamW([a for _, a in self.net.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(y)
        runner.bind(cfg, self.net, (x, y), (x[:1], y[:1]), False)
        runner.start_epoch(0, np.arange(n), Transforms.identity(n))
        self.k = 0
        self.times = []
        self.comm = []  # per round: StepTimes.summary() of a DataParallel runner
        self.page_faults = []  # per round: minor page faults per step

    def faults(self):
        """Minor page faults so far of the processes that compute (this one, or the workers)."""
        if hasattr(self.runner, "client"):
            return sum(self.runner.client.run(_minor_faults).values())
        return _minor_faults()

    def steps(self, count, timed=True):
        bs = self.cfg.batch_size
        f0 = self.faults()
        t0 = time.perf_counter()
        for _ in range(count):
            self.runner.step(self.net, self.opt, self.k * bs, (self.k + 1) * bs)
            self.k += 1
        if timed:
            self.times.append((time.perf_counter() - t0) / count)
            self.page_faults.append((self.faults() - f0) / count)

    def weights(self):
        return dist.flatten([a for _, a in self.net.parameters()])


def model(t_sample, batch, n_params, alpha, t_update_per_param, bandwidth, n):
    """Seconds per step on n machines (see docs/performance.md): compute / n + exchange + update.

    The exchange moves the parameters to each of the n workers and n gradients back through
    the client: 2 x 8 x n_params x n bytes at ``bandwidth`` bytes/s, plus ``alpha``.
    """
    compute = t_sample * batch / n
    comm = alpha + 2 * 8 * n_params * n / bandwidth
    update = t_update_per_param * n_params
    return compute + comm + update


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="784-800")
    ap.add_argument("--steps", type=int, default=10, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--bandwidth", type=float, default=None,
                    help="GB/s of the exchanges in the model (default: fitted to echo exchanges)")
    ap.add_argument("--latency", type=float, default=None,
                    help="s of fixed overhead per exchange in the model (default: fitted likewise)")
    ap.add_argument("--dask-malloc", action="store_true",
                    help="start the workers with Dask's malloc settings instead of eventsnn's WORKER_MALLOC")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.dask_malloc:
        dist.WORKER_MALLOC = {}
    cfg = TrainConfig(arch=args.arch, batch_size=args.batch_size)
    x, y = load_dataset("mnist", "train", args.data_dir)
    n = (args.steps * args.rounds + args.warmup) * cfg.batch_size
    x, y = x[:n], y[:n]
    net0 = build_network(cfg, 10, x.shape[1:])
    init_gains(net0, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
    n_params = sum(a.size for _, a in net0.parameters())
    # the per-step bound: one batch's gradient, whole vs two halves summed
    with threadpool_limits(1, user_api="blas"):
        bs = cfg.batch_size
        whole, _ = batch_gradients(net0, x[:bs], y[:bs], cfg)
        halves = [batch_gradients(net0, x[a:b], y[a:b], cfg)[0] for a, b in ((0, bs // 2), (bs // 2, bs))]
    grad_rel_diff = max(float(np.max(np.abs(g - h1 - h2)) / np.max(np.abs(g)))
                        for g, h1, h2 in zip(whole, *halves))
    rows = {}
    with threadpool_limits(1, user_api="blas"), contextlib.ExitStack() as stack:
        lanes = {"single": Lane(LocalSteps(), cfg, net0, x, y)}
        for workers in (1, 2):
            client = stack.enter_context(dist.connect(workers=workers))
            lanes[f"dask-{workers}"] = Lane(dist.DataParallel(client), cfg, net0, x, y)
        for lane in lanes.values():
            lane.steps(args.warmup, timed=False)
        divergence = []
        for _ in range(args.rounds):  # interleaved: the machine's load hits every lane alike
            for lane in lanes.values():
                if hasattr(lane.runner, "times"):
                    lane.runner.times = dist.StepTimes()
                lane.steps(args.steps)
                if hasattr(lane.runner, "times"):
                    lane.comm.append(lane.runner.times.summary())
            w = {key: lane.weights() for key, lane in lanes.items()}
            divergence.append({"step": lanes["single"].k,
                               **{key: float(np.max(np.abs(w[key] - w["single"]))) for key in w if key != "single"}})
        sizes = [n_params // 4, n_params, 4 * n_params]
        echo = [e for key in ("dask-1", "dask-2") for e in exchange_times(lanes[key].runner.client, sizes, 15)]
    t_single = float(np.median(lanes["single"].times))
    rows["single"] = {"s_per_step": t_single, "s_per_step_rounds": lanes["single"].times,
                      "page_faults_per_step": float(np.median(lanes["single"].page_faults))}
    for key in ("dask-1", "dask-2"):
        t = float(np.median(lanes[key].times))
        comm = {k: float(np.median([c[k] for c in lanes[key].comm])) for k in lanes[key].comm[0]}
        rows[key] = {"s_per_step": t, "s_per_step_rounds": lanes[key].times, "speedup": t_single / t,
                     "max_weight_diff": divergence[-1][key],
                     "page_faults_per_step": float(np.median(lanes[key].page_faults)), **comm}
    d1 = rows["dask-1"]
    upd = d1["update_s_per_step"] / n_params
    t_sample = (t_single - upd * n_params) / cfg.batch_size  # the single-process step includes the update
    # exchange(bytes) = alpha + bytes / beta: least squares over the echo measurements (or the options)
    xb = np.array([e["bytes"] for e in echo], dtype=float)
    ts = np.array([e["seconds"] for e in echo])
    slope, intercept = np.polyfit(xb, ts, 1)
    beta = args.bandwidth * 1e9 if args.bandwidth else 1.0 / slope
    alpha = args.latency if args.latency is not None else max(float(intercept), 0.0)
    def predict(batch):  # speed-up over one machine without Dask, same global batch
        base = t_sample * batch + upd * n_params
        return {n: base / model(t_sample, batch, n_params, alpha, upd, beta, n)
                for n in (1, 2, 4, 8, 16, 32, 64) if n <= batch}

    prediction = {batch: predict(batch) for batch in (cfg.batch_size, 8 * cfg.batch_size)}
    out = {"arch": args.arch, "batch_size": cfg.batch_size, "n_params": int(n_params),
           "steps": args.steps * args.rounds, "divergence": divergence, "grad_rel_diff": grad_rel_diff,
           "echo": echo,
           "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "load_average": os.getloadavg(), "rows": rows,
           "model": {"t_sample": t_sample, "alpha": alpha, "update_s_per_param": upd,
                     "bandwidth_bytes_s": beta, "speedup": prediction}}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.arch}, batch {cfg.batch_size}, {n_params} parameters, {args.rounds} rounds of {args.steps} "
          f"steps per runner (interleaved, median) after {args.warmup} warm-up; "
          f"load average {out['load_average'][0]:.2f}")
    print("| run | s / step | speed-up | MB / step (out + back) | exchange ms | worker compute ms | "
          "overhead ms | client update ms | page faults / step | max |w - w_single| |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| single process | {t_single:.4f} | 1 | | | | | | {rows['single']['page_faults_per_step']:.0f} | |")
    for key in ("dask-1", "dask-2"):
        r = rows[key]
        print(f"| {key} | {r['s_per_step']:.4f} | {r['speedup']:.2f} | {r['bytes_per_step'] / 1e6:.2f} | "
              f"{1e3 * r['exchange_s_per_step']:.1f} | {1e3 * r['compute_s_per_step']:.1f} | "
              f"{1e3 * r['overhead_s_per_step']:.1f} | {1e3 * r['update_s_per_step']:.1f} | "
              f"{r['page_faults_per_step']:.0f} | {r['max_weight_diff']:.1e} |")
    print(f"model: t_sample {1e3 * t_sample:.3f} ms, alpha {1e3 * alpha:.1f} ms, beta {beta / 1e9:.2f} GB/s, "
          f"update {1e9 * upd:.2f} ns/parameter")
    for batch, pred in prediction.items():
        print(f"predicted speed-up, batch {batch}: " + ", ".join(f"N={k}: {v:.2f}" for k, v in pred.items()))
    print("echo (bytes out + back: s): " + ", ".join(f"{e['bytes'] / 1e6:.1f} MB: {1e3 * e['seconds']:.1f} ms"
                                                     for e in echo))
    print(f"first batch: max |g_whole - (g_half1 + g_half2)| / max |g| = {grad_rel_diff:.1e} (per array, max)")
    print("max |w - w_single| after step: " + ", ".join(
        f"{d['step']}: {d['dask-1']:.1e} / {d['dask-2']:.1e}" for d in divergence) + " (1 / 2 workers)")


if __name__ == "__main__":
    main()
