"""Fashion-MNIST (Zalando article images), read from the IDX files.

Fashion-MNIST has the layout of MNIST (:mod:`eventsnn.datasets.mnist`): four
IDX files, 60000 training and 10000 test images of 28 x 28 grey pixels, ten
classes (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot).

Data
----
The cache in ``<data dir>/fashion_mnist/`` holds the ``.gz`` files as
published and their decompressed IDX files. A ``.gz`` file is checked against
its published sha256 before it is decompressed; the sha256 of the
decompressed file is then recorded in ``provenance.json``
(:func:`~eventsnn.datasets.store.record_derived`) and the IDX file is checked
against it (and its IDX header and size) every time it is read. Nobody
publishes checksums of the uncompressed Fashion-MNIST files, which is why they
are recorded rather than pinned; :func:`fashion_mnist_checksum` is built from
the pinned ``.gz`` checksums, so it is the same on every machine.

Sources, in order: the cache; ``.gz`` files already in the folder (copied by
hand, e.g. from torchvision's ``FashionMNIST/raw``); a download from
:data:`MIRRORS` with :mod:`pooch`. There is no PyPI fallback.

Pinned checksums and where they come from
-----------------------------------------
sha256 and sizes of the ``.gz`` files: tensorflow-datasets,
``tensorflow_datasets/url_checksums/fashion_mnist.txt`` (the same values are
in torchvision's prototype datasets). md5 of the same files in torchvision's
``FashionMNIST.resources`` and in the Fashion-MNIST README: train-images
8d4fb7e6c68d591d4c3dfef9ec88bf0d, train-labels 25c81989df183df01b3e8a0aad5dffbe,
t10k-images bef4ecab320f06d8554ea6380940ec79, t10k-labels
bb300cfdad3c16e7a12a480ee83cd310.

Official code
-------------
The official code (``datasets/loadFashionMNIST.py``) normalises with the MNIST
constants (mean 0.1307, std 0.3081, :data:`MEAN`, :data:`STD`) and augments
the training images with a random horizontal flip only (:func:`augment`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..augment import apply, draw
from . import store
from .mnist import MAGIC_IMAGES, MAGIC_LABELS, IdxFile, idx_images_and_labels, read_idx
from .mnist import SPLITS as MNIST_SPLITS
from .store import DatasetError, DownloadError, notice

__all__ = [
    "CLASSES",
    "FILES",
    "INFO",
    "MEAN",
    "MIRRORS",
    "NAME",
    "SPLITS",
    "STD",
    "augment",
    "fashion_mnist_checksum",
    "load_fashion_mnist",
    "normalise",
]

#: Registry name and cache subfolder.
NAME = "fashion_mnist"

#: Base URLs of the public copies of the official ``.gz`` files, tried in order.
MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: Class names, by label.
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

#: Normalisation of the official code: the MNIST constants.
MEAN = 0.1307
STD = 0.3081

#: The four IDX files, by role. ``sha256`` is empty: the uncompressed files'
#: checksums are recorded at decompression (see the module docstring);
#: ``gz_sha256`` is the published sha256 of the ``.gz`` file.
FILES: dict[str, IdxFile] = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        MAGIC_IMAGES,
        (60000, 28, 28),
        "",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",  # 26421880 B
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        MAGIC_LABELS,
        (60000,),
        "",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",  # 29515 B
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        MAGIC_IMAGES,
        (10000, 28, 28),
        "",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",  # 4422102 B
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        MAGIC_LABELS,
        (10000,),
        "",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",  # 5148 B
    ),
}

#: Split -> (images role, labels role) in :data:`FILES` (the same roles as MNIST's).
SPLITS = MNIST_SPLITS

_N_CLASSES = 10


def _gz_name(key: str) -> str:
    return FILES[key].filename + ".gz"


def _read(key: str, directory: Path) -> np.ndarray:
    spec = FILES[key]
    path = directory / spec.filename
    array = read_idx(path, magic=spec.magic, shape=spec.shape)  # header and size
    store.verify_derived(path, spec.gz_sha256)  # content, against the recorded sha256
    return array


def _decompress(key: str, gz: Path, directory: Path, source: str) -> None:
    """Verify ``gz`` against its pinned sha256, decompress it, record the result."""
    spec = FILES[key]
    store.verify_sha256(gz, spec.gz_sha256)
    sha = store.gunzip_verified(gz, directory / spec.filename)
    store.record_derived(
        directory,
        {spec.filename: sha},
        source_file=gz.name,
        source_hash=spec.gz_sha256,
        source=source,
        conversion="gzip decompression",
    )


def _ensure_files(keys: tuple[str, ...], directory: Path, download: bool) -> None:
    """Make sure the cache files of `keys` exist (their content is checked on read)."""
    missing = [k for k in keys if not (directory / FILES[k].filename).is_file()]
    if not missing:
        return
    for key in missing:  # .gz files already in the folder
        gz = directory / _gz_name(key)
        if gz.is_file():
            _decompress(key, gz, directory, f"local file {gz.name}")
    missing = [k for k in missing if not (directory / FILES[k].filename).is_file()]
    if not missing:
        return
    if not download:
        names = ", ".join(FILES[k].filename for k in missing)
        raise DatasetError(
            f"Fashion-MNIST files not found in {directory}: {names}. Run with download=True "
            "(the default) to fetch them, or copy the official .gz files there."
        )
    notice(f"downloading Fashion-MNIST into {directory}")
    dead_hosts: set[str] = set()
    failures: list[store.MirrorFailure] = []
    for key in missing:
        got = store.download_from_mirrors(
            _gz_name(key), MIRRORS, FILES[key].gz_sha256, directory,
            dead_hosts=dead_hosts, failures=failures,
        )  # fmt: skip
        if got is None:
            reasons = "; ".join(dict.fromkeys(f"{f.host}: {f.reason}" for f in failures))
            names = ", ".join(_gz_name(k) for k in missing)
            raise DownloadError(
                f"could not download Fashion-MNIST ({reasons or 'no mirrors'}). Download "
                f"{names} by hand from one of {', '.join(MIRRORS)} into {directory} and run again."
            )
        gz, url = got
        _decompress(key, gz, directory, url)


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST, downloading and caching it on first use.

    Parameters
    ----------
    split : {"train", "test"}
        60000 training or 10000 test images.
    data_dir : str or path-like, optional
        Data directory (CLI ``--data-dir``); default ``$EVENTSNN_DATA``, else
        ``./data``. Files live in its ``fashion_mnist/`` subfolder.
    download : bool, optional
        Fetch missing files from :data:`MIRRORS`. If False, a missing file
        raises :class:`~eventsnn.datasets.store.DatasetError`.

    Returns
    -------
    images : ndarray of float32, shape (N, 28, 28)
        Pixel intensities ``k / 255`` in [0, 1] (not normalised).
    labels : ndarray of int64, shape (N,)
        Classes 0..9 (see :data:`CLASSES`).

    Raises
    ------
    ValueError
        If `split` is unknown.
    DatasetError
        If a file is missing (with ``download=False``), corrupt or truncated;
        the message names it. :class:`~eventsnn.datasets.store.DownloadError`
        if no mirror delivered a file.

    Examples
    --------
    >>> images, labels = load_fashion_mnist("test")  # doctest: +SKIP
    >>> images.shape, images.dtype, labels.dtype  # doctest: +SKIP
    ((10000, 28, 28), dtype('float32'), dtype('int64'))
    """
    if split not in SPLITS:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; expected one of {sorted(SPLITS)}")
    directory = store.dataset_dir(NAME, data_dir)
    image_key, label_key = SPLITS[split]
    _ensure_files((image_key, label_key), directory, download)
    return idx_images_and_labels(_read(image_key, directory), _read(label_key, directory),
                                 directory / FILES[label_key].filename, _N_CLASSES)


