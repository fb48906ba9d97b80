"""Augmentation: against a plain-loop reference, and as seen by the training loop."""

from __future__ import annotations

import numpy as np
import pytest

from eventsnn import augment
from eventsnn.config import TrainConfig


def reference(img, dy, dx, flip, pad):
    """Pixel by pixel: out[r, c] = img[r + dy - pad, c' + dx - pad] (0 outside), c' mirrored if flip."""
    h, w = img.shape[-2:]
    out = np.zeros_like(img)
    for r in range(h):
        for c in range(w):
            cc = (w - 1 - c) if flip else c
            sr, sc = r + dy - pad, cc + dx - pad
            if 0 <= sr < h and 0 <= sc < w:
                out[..., r, c] = img[..., sr, sc]
    return out


@pytest.mark.parametrize("shape", [(7, 5, 6), (7, 3, 5, 6)])
@pytest.mark.parametrize("kind", augment.KINDS)
def test_apply_matches_reference(kind, shape):
    rng = np.random.default_rng(1)
    x = rng.random(shape)
    offsets, flips = augment.draw(kind, np.random.default_rng(2), len(x))
    pad = augment.padding_of(kind)
    got = augment.apply(x, offsets, flips, pad)
    assert got.shape == x.shape and got.dtype == x.dtype
    for i in range(len(x)):
        np.testing.assert_array_equal(got[i], reference(x[i], *offsets[i], flips[i], pad))
    if kind == "none":
        np.testing.assert_array_equal(got, x)
    else:  # some image actually moved
        assert not np.array_equal(got, x)


def test_draw_is_deterministic_and_in_range():
    a = augment.draw("shift", np.random.default_rng(3), 500)
    b = augment.draw("shift", np.random.default_rng(3), 500)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].min() == 0 and a[0].max() == 4 and not a[1].any()
    off1, _ = augment.draw("shift1", np.random.default_rng(3), 500)
    assert off1.min() == 0 and off1.max() == 2
    off, flip = augment.draw("crop-flip", np.random.default_rng(3), 500)
    assert off.max() == 8 and 100 < flip.sum() < 400


def test_bad_input():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment.draw("rotate", np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="offsets must lie"):
        augment.apply(np.zeros((1, 4, 4)), [[5, 0]], [False], 2)
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="rotate")


def test_config_resolves_the_official_default():
    assert TrainConfig(dataset="mnist").augment == "none"
    assert TrainConfig(dataset="fashion_mnist").augment == "flip"
    assert TrainConfig(dataset="cifar10", arch="vgg11").augment == "crop-flip"
    assert TrainConfig(dataset="mnist", augment="shift").augment == "shift"
    cfg = TrainConfig(dataset="mnist", augment="shift")
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_training_sees_the_drawn_transforms(tmp_path, monkeypatch):
    """The images of every batch are the shifted samples of the epoch's order (independent rebuild)."""
    import eventsnn.train as train_mod

    rng = np.random.default_rng(0)
    x, y = rng.random((30, 6, 6)), rng.integers(0, 3, 30)
    cfg = TrainConfig(dataset="toy", arch="36-12", epochs=2, batch_size=8, augment="shift")
    seen = []
    real_step = train_mod.train_step

    def spy(net, opt, images, labels, config):
        seen.append(np.array(images))
        return real_step(net, opt, images, labels, config)

    monkeypatch.setattr(train_mod, "train_step", spy)
    train_mod.train(cfg, tmp_path, train_data=(x, y), test_data=(x[:5], y[:5]), dataset_checksum="t",
                    n_classes=3, progress=False, log=lambda *_: None)
    k = 0
    for epoch in range(2):
        erng = np.random.default_rng([cfg.seed, epoch])
        order = erng.permutation(30)
        offsets = erng.integers(0, 5, size=(30, 2))
        for a in range(0, 30, 8):
            want = [reference(x[i], *offsets[a + j], False, 2) for j, i in enumerate(order[a:a + 8])]
            np.testing.assert_array_equal(seen[k], np.array(want))
            k += 1
    assert k == len(seen)
