"""Compile every GPU kernel of eventsnn.engine.cuda for a real GPU, without a GPU.

The CUDA simulator (used by the tests) runs the kernels as Python and checks no
types; this script makes sure that they also compile for the hardware target.
A child process runs small dense and conv layers, forward and backward (every
path, forced spikes), under the simulator and records the argument types of
every kernel launch; this process then compiles each kernel with those types to
PTX for compute capability ``--cc`` (default 9.0) with NVVM, the compiler of
the real target. Needs NVVM and libdevice (the CUDA toolkit, or the
``nvidia-nvvm`` and ``nvidia-cuda-nvrtc`` wheels of ``numba-cuda[cu12]`` /
``[cu13]``; a toolkit outside site-packages is found through ``CUDA_HOME``), but
no GPU and no driver. Prints one line per kernel: PTX size and float64 atomics.

Usage::

    CUDA_HOME=/path/to/cuda python benchmarks/check_gpu_compile.py [--cc 9.0]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time

CHILD = r'''
import pickle, sys
import numba, numpy as np
from eventsnn import GradParams, NeuronParams, SpikeTrains
from eventsnn.engine import cuda as gpu
from eventsnn.engine.conv import ConvGeometry
from eventsnn.engine.sweep import ForcedSpikes

sigs = {}
launch = gpu._launch


def recording(kernel, n, *args):
    types = tuple(numba.typeof(a.copy_to_host() if hasattr(a, "copy_to_host") else a) for a in args)
    sigs.setdefault(kernel.__name__, set()).add(types)
    return launch(kernel, n, *args)


gpu._launch = recording
rng = np.random.default_rng(0)
P = NeuronParams()
rules = (GradParams(), GradParams("depsilon", max_dt_du=4.0, input_grad_scale=0.85, drop_nonpositive=True))


def batch(n_in, image):
    if image:
        x = rng.uniform(0, 1, (2, n_in))
        s, j = np.nonzero(x)
        return SpikeTrains.from_unsorted(np.tile(np.arange(3.0), s.size), np.repeat(j, 3),
                                         np.repeat(x[s, j], 3), np.repeat(s, 3), 2, n_in), 3.0
    n = 2 * 15
    return SpikeTrains.from_unsorted(rng.uniform(0, 9, n), rng.integers(0, n_in, n), np.ones(n),
                                     np.repeat(np.arange(2), 15), 2, n_in), 10.0


for image in (True, False):
    inputs, t_end = batch(40, image)
    out, rec = gpu.dense_forward(inputs, rng.normal(0.4, 0.5, (5, 40)), P, t_end)
    forced = ForcedSpikes(np.array([0, 1]), np.array([1, 2]), np.array([1.5, 2.5]), np.array([0.5, -0.5]))
    for gp in rules:
        gpu.dense_backward(rec, np.ones(out.n_events), gp, forced=forced)
    geom = ConvGeometry(1, 5, 5, 2, 3, 1, 1)
    inputs, t_end = batch(geom.n_in, image)
    for path in ("dense", "sparse"):
        out, rec = gpu.conv_forward(inputs, rng.normal(0.5, 0.5, geom.weight_shape), geom, P, t_end,
                                    path=path)
        for gp in rules:
            gpu.conv_backward(rec, np.ones(out.n_events), gp, forced=forced)
pickle.dump(sigs, open(sys.argv[1], "wb"))
'''


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="9.0", help="Compute capability of the PTX target.")
    args = ap.parse_args(argv)
    cc = tuple(int(v) for v in args.cc.split("."))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sigs.pkl")
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        subprocess.run([sys.executable, "-c", CHILD, path], env=env, check=True)
        with open(path, "rb") as fh:
            sigs = pickle.load(fh)
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    # device functions ask the current device for its compute capability: there is none
    dispatcher.get_current_device = lambda: type("Device", (), {"compute_capability": cc})()
    import eventsnn.engine.cuda as gpu

    n = 0
    for name in sorted(sigs):
        for sig in sigs[name]:
            t0 = time.perf_counter()
            ptx, _ = cuda.compile_ptx(getattr(gpu, name).py_func, sig, cc=cc)
            n += 1
            atomics = ptx.count("atom.global.add.f64") + ptx.count("atom.add.f64")
            print(f"{name}: {len(ptx)} characters of PTX for sm_{cc[0]}{cc[1]}, "
                  f"{atomics} float64 atomics, {time.perf_counter() - t0:.1f} s")
    print(f"compiled {n} kernel signatures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
