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
@pytest.mark.parametrize("kind", [k for k in augment.KINDS if k not in augment.ELASTIC_KINDS])
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


def batches_seen(tmp_path, seen_batches, cfg, x, y):
    """The images of every training step of ``train(cfg)`` on (x, y), in order."""
    import eventsnn.train as train_mod

    train_mod.train(cfg, tmp_path, train_data=(x, y), test_data=(x[:5], y[:5]), dataset_checksum="t",
                    n_classes=3, progress=False, log=lambda *_: None)
    return seen_batches


def test_training_sees_the_drawn_transforms(tmp_path, seen_batches):
    """The images of every batch are the shifted samples of the epoch's order (independent rebuild)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 6, 6)), rng.integers(0, 3, 30)
    cfg = TrainConfig(dataset="toy", arch="36-12", epochs=2, batch_size=8, augment="shift")
    seen = batches_seen(tmp_path, seen_batches, cfg, x, y)
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


# --- elastic distortion (Simard et al. 2003) ---------------------------------------------------

def ref_field(seed, h, w, alpha, sigma):
    """The documented recipe by hand: U ~ uniform(-1, 1) from default_rng(seed), a separable
    Gaussian (radius int(4 sigma + 0.5), normalised, zero outside the image), times alpha."""
    u = np.random.default_rng(int(seed)).uniform(-1.0, 1.0, (2, h, w))
    rad = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.zeros_like(u)
    for d in range(2):
        tmp = np.zeros((h, w))
        for r in range(h):
            for c in range(w):
                tmp[r, c] = sum(k[j + rad] * u[d, r + j, c] for j in range(-rad, rad + 1) if 0 <= r + j < h)
        for r in range(h):
            for c in range(w):
                out[d, r, c] = sum(k[j + rad] * tmp[r, c + j] for j in range(-rad, rad + 1) if 0 <= c + j < w)
    return alpha * out


def ref_bilinear(img, y, x):
    """img at the real point (y, x), the image extended by zeros."""
    h, w = img.shape[-2:]
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - y0, x - x0
    val = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            r, c = y0 + dy, x0 + dx
            if 0 <= r < h and 0 <= c < w:
                val = val + wy * wx * img[..., r, c]
    return val


@pytest.mark.parametrize("shape", [(3, 9, 7), (2, 2, 6, 8)])
def test_elastic_matches_reference(shape):
    rng = np.random.default_rng(5)
    x = rng.random(shape)
    tr = augment.draw_epoch("elastic", np.random.default_rng(6), len(x))
    alpha, sigma = 6.0, 1.5
    got = augment.apply_epoch(x, tr, "elastic", alpha=alpha, sigma=sigma)
    assert got.shape == x.shape and got.dtype == x.dtype
    h, w = shape[-2:]
    for i in range(len(x)):
        f = ref_field(tr.seeds[i], h, w, alpha, sigma)
        np.testing.assert_allclose(augment.elastic_fields(tr.seeds[i:i + 1], (h, w), alpha, sigma)[0], f,
                                   rtol=0, atol=1e-12)
        assert np.abs(f).max() > 0.5  # the field really moves pixels
        for r in range(h):
            for c in range(w):
                np.testing.assert_allclose(got[i, ..., r, c], ref_bilinear(x[i], r + f[0, r, c], c + f[1, r, c]),
                                           rtol=0, atol=1e-12)


def test_elastic_zero_alpha_is_identity_and_keeps_dtype():
    x = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    tr = augment.draw_epoch("elastic", np.random.default_rng(1), 4)
    np.testing.assert_array_equal(augment.apply_epoch(x, tr, "elastic", alpha=0.0), x)
    out = augment.apply_epoch(x, tr, "elastic")
    assert out.dtype == np.float32 and not np.array_equal(out, x)
    # default strength: Simard's alpha = 34, sigma = 4 moves pixels by about 1-2 pixels (rms)
    f = augment.elastic_fields(tr.seeds, (28, 28), *augment.ELASTIC_DEFAULT)
    assert 0.8 < np.sqrt((f ** 2).sum(axis=1).mean()) < 3.0


def test_transforms_of_a_slice_are_the_slice_of_the_transforms():
    """A batch (or a worker's piece) augmented alone equals its rows of the whole epoch."""
    x = np.random.default_rng(0).random((20, 10, 10))
    for kind in augment.KINDS:
        tr = augment.draw_epoch(kind, np.random.default_rng([3, 1]), 20)
        whole = augment.apply_epoch(x, tr, kind)
        pos = np.array([3, 17, 4, 11])
        np.testing.assert_array_equal(augment.apply_epoch(x[pos], tr[pos], kind), whole[pos])
        np.testing.assert_array_equal(augment.apply_epoch(x[5:9], tr[5:9], kind), whole[5:9])


def test_draw_epoch_consumes_the_generator_as_draw_did():
    """Runs and checkpoints made before the elastic kind see the same epochs."""
    for kind in augment.KINDS:
        r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
        tr = augment.draw_epoch(kind, r1, 50)
        off, flip = augment.draw(kind, r2, 50)
        np.testing.assert_array_equal(tr.offsets, off)
        np.testing.assert_array_equal(tr.flips, flip)
        if kind == "elastic":
            assert len(np.unique(tr.seeds)) == 50
            r2.integers(0, 2 ** 63, size=50, dtype=np.uint64)
        else:
            assert not tr.seeds.any()
        assert r1.random() == r2.random()


def test_elastic_bad_input():
    tr = augment.draw_epoch("elastic", np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        augment.apply_epoch(np.zeros((2, 5, 5)), tr, "elastic", sigma=0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        augment.apply_epoch(np.zeros((2, 5, 5)), tr, "elastic", alpha=-1.0)
    with pytest.raises(ValueError, match="2 transforms for 3 images"):
        augment.apply_epoch(np.zeros((3, 5, 5)), tr, "elastic")
    with pytest.raises(ValueError, match="elastic_sigma must be > 0"):
        TrainConfig(augment="elastic", elastic_sigma=0.0)
    with pytest.raises(ValueError, match="elastic_alpha must be >= 0"):
        TrainConfig(augment="elastic", elastic_alpha=-2.0)


def test_config_without_elastic_fields_loads_with_the_defaults():
    import json

    cfg = TrainConfig(dataset="mnist", augment="shift1")
    data = json.loads(cfg.to_json())
    del data["elastic_alpha"], data["elastic_sigma"]
    assert TrainConfig.from_json(json.dumps(data)) == cfg


def test_training_sees_the_elastic_images(tmp_path, seen_batches):
    """Every batch holds the epoch's samples, each distorted by its own position's field."""
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 6, 6)), rng.integers(0, 3, 20)
    cfg = TrainConfig(dataset="toy", arch="36-12", epochs=2, batch_size=8, augment="elastic",
                      elastic_alpha=3.0, elastic_sigma=1.0)
    seen = batches_seen(tmp_path, seen_batches, cfg, x, y)
    k = 0
    for epoch in range(2):
        erng = np.random.default_rng([cfg.seed, epoch])
        order = erng.permutation(20)
        seeds = erng.integers(0, 2 ** 63, size=20, dtype=np.uint64)
        for a in range(0, 20, 8):
            want = []
            for j, i in enumerate(order[a:a + 8]):
                f = ref_field(seeds[a + j], 6, 6, 3.0, 1.0)
                want.append([[ref_bilinear(x[i], r + f[0, r, c], c + f[1, r, c]) for c in range(6)]
                             for r in range(6)])
            np.testing.assert_allclose(seen[k], np.array(want), rtol=0, atol=1e-12)
            k += 1
    assert k == len(seen)


def test_plot_augmentation_checks_shapes(tmp_path):
    from eventsnn.plot import plot_augmentation

    x = np.random.default_rng(0).random((3, 8, 8))
    path = plot_augmentation(x, np.stack([x, x[::-1]]), tmp_path / "a.png", labels=[1, 2, 3])
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="augmented versions of shape"):
        plot_augmentation(x, x, tmp_path / "b.png")
