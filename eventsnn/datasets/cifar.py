"""CIFAR-10 and CIFAR-100, read from the official python-pickle archives.

Data
----
The official archives of Krizhevsky's page (:data:`MIRRORS`),
``cifar-10-python.tar.gz`` (folder ``cifar-10-batches-py/``: ``data_batch_1``
to ``data_batch_5``, ``test_batch``) and ``cifar-100-python.tar.gz`` (folder
``cifar-100-python/``: ``train``, ``test``), hold Python pickles of dicts with
``data`` (uint8, N x 3072: 1024 red, 1024 green, 1024 blue values, each a
row-major 32 x 32 image) and ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100, 100 classes; the 20 ``coarse_labels`` are not used).

Cache and verification
----------------------
The archive (in ``<data dir>/cifar10/`` or ``cifar100/``) is checked against
its published sha256 before anything reads it; a download is checked by pooch
before it gets its final name. Only the expected members are read, as bytes,
straight out of the archive: nothing is extracted onto the disk, so member
names (``../``, absolute paths, links) cannot escape the folder, and links or
other non-regular members are refused. The pickles are loaded with
:class:`~eventsnn.datasets.store.SafeUnpickler`, which admits only numpy
arrays and plain containers. The arrays are cached as ``.npy`` files
(``train_images.npy`` uint8 (N, 3, 32, 32), ``train_labels.npy`` uint8 (N,),
and the same for ``test``), read back with ``allow_pickle=False``; their
sha256 is recorded in ``provenance.json`` at conversion and checked on every
read. The archive is kept (delete it to save ~165 MB; it is downloaded again
only if the cache has to be rebuilt).

Pinned checksums and where they come from
-----------------------------------------
* ``cifar-10-python.tar.gz`` (170498071 bytes): sha256
  6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce, md5
  c58f30108f718f92721af3b95e74349a.
* ``cifar-100-python.tar.gz`` (169001437 bytes): sha256
  85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7, md5
  eb9058c3a382ffc7106e4002c42a8d85.

The sha256 values are the ``file_hash`` of ``tf.keras.datasets.cifar10`` and
``cifar100`` (also in torchvision's prototype datasets); the md5 values are
the ones published on the CIFAR page and in torchvision's ``CIFAR10`` and
``CIFAR100``. The sha256 is what is checked.

Official code
-------------
``datasets/loadCIFAR10.py`` and ``loadCIFAR100.py`` of the official code
train with ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, then
``Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))`` - the same
constants for CIFAR-100. :func:`augment` and :func:`normalise` do the same with
numpy; :data:`MEAN` and :data:`STD` are those constants. (0.2023, 0.1994,
0.2010) is not the per-pixel standard deviation of CIFAR-10, which is
:data:`STD_PER_PIXEL` = (0.2470, 0.2435, 0.2616); the official values are the
default for fidelity.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..augment import apply, draw
from . import store
from .store import DatasetError, DownloadError, corrupt_file_error, notice

__all__ = [
    "ARCHIVES",
    "INFO_CIFAR10",
    "INFO_CIFAR100",
    "MEAN",
    "MIRRORS",
    "SPLITS",
    "STD",
    "STD_PER_PIXEL",
    "CifarArchive",
    "augment",
    "cifar_checksum",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "normalise",
]

#: Base URLs of the official archives, tried in order.
MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

#: Channel means of the official code (CIFAR-10 values, used for CIFAR-100 too).
MEAN = (0.4914, 0.4822, 0.4465)
#: Channel "standard deviations" of the official code (see the module docstring).
STD = (0.2023, 0.1994, 0.2010)
#: The true per-pixel standard deviations of the CIFAR-10 training set, for reference.
STD_PER_PIXEL = (0.2470, 0.2435, 0.2616)

#: Valid splits.
SPLITS = ("train", "test")

#: Largest archive member read into memory (the real ones are < 160 MB).
MAX_MEMBER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class CifarArchive:
    """One official CIFAR archive and how to read it.

    Attributes
    ----------
    name : str
        Registry name and cache subfolder (``"cifar10"``, ``"cifar100"``).
    filename : str
        Archive file name on the mirrors.
    sha256 : str
        Pinned sha256 of the archive.
    md5 : str
        Published md5 of the archive (documentation; the sha256 is checked).
    folder : str
        Top folder inside the archive.
    members : dict of str to tuple of str
        Split -> pickle files (under `folder`) whose images are concatenated in order.
    label_key : str
        Key of the labels in the pickled dicts.
    n_classes : int
        Number of classes.
    """

    name: str
    filename: str
    sha256: str
    md5: str
    folder: str
    members: dict
    label_key: str
    n_classes: int


#: The two archives, by dataset name.
ARCHIVES: dict[str, CifarArchive] = {
    "cifar10": CifarArchive(
        name="cifar10",
        filename="cifar-10-python.tar.gz",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        members={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        label_key="labels",
        n_classes=10,
    ),
    "cifar100": CifarArchive(
        name="cifar100",
        filename="cifar-100-python.tar.gz",
        sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        members={"train": ("train",), "test": ("test",)},
        label_key="fine_labels",
        n_classes=100,
    ),
}


def _cache_names(split: str) -> tuple[str, str]:
    return f"{split}_images.npy", f"{split}_labels.npy"


def _all_cache_names() -> list[str]:
    return [name for split in SPLITS for name in _cache_names(split)]


# ---------------------------------------------------------------------------
# Reading the archive
# ---------------------------------------------------------------------------


def _parse_batch(raw: bytes, archive: Path, member: str, arc: CifarArchive):
    """Unpickle one batch (bytes of the verified archive) -> (uint8 (n,3,32,32), int64 (n,))."""

    def bad(problem: str) -> DatasetError:
        return corrupt_file_error(archive, f"member {member}: {problem}")

    try:
        obj = store.safe_unpickle(raw)
    except Exception as exc:  # any failure of a foreign pickle
        raise bad(f"cannot be unpickled ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise bad(f"a pickled {type(obj).__name__}, not a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data = batch.get("data")
    labels = batch.get(arc.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise bad("'data' is not a uint8 array of shape (N, 3072)")
    if labels is None:
        raise bad(f"no {arc.label_key!r} entry")
    try:
        labels = np.asarray(labels)
    except Exception as exc:
        raise bad(f"{arc.label_key!r} is not a list of integers") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise bad(f"{arc.label_key!r} is not a list of {len(data)} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= arc.n_classes):
        raise bad(f"labels outside 0..{arc.n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_archive(archive: Path, arc: CifarArchive) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the wanted members of a verified archive; never writes anything.

    Returns split -> (images uint8 (N, 3, 32, 32), labels int64 (N,)).
    """
    wanted = {f"{arc.folder}/{m}" for members in arc.members.values() for m in members}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tf:
            for info in tf:  # streamed: the .gz is read once, front to back
                name = info.name
                if name not in wanted:
                    continue
                if name in found:
                    raise corrupt_file_error(archive, f"member {name} occurs twice")
                if not info.isfile():
                    raise corrupt_file_error(archive, f"member {name} is not a regular file")
                if info.size > MAX_MEMBER_BYTES:
                    raise corrupt_file_error(archive, f"member {name} is {info.size} bytes, too large")
                fh = tf.extractfile(info)
                raw = fh.read() if fh is not None else b""
                found[name] = _parse_batch(raw, archive, name, arc)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise corrupt_file_error(
            archive, f"cannot be read as a tar.gz archive ({type(exc).__name__}: {exc})"
        ) from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise corrupt_file_error(archive, f"lacks the member(s) {', '.join(missing)}")
    out = {}
    for split, members in arc.members.items():
        parts = [found[f"{arc.folder}/{m}"] for m in members]
        out[split] = (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )
    return out


