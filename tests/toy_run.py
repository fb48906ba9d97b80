"""The tiny synthetic training problem shared by the trainer tests.

40 random 6x6 "images" in [0, 1] with 3 classes (12 test images),
architecture 36-20, batches of 10: a whole run takes a fraction of a second.
Also MNIST-like stroke images for the convolution tests (``stroke_images``).
"""

from __future__ import annotations

import numpy as np

from eventsnn.config import TrainConfig
from eventsnn.train import train


def toy_data():
    """((x, y), (x_test, y_test)) of the toy problem (fixed seed)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (40, 6, 6))
    y = rng.integers(0, 3, 40)
    xt = rng.uniform(0.0, 1.0, (12, 6, 6))
    yt = rng.integers(0, 3, 12)
    return (x, y), (xt, yt)


def toy_config(**kw) -> TrainConfig:
    """The toy run's configuration (36-20, 2 epochs, batch 10), updated with ``kw``."""
    base = dict(dataset="toy", arch="36-20", epochs=2, batch_size=10)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_params(net_a, net_b):
    """Assert that two networks have the same parameter names, in order, and bit-identical values."""
    a, b = list(net_a.parameters()), list(net_b.parameters())
    assert [k for k, _ in a] == [k for k, _ in b]
    for (k, x), (_, y) in zip(a, b):
        assert x.tobytes() == y.tobytes(), f"{k} differs"


def toy_run(cfg, out, data, *, resume=False, checksum="toy-v1"):
    """Train ``cfg`` on ``data`` into ``out``; returns (train's result, the logged lines)."""
    (x, y), (xt, yt) = data
    lines = []
    res = train(cfg, out, train_data=(x, y), test_data=(xt, yt), dataset_checksum=checksum, n_classes=3,
                resume=resume, progress=False, log=lines.append)
    return res, lines


def stroke_images(rng, n):
    """MNIST-like digits: three thick random line strokes per 28 x 28 image (uint8)."""
    yy, xx = np.mgrid[0:28, 0:28]
    x = np.zeros((n, 28, 28))
    t = np.linspace(0.0, 1.0, 30)[:, None, None]
    for i in range(n):
        for _ in range(3):
            (y0, x0), (y1, x1) = rng.uniform(5, 23, (2, 2))
            d = np.min(np.hypot(yy - (y0 + t * (y1 - y0)), xx - (x0 + t * (x1 - x0))), axis=0)
            x[i] = np.maximum(x[i], np.clip(2.0 - d, 0.0, 1.0))
    return (255 * x).astype(np.uint8)
