"""Shared by test_param_sweep.py and test_distributed.py: small structured images, a fake MNIST
cache of them, and the in-process command line."""

from __future__ import annotations

import contextlib

import numpy as np
from click.testing import CliRunner


def digits(n, seed=0):
    """Structured 28x28 images: class c lights a bar at row 2 + 2c, plus noise; float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (rng.random((n, 28, 28)) < 0.05) * rng.random((n, 28, 28))
    for i, c in enumerate(y):
        x[i, 2 + 2 * c, 4:24] = 0.6 + 0.4 * rng.random(20)
    return x.astype(np.float32), y


@contextlib.contextmanager
def fake_mnist_dir(tmp_path_factory, fake_mnist_cache, n_train, n_test, seed):
    """A data dir with an MNIST cache of :func:`digits` (n_train / n_test images)."""
    x, y = digits(n_train, seed)
    xt, yt = digits(n_test, seed + 1)
    arrays = {"train_images": (x * 255).astype(np.uint8), "train_labels": y.astype(np.uint8),
              "test_images": (xt * 255).astype(np.uint8), "test_labels": yt.astype(np.uint8)}
    data_dir = tmp_path_factory.mktemp("data")
    with fake_mnist_cache(arrays, data_dir):
        yield data_dir


def invoke(*args):
    from eventsnn.cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args])