def _convert(archive: Path, arc: CifarArchive, directory: Path, source: str) -> None:
    """Write the missing cache files from a verified archive, and record their sha256."""
    splits = _read_archive(archive, arc)
    arrays = {}
    for split, (images, labels) in splits.items():
        image_name, label_name = _cache_names(split)
        arrays[image_name] = images
        arrays[label_name] = labels.astype(np.uint8)
    written = {
        name: store.save_npy(directory / name, array)
        for name, array in arrays.items()
        if not (directory / name).is_file()
    }
    store.record_derived(
        directory,
        written,
        source_file=arc.filename,
        source_hash=arc.sha256,
        source=source,
        conversion=f"members of {arc.folder}/ unpickled; images uint8 (N, 3, 32, 32), "
        f"labels = {arc.label_key!r} as uint8",
    )


def _ensure_cache(arc: CifarArchive, directory: Path, download: bool) -> None:
    if all((directory / name).is_file() for name in _all_cache_names()):
        return
    archive = directory / arc.filename
    if archive.is_file():
        store.verify_sha256(archive, arc.sha256)  # before anything parses it
        _convert(archive, arc, directory, f"local file {arc.filename}")
        return
    if not download:
        raise DatasetError(
            f"{arc.name} not found in {directory}: neither the cache nor {arc.filename}. Run with "
            f"download=True (the default) to fetch it, or copy the official {arc.filename} there."
        )
    notice(f"downloading {arc.filename} (~165 MB) into {directory}")
    failures: list[store.MirrorFailure] = []
    got = store.download_from_mirrors(arc.filename, MIRRORS, arc.sha256, directory, failures=failures)
    if got is None:
        reasons = "; ".join(dict.fromkeys(f"{f.host}: {f.reason}" for f in failures)) or "no mirrors"
        raise DownloadError(
            f"could not download {arc.filename} ({reasons}). Download it by hand from "
            f"{MIRRORS[0]}{arc.filename} into {directory} and run again."
        )
    path, url = got
    _convert(path, arc, directory, url)


