"""Where a training step spends its time: cProfile of a checkpoint's network, by function.

Runs ``--steps`` training steps (``eventsnn.train.train_step``: forward, count
loss, backward, clipping, AdamW; batches of real MNIST training images, after
one untimed warm-up step) under ``cProfile`` and prints the functions with the
largest own time (a compiled numba kernel is one Python call: its whole run is
its own time), with the step's wall time per sample. Use it to find serial
numpy work between the parallel kernels and to compare numba thread counts
(``NUMBA_NUM_THREADS``).

Usage::

    python benchmarks/profile_step.py [CHECKPOINT] [--steps 8] [--top 25] [--keep-freed-memory]

CHECKPOINT defaults to the committed epoch-12 network of the declared elastic
run (``docs/runs/conv-elastic-40/epoch-012.h5``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time

from bench_freed_memory import step_subject, subject_arguments  # this directory is on sys.path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subject_arguments(ap)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--top", type=int, default=25, help="functions to list")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="call eventsnn.allocator.keep_freed_memory() first (as eventsnn train does)")
    args = ap.parse_args(argv)
    if args.keep_freed_memory:
        from eventsnn.allocator import keep_freed_memory
        print(f"keep_freed_memory applied: {keep_freed_memory()}")
    import numba
    from threadpoolctl import threadpool_limits

    from eventsnn.train import train_step

    x, y, cfg, net, _, opt, batches = step_subject(args)
    with threadpool_limits(1, user_api="blas"):
        train_step(net, opt, x[batches[0]], y[batches[0]], cfg)  # compile / warm up
        prof = cProfile.Profile()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        prof.enable()
        for idx in batches[1:]:
            train_step(net, opt, x[idx], y[idx], cfg)
        prof.disable()
        seconds = time.perf_counter() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    print(f"{args.checkpoint} ({cfg.arch}): {args.steps} steps of {cfg.batch_size} samples, numba threads "
          f"{numba.get_num_threads()}: {1e3 * seconds / (args.steps * cfg.batch_size):.2f} ms / sample "
          f"(under the profiler), {faults / args.steps:.0f} minor page faults / step")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