def fashion_mnist_checksum(data_dir: str | os.PathLike | None = None) -> str:
    """Return the sha256 identifying the cached Fashion-MNIST files (all four).

    Parameters
    ----------
    data_dir : str or path-like, optional
        See :func:`load_fashion_mnist`.

    Returns
    -------
    str
        See :func:`eventsnn.datasets.store.derived_checksum`: built from the
        pinned ``.gz`` checksums after every cached file was verified.

    Raises
    ------
    DatasetError
        If a file is missing or corrupt. Nothing is downloaded.
    """
    return store.derived_checksum(
        NAME,
        store.dataset_dir(NAME, data_dir),
        {s.filename: (s.filename + ".gz", s.gz_sha256) for s in FILES.values()},
        hint="Load both splits first (load_fashion_mnist('train'), load_fashion_mnist('test')).",
    )


def normalise(images: np.ndarray) -> np.ndarray:
    """Normalise like the official code: ``(x - 0.1307) / 0.3081`` (float32).

    Parameters
    ----------
    images : ndarray
        Intensities in [0, 1].

    Returns
    -------
    ndarray of float32, same shape
    """
    return ((np.asarray(images, dtype=np.float32) - np.float32(MEAN)) / np.float32(STD)).astype(
        np.float32, copy=False
    )


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The official training augmentation: a random horizontal flip (p = 1/2).

    Parameters
    ----------
    images : ndarray, shape (N, H, W) or (N, C, H, W)
        A batch; the last axis is the image width.
    rng : numpy.random.Generator
        Source of randomness; one ``rng.random(N)`` draw per call (image
        ``i`` is flipped where it is < 0.5), so a seeded generator gives the
        same result every time.

    Returns
    -------
    ndarray
        A new array of the same shape and dtype.
    """
    images = np.asarray(images)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    if images.ndim not in (3, 4):
        raise ValueError(f"images of shape (N, H, W) or (N, C, H, W) expected, got {images.shape}")
    offsets, flips = draw("flip", rng, len(images))
    return apply(images, offsets, flips, 0)


#: Registry entry of Fashion-MNIST.
INFO = store.DatasetInfo(
    name=NAME,
    description="Fashion-MNIST article images, 28x28 grey, 10 classes, 60000 train / 10000 test",
    splits=tuple(SPLITS),
    load=load_fashion_mnist,
    checksum=fashion_mnist_checksum,
    n_classes=_N_CLASSES,
    input_shape=(28, 28),
)
