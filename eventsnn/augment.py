"""Training-time image augmentation: random translation (zero padding + crop) and horizontal flip.

A transform is drawn for a whole epoch at once (:func:`draw`: one row per
position of the epoch's sample order, from the epoch's generator) and applied
per batch (:func:`apply`), so that the result depends only on the seed, the
epoch and the sample's position in the epoch: a resumed run, or a batch split
across workers, sees exactly the same images.

Kinds:

* ``"none"`` — the images as they are;
* ``"flip"`` — horizontal flip with probability 1/2 (official Fashion-MNIST);
* ``"shift"`` — translation by up to 2 pixels in each direction, the
  uncovered border filled with 0 (black), no flip (for MNIST; not in the
  official code);
* ``"shift1"`` — the same by up to 1 pixel;
* ``"crop-flip"`` — ``RandomCrop(W, padding=4)`` then ``RandomHorizontalFlip()``
  (official CIFAR).

Apply them to the raw [0, 1] images, before normalisation, so that the padding
is black as in the official code.
"""

from __future__ import annotations

import numpy as np

KINDS = ("none", "flip", "shift", "shift1", "crop-flip")
#: (padding, flips) of each kind.
_SPEC = {"none": (0, False), "flip": (0, True), "shift": (2, False), "shift1": (1, False),
         "crop-flip": (4, True)}
#: The official code's augmentation per dataset (others: none).
OFFICIAL = {"fashion_mnist": "flip", "cifar10": "crop-flip", "cifar100": "crop-flip"}


def _check_kind(kind: str) -> None:
    if kind not in _SPEC:
        raise ValueError(f"augmentation must be one of {KINDS}, got {kind!r}")


def draw(kind: str, rng: np.random.Generator, n: int, *, padding: int | None = None):
    """Random transforms of ``n`` images.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    rng : numpy.random.Generator
        Draws ``rng.integers(0, 2 p + 1, (n, 2))`` (row and column offsets into
        the padded image) when the kind translates, then ``rng.random(n)``
        (flip where < 1/2) when it flips; nothing for ``"none"``.
    n : int
    padding : int, optional
        Override of the kind's padding p.

    Returns
    -------
    offsets : ndarray int64 (n, 2)
        Offsets of the crop window in the padded image; (p, p) is the identity.
    flips : ndarray bool (n,)
    """
    _check_kind(kind)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    pad, flips = _SPEC[kind]
    pad = pad if padding is None else int(padding)
    if pad < 0:
        raise ValueError(f"padding must be >= 0, got {pad}")
    offsets = (rng.integers(0, 2 * pad + 1, size=(n, 2)) if pad > 0
               else np.zeros((n, 2), dtype=np.int64))
    flip = rng.random(n) < 0.5 if flips else np.zeros(n, dtype=bool)
    return offsets, flip


def apply(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, padding: int) -> np.ndarray:
    """Translate (pad with zeros, crop at ``offsets``) and flip a batch of images.

    Parameters
    ----------
    images : ndarray (n, H, W) or (n, C, H, W)
    offsets : ndarray int (n, 2) — crop offsets in the image padded by ``padding``.
    flips : ndarray bool (n,) — mirror left-right after the crop.
    padding : int

    Returns
    -------
    ndarray
        A new array of the shape and dtype of ``images``.
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"images of shape (N, H, W) or (N, C, H, W) expected, got {x.shape}")
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    n, c, h, w = x.shape
    offsets = np.asarray(offsets, dtype=np.int64).reshape(n, 2)
    flips = np.asarray(flips, dtype=bool).reshape(n)
    if padding < 0 or offsets.min(initial=0) < 0 or offsets.max(initial=0) > 2 * padding:
        raise ValueError(f"offsets must lie in [0, {2 * padding}]")
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    rows = offsets[:, :1] + np.arange(h)
    cols = offsets[:, 1:] + np.arange(w)
    cols = np.where(flips[:, None], cols[:, ::-1], cols)
    out = padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return out[:, 0] if squeeze else out


def padding_of(kind: str) -> int:
    """The padding p of an augmentation kind."""
    _check_kind(kind)
    return _SPEC[kind][0]


def augment(images: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Draw and apply in one call (``draw`` then ``apply``)."""
    offsets, flips = draw(kind, rng, len(images))
    return apply(images, offsets, flips, padding_of(kind))
