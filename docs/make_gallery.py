"""Regenerate the gallery of inspection figures (docs/figures/inspection-*.png, shown in
docs/inspection.md).

Usage::

    python docs/make_gallery.py [--work DIR] [--data-dir DIR]

Trains once (and reuses from ``WORK/run``) a small convolutional network on the
first 3000 MNIST training images for 2 epochs (about 4 minutes on 2 cores),
then runs the inspection commands of the ``eventsnn`` command line on it, each
printed with its output, writing one PNG per command. The figure comparing the
three pooling rules calls the library directly (one command draws one rule).
Every PNG is checked to stay under 200 KB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
FIGURES = DOCS / "figures"
ARCH = "12C5-P2-32C5-P2-100"
MAX_BYTES = 200_000


def eventsnn(*args, ok=(0,)) -> str:
    """Run one ``eventsnn`` command, print it and its output, return the output."""
    cmd = [str(a) for a in args]
    print("$ eventsnn " + " ".join(cmd), flush=True)
    proc = subprocess.run([sys.executable, "-m", "eventsnn.cli.main", *cmd], capture_output=True, text=True,
                          check=False)
    print(proc.stdout + proc.stderr, flush=True)
    if proc.returncode not in ok:
        raise SystemExit(f"eventsnn {cmd[0]} failed with exit code {proc.returncode}")
    return proc.stdout


def pick_spike(ckpt: Path, data_dir):
    """A test sample and an output (or else hidden dense) spike with a non-zero gradient and a
    readable window: (sample, layer, neuron, rank)."""
    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.datasets import load_dataset
    from eventsnn.inspect import loss_gradient, spike_gradients
    from eventsnn.train import encode_images

    ck = load_checkpoint(ckpt)
    x, y = load_dataset("mnist", "test", data_dir)
    net = ck.network
    for layer in (len(net.layers) - 1, len(net.layers) - 2):
        for s in range(40):
            result = net.forward(encode_images(x[s:s + 1], ck.config))
            loss = loss_gradient(result, y[s:s + 1], ck.config)
            per_layer, _ = spike_gradients(net, result, loss.grad, kernel=ck.config.grad_kernel,
                                           forced=loss.forced, input_grad=False)
            out = result.spikes[layer]
            for k in np.flatnonzero(per_layer[layer] != 0):
                i = int(out.neurons[k])
                mine = np.flatnonzero(out.neurons == i)
                rank = int(np.flatnonzero(mine == k)[0])
                lo = out.times[mine[rank - 1]] if rank else -np.inf
                inp = result.spikes[layer - 1]
                n_win = np.count_nonzero((inp.times > lo) & (inp.times <= out.times[k]))
                if rank >= 1 and 6 <= n_win <= 20:
                    return s, layer, i, rank
    raise SystemExit("no spike with a non-zero gradient and a small window found")


def invariance_figure(ckpt: Path, data_dir, path: Path) -> None:
    """Eq. 8 through the network with max, adjusted-avg and avg pooling (same weights)."""
    from eventsnn.checkpoint import load_checkpoint
    from eventsnn.datasets import load_dataset
    from eventsnn.inspect import loss_gradient, set_pooling, verify_invariance
    from eventsnn.plot import plot_invariance
    from eventsnn.train import encode_images

    ck = load_checkpoint(ckpt)
    x, y = load_dataset("mnist", "test", data_dir)
    idx = np.sort(np.random.default_rng(0).choice(len(y), size=8, replace=False))
    reports = {}
    for pool in ("max", "adjusted-avg", "avg"):
        set_pooling(ck.network, pool)
        result = ck.network.forward(encode_images(x[idx], ck.config))
        loss = loss_gradient(result, y[idx], ck.config)
        rep = verify_invariance(ck.network, result, loss.grad, kernel="exp", forced=loss.forced, rng=0)
        reports[f"{pool} pooling" + (" (loses the silent share)" if pool == "avg" else "")] = rep
    plot_invariance(reports, path, title=f"Gradient-sum invariance in {ARCH} (trained 2 epochs), 8 MNIST "
                                         "test images, h = exp")
    print(f"wrote {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/eventsnn-gallery"),
                    help="Where the trained checkpoint and the simulation file live.")
    ap.add_argument("--data-dir", default=None, help="Dataset cache (default $EVENTSNN_DATA or ./data).")
    args = ap.parse_args(argv)
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    FIGURES.mkdir(exist_ok=True)
    run = args.work / "run"
    ckpt = run / "checkpoint.h5"
    if not ckpt.exists():
        eventsnn("train", "mnist", "--arch", ARCH, "--epochs", 2, "--limit-train", 3000, "--limit-test", 500,
                 "--lr", 2e-3, "--out", run, "--quiet", *data)
    sample, layer, neuron, rank = pick_spike(ckpt, args.data_dir)
    fig = {name: FIGURES / f"inspection-{name}.png"
           for name in ("spike", "invariance", "gradcheck", "reverse-gradient", "raster", "membrane")}
    eventsnn("inspect", ckpt, "--sample", sample, "--layer", layer, "--neuron", neuron, "--spike", rank,
             "--plot", fig["spike"], *data)
    eventsnn("verify-invariance", ckpt, "--pool", "avg", *data)
    invariance_figure(ckpt, args.data_dir, fig["invariance"])
    eventsnn("gradcheck", ckpt, "--plot", fig["gradcheck"], *data)
    eventsnn("reverse-gradient", ckpt, "--plot", fig["reverse-gradient"], *data)
    h5 = args.work / "sample.h5"
    eventsnn("simulate", ckpt, "--sample", sample, "--out", h5, "--membrane", 500, "--layer", -1, *data)
    eventsnn("plot", "raster", h5, "--out", fig["raster"])
    eventsnn("plot", "membrane", h5, "--out", fig["membrane"])  # up to 4 output neurons, those that fired first
    too_big = {p.name: p.stat().st_size for p in fig.values() if p.stat().st_size >= MAX_BYTES}
    if too_big:
        raise SystemExit(f"figures of {MAX_BYTES} bytes or more: {too_big}")
    for p in fig.values():
        print(f"{p.relative_to(DOCS.parent)}: {p.stat().st_size // 1000} KB")


if __name__ == "__main__":
    main()