def _read_npy(path: Path, arc: CifarArchive, tail: tuple[int, ...]) -> np.ndarray:
    array = store.load_npy(path, arc.sha256)
    if array.dtype != np.uint8 or array.ndim != 1 + len(tail) or array.shape[1:] != tail:
        raise corrupt_file_error(
            path, f"uint8 array of shape (N{''.join(f', {d}' for d in tail)}) expected, got "
            f"{array.dtype} {array.shape}",
        )  # fmt: skip
    return array


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def load_cifar(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of CIFAR-10 or CIFAR-100, downloading and caching it on first use.

    Parameters
    ----------
    name : {"cifar10", "cifar100"}
        Which dataset.
    split : {"train", "test"}
        50000 training or 10000 test images.
    data_dir : str or path-like, optional
        Data directory (CLI ``--data-dir``); default ``$EVENTSNN_DATA``, else
        ``./data``. Files live in its ``cifar10/`` or ``cifar100/`` subfolder.
    download : bool, optional
        Fetch the archive if neither the cache nor the archive is there. If
        False, that raises :class:`~eventsnn.datasets.store.DatasetError`.

    Returns
    -------
    images : ndarray of float32, shape (N, 3, 32, 32)
        Intensities ``k / 255`` in [0, 1], channels red, green, blue (not normalised).
    labels : ndarray of int64, shape (N,)
        Classes 0..9 (CIFAR-10) or the fine classes 0..99 (CIFAR-100).

    Raises
    ------
    ValueError
        If `name` or `split` is unknown.
    DatasetError
        If a file is missing (``download=False``), corrupt, truncated or of
        the wrong format; the message names it and says how to fix it.
        :class:`~eventsnn.datasets.store.DownloadError` if the archive could
        not be downloaded.
    """
    if name not in ARCHIVES:
        raise ValueError(f"unknown CIFAR dataset {name!r}; expected one of {sorted(ARCHIVES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown {name} split {split!r}; expected one of {list(SPLITS)}")
    arc = ARCHIVES[name]
    directory = store.dataset_dir(arc.name, data_dir)
    _ensure_cache(arc, directory, download)
    image_name, label_name = _cache_names(split)
    raw_images = _read_npy(directory / image_name, arc, (3, 32, 32))
    raw_labels = _read_npy(directory / label_name, arc, ())
    if len(raw_images) != len(raw_labels):
        raise corrupt_file_error(
            directory / label_name, f"{len(raw_labels)} labels for {len(raw_images)} images"
        )
    if raw_labels.size and raw_labels.max() >= arc.n_classes:
        raise corrupt_file_error(
            directory / label_name, f"label {int(raw_labels.max())} outside 0..{arc.n_classes - 1}"
        )
    images = raw_images.astype(np.float32)
    images /= np.float32(255)
    return images, raw_labels.astype(np.int64)


def load_cifar10(
    split: str = "train", data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of CIFAR-10: ``load_cifar("cifar10", ...)``, see :func:`load_cifar`.

    Examples
    --------
    >>> images, labels = load_cifar10("test")  # doctest: +SKIP
    >>> images.shape, images.dtype, labels.dtype  # doctest: +SKIP
    ((10000, 3, 32, 32), dtype('float32'), dtype('int64'))
    """
    return load_cifar("cifar10", split, data_dir, download=download)


def load_cifar100(
    split: str = "train", data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of CIFAR-100 (fine labels): ``load_cifar("cifar100", ...)``, see :func:`load_cifar`."""
    return load_cifar("cifar100", split, data_dir, download=download)


def cifar_checksum(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """Return the sha256 identifying a CIFAR dataset's cache (both splits).

    Parameters
    ----------
    name : {"cifar10", "cifar100"}
    data_dir : str or path-like, optional
        See :func:`load_cifar`.

    Returns
    -------
    str
        See :func:`eventsnn.datasets.store.derived_checksum`: built from the
        archive's pinned sha256 after every cached file was verified.

    Raises
    ------
    DatasetError
        If a cached file is missing or corrupt. Nothing is downloaded.
    """
    arc = ARCHIVES[name]
    return store.derived_checksum(
        arc.name,
        store.dataset_dir(arc.name, data_dir),
        {fname: (arc.filename, arc.sha256) for fname in _all_cache_names()},
        hint=f"Load the dataset first (load_cifar({arc.name!r}, 'train')).",
    )


def normalise(
    images: np.ndarray, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD
) -> np.ndarray:
    """Per-channel normalisation ``(x - mean) / std`` of the official code.

    Parameters
    ----------
    images : ndarray, shape (..., 3, H, W)
        Intensities in [0, 1] (after :func:`augment`, as in the official code).
    mean, std : tuple of float, optional
        Per-channel constants; default :data:`MEAN`, :data:`STD` (the official
        code's, for CIFAR-10 and CIFAR-100 alike). Pass :data:`STD_PER_PIXEL`
        for the true standard deviations.

    Returns
    -------
    ndarray of float32, same shape
    """
    x = np.asarray(images, dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    if x.ndim < 3 or x.shape[-3] != m.shape[0] or s.shape[0] != m.shape[0]:
        raise ValueError(f"images of shape (..., {m.shape[0]}, H, W) expected, got {x.shape}")
    return ((x - m) / s).astype(np.float32, copy=False)


def augment(images: np.ndarray, rng: np.random.Generator, *, padding: int = 4) -> np.ndarray:
    """Random crop with zero padding, then random horizontal flip (the official augmentation).

    The numpy equivalent of ``RandomCrop(W, padding=4)`` followed by
    ``RandomHorizontalFlip()``: each image is padded with `padding` zeros on
    every side, a window of the original size is cut at a uniformly drawn
    offset (each of row and column in ``0..2*padding``), and the window is
    mirrored left-right with probability 1/2. Apply it to the raw [0, 1]
    images, before :func:`normalise`, so that the padding is black as in the
    official code.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
        A batch.
    rng : numpy.random.Generator
        Source of randomness. Each call draws ``rng.integers(0, 2*padding+1,
        size=(N, 2))`` (row and column offsets), then ``rng.random(N)`` (image
        ``i`` is flipped where it is < 0.5): a generator seeded the same way
        gives the same batch.
    padding : int, optional
        Padding on each side, 4 in the official code.

    Returns
    -------
    ndarray
        A new array of the shape and dtype of `images`.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images of shape (N, C, H, W) expected, got {x.shape}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    if padding < 0:
        raise ValueError("padding must be >= 0")
    offsets, flips = draw("crop-flip", rng, len(x), padding=padding)
    return apply(x, offsets, flips, padding)


def _info(name: str, description: str) -> store.DatasetInfo:
    arc = ARCHIVES[name]

    def load(split="train", data_dir=None, *, download=True):
        return load_cifar(name, split, data_dir, download=download)

    def checksum(data_dir=None):
        return cifar_checksum(name, data_dir)

    load.__doc__ = f"Load one split of {name}; see :func:`load_cifar`."
    checksum.__doc__ = f"sha256 identifying the {name} cache; see :func:`cifar_checksum`."
    return store.DatasetInfo(
        name=name,
        description=description,
        splits=SPLITS,
        load=load,
        checksum=checksum,
        n_classes=arc.n_classes,
        input_shape=(3, 32, 32),
    )


#: Registry entry of CIFAR-10.
INFO_CIFAR10 = _info("cifar10", "CIFAR-10 colour images, 3x32x32, 10 classes, 50000 train / 10000 test")
#: Registry entry of CIFAR-100 (fine labels).
INFO_CIFAR100 = _info(
    "cifar100", "CIFAR-100 colour images, 3x32x32, 100 fine classes, 50000 train / 10000 test"
)
