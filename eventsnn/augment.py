"""Training-time image augmentation: random translation (zero padding + crop), horizontal flip,
and elastic distortion.

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
  (official CIFAR);
* ``"elastic"`` — the elastic distortion of Simard, Steinkraus & Platt (2003,
  "Best practices for convolutional neural networks applied to visual document
  analysis", Sect. 2): a displacement field with components drawn uniformly
  from [-1, 1] at every pixel, smoothed by a Gaussian of standard deviation
  ``sigma`` pixels (zero outside the image) and scaled by ``alpha`` pixels;
  the image is resampled bilinearly at ``(r + dy, c + dx)`` (0 outside). The
  defaults alpha = 34, sigma = 4 are the paper's for 28 x 28 digits (root mean
  square displacement ~1.3 pixels). Not in the official code.

Translation and flip are drawn per epoch as arrays (:func:`draw`); an elastic
field is drawn from a per-sample seed (:func:`draw_epoch` draws the seeds), so
that an epoch's transforms stay small (``Transforms``: struct of arrays, one
row per position of the epoch) and any slice of them is applied alone.

Apply them to the raw [0, 1] images, before normalisation, so that the padding
is black as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("none", "flip", "shift", "shift1", "crop-flip", "elastic")
#: (padding, flips) of each kind.
_SPEC = {"none": (0, False), "flip": (0, True), "shift": (2, False), "shift1": (1, False),
         "crop-flip": (4, True), "elastic": (0, False)}
#: Kinds that distort elastically.
ELASTIC_KINDS = ("elastic",)
#: Simard et al.'s elastic distortion for 28 x 28 digits: (alpha, sigma) in pixels.
ELASTIC_DEFAULT = (34.0, 4.0)
#: The official code's augmentation per dataset (others: none).
OFFICIAL = {"fashion_mnist": "flip", "cifar10": "crop-flip", "cifar100": "crop-flip"}


def _check_kind(kind: str) -> None:
    if kind not in _SPEC:
        raise ValueError(f"augmentation must be one of {KINDS}, got {kind!r}")


def _as_nchw(images) -> tuple[np.ndarray, bool]:
    """``images`` (N, H, W) or (N, C, H, W) as (N, C, H, W), and whether a channel axis was added."""
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"images of shape (N, H, W) or (N, C, H, W) expected, got {x.shape}")
    return (x[:, None], True) if x.ndim == 3 else (x, False)


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
    x, squeeze = _as_nchw(images)
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


@dataclass(frozen=True)
class Transforms:
    """The augmentation of an epoch: one row per position of the epoch's order (struct of arrays).

    Attributes
    ----------
    offsets : ndarray int64 (n, 2)
        Crop offsets in the padded image (see :func:`apply`); ``(p, p)`` is the identity.
    flips : ndarray bool (n,)
    seeds : ndarray uint64 (n,)
        Seed of each sample's elastic field (:func:`elastic_fields`); all 0 and
        unused for kinds that do not distort.
    """

    offsets: np.ndarray
    flips: np.ndarray
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.flips)

    def __getitem__(self, idx) -> "Transforms":
        """The rows ``idx`` (a slice or an index array)."""
        return Transforms(self.offsets[idx], self.flips[idx], self.seeds[idx])

    @classmethod
    def identity(cls, n: int) -> "Transforms":
        """``n`` rows that leave every image as it is (with padding 0)."""
        return cls(np.zeros((n, 2), dtype=np.int64), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.uint64))


def draw_epoch(kind: str, rng: np.random.Generator, n: int) -> Transforms:
    """The transforms of an epoch of ``n`` samples.

    Draws exactly what :func:`draw` draws, then, for the elastic kinds,
    ``rng.integers(0, 2**63, n)`` seeds, so the kinds that existed before the
    elastic one consume the generator as they always did.
    """
    offsets, flips = draw(kind, rng, n)
    seeds = (rng.integers(0, 2 ** 63, size=n, dtype=np.uint64) if kind in ELASTIC_KINDS
             else np.zeros(n, dtype=np.uint64))
    return Transforms(np.asarray(offsets, dtype=np.int64), np.asarray(flips, dtype=bool), seeds)


def apply_epoch(images: np.ndarray, transforms: Transforms, kind: str, *,
                alpha: float = ELASTIC_DEFAULT[0], sigma: float = ELASTIC_DEFAULT[1]) -> np.ndarray:
    """Apply an epoch's transforms (rows matching ``images``) of augmentation ``kind``.

    Translation and flip first (:func:`apply`), then the elastic distortion
    (:func:`elastic`) for the elastic kinds; ``"none"`` returns ``images``
    itself.
    """
    _check_kind(kind)
    if kind == "none":
        return images
    if len(transforms) != len(images):
        raise ValueError(f"{len(transforms)} transforms for {len(images)} images")
    out = images
    pad, flips = _SPEC[kind]
    if pad > 0 or flips:
        out = apply(out, transforms.offsets, transforms.flips, pad)
    if kind in ELASTIC_KINDS:
        out = elastic(out, elastic_fields(transforms.seeds, np.shape(images)[-2:], alpha, sigma))
    return out


def elastic_fields(seeds: np.ndarray, shape: tuple[int, int], alpha: float, sigma: float) -> np.ndarray:
    """Smoothed random displacement fields (Simard et al. 2003), one per seed.

    Parameters
    ----------
    seeds : ndarray uint64 (n,)
        Field ``i`` is ``alpha * G_sigma * U`` with ``U = default_rng(seeds[i]).uniform(-1, 1, (2, H, W))``
        and ``G_sigma`` the Gaussian filter of standard deviation ``sigma``
        (``scipy.ndimage.gaussian_filter``, zero outside the image, truncated
        at 4 sigma).
    shape : (H, W)
    alpha : float
        Scale of the field, pixels (>= 0).
    sigma : float
        Smoothing, pixels (> 0).

    Returns
    -------
    ndarray float64 (n, 2, H, W)
        Row and column displacements, pixels.
    """
    from scipy.ndimage import gaussian_filter

    if not float(alpha) >= 0:
        raise ValueError(f"elastic alpha must be >= 0, got {alpha}")
    if not float(sigma) > 0:
        raise ValueError(f"elastic sigma must be > 0, got {sigma}")
    h, w = (int(v) for v in shape)
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    u = np.empty((len(seeds), 2, h, w))
    for i, s in enumerate(seeds):
        u[i] = np.random.default_rng(int(s)).uniform(-1.0, 1.0, (2, h, w))
    return float(alpha) * gaussian_filter(u, sigma=(0, 0, float(sigma), float(sigma)), mode="constant",
                                          cval=0.0)


def elastic(images: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """Resample every image at its displaced grid, bilinearly (0 outside the image).

    Parameters
    ----------
    images : ndarray (n, H, W) or (n, C, H, W)
    fields : ndarray (n, 2, H, W)
        Displacements ``(dy, dx)`` in pixels: ``out[r, c] = img(r + dy[r, c], c + dx[r, c])``,
        the same field for every channel.

    Returns
    -------
    ndarray
        A new array of the shape and dtype of ``images``.
    """
    from scipy.ndimage import map_coordinates

    x, squeeze = _as_nchw(images)
    n, c, h, w = x.shape
    fields = np.asarray(fields, dtype=np.float64)
    if fields.shape != (n, 2, h, w):
        raise ValueError(f"fields of shape {(n, 2, h, w)} expected, got {fields.shape}")
    grid_n, grid_c, grid_r, grid_w = np.meshgrid(np.arange(n), np.arange(c), np.arange(h), np.arange(w),
                                                 indexing="ij")
    coords = np.stack([grid_n, grid_c, grid_r + fields[:, None, 0], grid_w + fields[:, None, 1]])
    # grid-constant: the image is extended by zeros and interpolated there too
    out = map_coordinates(x, coords, order=1, mode="grid-constant", cval=0.0, output=np.float64)
    out = out.astype(x.dtype, copy=False)
    return out[:, 0] if squeeze else out
