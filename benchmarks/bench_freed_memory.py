"""Training steps with glibc's default malloc settings against eventsnn's (freed memory kept).

Each arm runs in its own process (malloc settings are per process): the
checkpoint's network takes ``--steps`` training steps (``eventsnn.train.train_step``:
forward, count loss, backward, clipping, AdamW) on the same batches of real
MNIST images, after one untimed warm-up step. The ``keep`` arm calls
``eventsnn.allocator.keep_freed_memory()`` first; the ``default`` arm leaves
glibc as it starts. The rounds alternate which arm runs first; the table gives
the median over rounds of the time per sample and of the minor page faults per
step (``getrusage``), and checks that both arms end with bit-identical
parameters (the allocator must not change the arithmetic).

Usage::

    python benchmarks/bench_freed_memory.py [CHECKPOINT] [--rounds 3] [--steps 6] [--data-dir data]

CHECKPOINT defaults to the committed epoch-12 network of the declared elastic
run (``docs/runs/conv-elastic-40/epoch-012.h5``). Numba threads: as set by
``NUMBA_NUM_THREADS`` (training uses all cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "docs/runs/conv-elastic-40/epoch-012.h5"
ARMS = ("default", "keep")


def subject_arguments(ap: argparse.ArgumentParser) -> None:
    """The checkpoint, the seed of the batches and the data directory."""
    ap.add_argument("checkpoint", nargs="?", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--seed", type=int, default=0, help="seed of the batches (the same for every run)")
    ap.add_argument("--data-dir", default="data")


def step_subject(args):
    """(x, y, cfg, net, params, opt, batches): MNIST training images, the checkpoint's
    network and configuration, its parameters, a fresh AdamW, and ``args.steps + 1``
    batches of indices (the first for warm-up) drawn from ``args.seed``. Imports eventsnn
    only here, after the caller set malloc."""
    import numpy as np

    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.datasets import load_dataset
    from eventsnn.optim import AdamW

    x, y = load_dataset("mnist", "train", args.data_dir)
    ck = load_checkpoint(args.checkpoint)
    cfg, net = ck.config, ck.network
    params = [a for _, a in net.parameters()]
    opt = AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(args.seed)
    batches = [rng.integers(0, len(y), cfg.batch_size) for _ in range(args.steps + 1)]
    return x, y, cfg, net, params, opt, batches


def child(args) -> dict:
    """One arm in this process: warm-up step, then ``args.steps`` timed steps."""
    if args.child == "keep":
        from eventsnn.allocator import keep_freed_memory
        if not keep_freed_memory():
            raise SystemExit("keep_freed_memory() did not apply (not glibc, or MALLOC_* set)")
    import numba
    import numpy as np
    from threadpoolctl import threadpool_limits

    from eventsnn.train import train_step

    x, y, cfg, net, params, opt, batches = step_subject(args)
    with threadpool_limits(1, user_api="blas"):
        train_step(net, opt, x[batches[0]], y[batches[0]], cfg)  # compile / warm up
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for idx in batches[1:]:
            train_step(net, opt, x[idx], y[idx], cfg)
        seconds = time.perf_counter() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    digest = hashlib.sha256()
    for a in params:
        digest.update(np.ascontiguousarray(a).tobytes())
    return {"arm": args.child, "ms_per_sample": 1e3 * seconds / (args.steps * cfg.batch_size),
            "faults_per_step": faults / args.steps, "params_sha256": digest.hexdigest(),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "numba_threads": numba.get_num_threads(), "arch": cfg.arch}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subject_arguments(ap)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per arm and round")
    ap.add_argument("--json", action="store_true", help="print the per-process results as JSON")
    ap.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    base = [sys.executable, __file__, args.checkpoint, "--steps", str(args.steps), "--seed", str(args.seed),
            "--data-dir", args.data_dir]
    results = []
    for r in range(args.rounds):
        for arm in (ARMS if r % 2 == 0 else ARMS[::-1]):
            out = subprocess.run(base + ["--child", arm], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{arm} arm failed:\n{out.stderr.strip()}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=1))
    first = results[0]
    print(f"{args.checkpoint} ({first['arch']}): {args.rounds} rounds x {args.steps} steps per arm, "
          f"numba threads {first['numba_threads']}")
    print(f"{'malloc':10s} {'ms / sample':>12s} {'faults / step':>14s} {'max RSS MiB':>12s}   per round (ms / sample)")
    for arm in ARMS:
        rs = [r for r in results if r["arm"] == arm]
        print(f"{arm:10s} {statistics.median(r['ms_per_sample'] for r in rs):12.2f} "
              f"{statistics.median(r['faults_per_step'] for r in rs):14.0f} "
              f"{max(r['max_rss_mib'] for r in rs):12.0f}   "
              + " ".join(f"{r['ms_per_sample']:.2f}" for r in rs))
    same = len({r["params_sha256"] for r in results}) == 1
    print(f"parameters after the steps bit-identical in every process: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
