"""Training throughput of the conv networks on the GPU engine vs the CPU engine.

For MNIST ``15C5-P2-40C5-P2-300`` and Fashion-MNIST ``32C5-P2-64C5-P2-1024``
(default configuration, batch 50, gains initialised as in training) one
training step -- encode, exact forward, count loss with the supervisory spike,
reverse-time backward with the trainer's stabilisers, clip, AdamW -- is timed
over ``--batches`` batches (after one warm-up batch that compiles the kernels)
with every layer on the GPU (``device="cuda"``) and then on the CPU with
``--cpu-threads`` numba threads (default 2: the project's reference machine).
On the GPU the time inside kernels is measured by synchronising after every
launch; the rest (host preparation, transfers, BLAS on the host, pooling, loss,
optimiser) is "host". Reported: samples/s, seconds per 60k-sample epoch
(target for MNIST: <= 30 s on one modern data-centre GPU), kernel share, the
GPU model. The data come from ``--data-dir`` (the datasets' cache); where a
dataset is not there, random sparse images stand in (said in the output: the
spike counts, and so the speed, differ from real data).

Needs a usable GPU (``pip install 'eventsnn[gpu]'``); refuses otherwise
(exit code 2, one line). Not a test.

Usage::

    python benchmarks/bench_gpu.py [--quick] [--batches 10] [--cpu-batches 3]
                                   [--cpu-threads 2] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from eventsnn.checkpoint import build_network
from eventsnn.config import TrainConfig
from eventsnn.device import select_device, set_device
from eventsnn.engine.sweep import last_rise_times
from eventsnn.loss import count_loss
from eventsnn.optim import AdamW, clip_grad_norm
from eventsnn.train import INIT_SAMPLES, encode_images, init_gains

EPOCH = 60000
TARGET_S = 30.0
CASES = (("mnist", "15C5-P2-40C5-P2-300"), ("fashion_mnist", "32C5-P2-64C5-P2-1024"))


def load_images(dataset, data_dir, n, rng):
    """(images, labels, source): the training split, or random sparse images."""
    try:
        from eventsnn.datasets import load_dataset

        x, y = load_dataset(dataset, "train", data_dir)
        return np.asarray(x[:n], dtype=np.float64), np.asarray(y[:n]), "real"
    except Exception as exc:  # no cache on this machine: synthetic stand-in
        x = rng.uniform(0.0, 1.0, (n, 28, 28)) * (rng.uniform(size=(n, 28, 28)) < 0.2)
        return x, rng.integers(0, 10, n), f"synthetic ({type(exc).__name__})"


def step(net, opt, images, labels, cfg):
    """One training step with the public API (the trainer's step)."""
    result = net.forward(encode_images(images, cfg))
    out = result.spikes[-1]
    sup = None
    if cfg.supervision == "last-rise":
        sup = last_rise_times(result.records[-1].engine, np.arange(out.n_samples), labels)
    cl = count_loss(out, labels, steps=cfg.steps, t_end=cfg.t_end, desired=cfg.desired,
                    undesired=cfg.undesired, supervision=cfg.supervision, supervision_times=sup)
    gp = cfg.grad_params()
    grads = net.backward(result, cl.grad, kernel=gp.kernel, tau_grad=gp.tau_grad,
                         max_dt_du=gp.max_dt_du, input_grad_scale=gp.input_grad_scale,
                         drop_nonpositive=gp.drop_nonpositive, forced=cl.forced, input_grad=False)
    flat = grads.parameter_grads()
    clip_grad_norm(flat, cfg.grad_clip)
    opt.step(flat)
    return sum(s.n_events for s in result.spikes)


class KernelClock:
    """Time inside GPU kernels: every launch is followed by a synchronisation."""

    def __init__(self):
        from numba import cuda

        from eventsnn.engine import cuda as gpu

        self.cuda, self.gpu, self.seconds = cuda, gpu, 0.0
        self._launch = gpu._launch

    def __enter__(self):
        def timed(kernel, n, *args):
            self.cuda.synchronize()
            t0 = time.perf_counter()
            self._launch(kernel, n, *args)
            self.cuda.synchronize()
            self.seconds += time.perf_counter() - t0

        self.gpu._launch = timed
        return self

    def __exit__(self, *exc):
        self.gpu._launch = self._launch


def measure(net0, x, y, cfg, device, batches, rng_seed=0):
    """samples/s of ``batches`` steps after one warm-up step; kernel seconds on cuda."""
    net = copy.deepcopy(net0)
    set_device(net, device)
    opt = AdamW([a for _, a in net.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(rng_seed)
    bs = cfg.batch_size
    idx = [rng.integers(0, len(y), bs) for _ in range(batches + 1)]
    step(net, opt, x[idx[0]], y[idx[0]], cfg)  # compiles the kernels
    clock = KernelClock() if device == "cuda" else None
    events = 0
    t0 = time.perf_counter()
    if clock is not None:
        with clock:
            for i in idx[1:]:
                events += step(net, opt, x[i], y[i], cfg)
    else:
        for i in idx[1:]:
            events += step(net, opt, x[i], y[i], cfg)
    total = time.perf_counter() - t0
    n = batches * bs
    res = {"device": device, "samples": n, "seconds": total, "samples_per_s": n / total,
           "epoch_seconds": EPOCH * total / n, "events_per_sample": events / n}
    if clock is not None:
        res["kernel_seconds"] = clock.seconds
        res["kernel_share"] = clock.seconds / total
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 GPU batches, 1 CPU batch per network.")
    ap.add_argument("--batches", type=int, default=10, help="Timed GPU batches per network.")
    ap.add_argument("--cpu-batches", type=int, default=3, help="Timed CPU batches per network.")
    ap.add_argument("--cpu-threads", type=int, default=2, help="numba threads of the CPU run.")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    choice = select_device("auto")
    if choice.device != "cuda":
        print(f"Error: bench_gpu needs a usable GPU ({choice.detail})", file=sys.stderr)
        return 2
    gpu_batches, cpu_batches = (2, 1) if args.quick else (args.batches, args.cpu_batches)
    rng = np.random.default_rng(0)
    all_threads = numba.config.NUMBA_NUM_THREADS
    rows = []
    for dataset, arch in CASES:
        cfg = TrainConfig(dataset=dataset, arch=arch)
        n = (gpu_batches + cpu_batches + 2) * cfg.batch_size + INIT_SAMPLES
        x, y, source = load_images(dataset, args.data_dir, n, rng)
        net = build_network(cfg, 10, x.shape[1:])
        with threadpool_limits(1, user_api="blas"):
            numba.set_num_threads(all_threads)
            init_gains(net, encode_images(x[:INIT_SAMPLES], cfg), cfg.avg_spike_init)
            g = measure(net, x, y, cfg, "cuda", gpu_batches)
            numba.set_num_threads(min(args.cpu_threads, all_threads))
            c = measure(net, x, y, cfg, "cpu", cpu_batches)
            numba.set_num_threads(all_threads)
        rows.append({"dataset": dataset, "arch": arch, "data": source, "batch_size": cfg.batch_size,
                     "gpu": g, "cpu": c, "speedup": g["samples_per_s"] / c["samples_per_s"]})
    out = {"gpu_model": choice.detail, "cpu": platform.processor() or platform.machine(),
           "cpu_threads": min(args.cpu_threads, all_threads), "host_threads_gpu_run": all_threads,
           "numba": numba.__version__, "cases": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"GPU: {choice.detail}; CPU run: {out['cpu_threads']} numba threads; "
          f"host of the GPU run: {all_threads} threads")
    print(f"{'network':32s} {'data':10s} {'GPU samp/s':>10s} {'epoch s':>8s} {'kernels':>8s} "
          f"{'CPU samp/s':>10s} {'epoch s':>8s} {'speedup':>8s}")
    for r in rows:
        g, c = r["gpu"], r["cpu"]
        print(f"{r['dataset'] + ' ' + r['arch']:32s} {r['data'][:10]:10s} {g['samples_per_s']:10.1f} "
              f"{g['epoch_seconds']:8.1f} {100 * g['kernel_share']:7.0f}% {c['samples_per_s']:10.2f} "
              f"{c['epoch_seconds']:8.0f} {r['speedup']:7.1f}x")
    mnist = rows[0]["gpu"]["epoch_seconds"]
    print(f"MNIST conv epoch on the GPU: {mnist:.1f} s (target <= {TARGET_S:.0f} s: "
          f"{'met' if mnist <= TARGET_S else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
