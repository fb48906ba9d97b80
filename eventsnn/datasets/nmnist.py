"""N-MNIST (Orchard et al. 2015): MNIST digits recorded by an event camera, as events.

Each sample is the recording of an ATIS sensor (34 x 34 pixels) making three
saccades of 105 ms in front of an MNIST digit: a list of events (x, y,
polarity, timestamp in microseconds). eventsnn keeps them as events in
continuous time: they are **never binned into frames**.

File format
-----------
Each sample is a ``.bin`` file of 40-bit (5-byte) big-endian records, as
described in the dataset's readme and read by Orchard's ``Read_Ndataset.m``
and ``eventvision.py``::

    byte 0            x address (pixels, 0..33)
    byte 1            y address (pixels, 0..33)
    byte 2, bit 7     polarity (0 OFF, 1 ON)
    byte 2, bits 0-6  timestamp bits 22..16  } 23-bit timestamp,
    bytes 3, 4        timestamp bits 15..0   } in microseconds

A record with ``y == 240`` is a timestamp-overflow marker of the ATIS format:
like ``eventvision.py`` (and tonic), 2**13 us is added to the timestamps of
the marker and of every later event, and the marker itself is dropped (the
N-MNIST files are not known to contain any). See :func:`read_nmnist_bin`.

The archives ``Train.zip`` (60000 samples) and ``Test.zip`` (10000) hold one
folder per digit, ``<Train|Test>/<digit>/<number>.bin``.

Cache and verification
----------------------
The archive in ``<data dir>/nmnist/`` is checked against its pinned md5 (see
below) before it is read. Its ``.bin`` members are read as bytes straight out
of the zip (nothing is extracted, so member names cannot escape the folder),
in the order (digit, file name), decoded, and cached per split as four
``.npy`` files: ``<split>_addr.npy`` (uint16 ``p*34*34 + y*34 + x``),
``<split>_t_us.npy`` (uint32 timestamps), ``<split>_offsets.npy`` (int64, the
events of sample ``i`` are ``offsets[i]:offsets[i+1]``) and
``<split>_labels.npy`` (uint8). Their sha256 is recorded in
``provenance.json`` at conversion and checked whenever they are opened. The
archive is kept (delete it to save space; it is downloaded again only if the
cache has to be rebuilt).

Sources and checksums
---------------------
Mendeley Data (dataset 468j46mzdv, the URLs of current tonic) and the older
Dropbox folder of the dataset page (earlier tonic). The authors publish no
checksum for these archives; the md5 values pinned here,
``Train.zip`` 20959b8e626244a1b502305a9e6e2031 and ``Test.zip``
69ca8762b2fe404d9b9bad1103e97832, are the ones tonic (``NMNIST.train_md5``,
``test_md5``) and SpikingJelly (``NMNIST.resource_url_md5``) check. They are
verified on download (pooch) and for a local archive; the sha256 of the
archive is recorded in ``provenance.json`` the first time it is converted.

Time scale and the official code
--------------------------------
Event times are ``t_us`` converted to model time units by `time_scale`:

* ``"official"`` (default): **1 unit = 3 ms**, ``t = t_us / 3000``. The official
  code (``datasets/loadNMNIST_Spiking.py``, taken over from TSSL-BP) reads
  files made by TSSL-BP's ``NMNIST_Converter.m`` with ``time_window = 3000``
  (folder ``2312_3000_stable``, same architecture, time constants and T = 30
  as the official ``n-mnist.yaml``): an event gets the 1-based bin
  ``ceil(t_us / 3000)`` and the loader puts it on step ``bin - 1``, keeping
  bins 1..29 only. So official step ``n`` holds the events with ``t`` in
  ``(n, n+1]`` units here, and only the first 87 ms - within the first
  saccade - are used (an event at exactly ``t = 0`` lands on the last step
  through a negative index, a quirk not reproduced). The official time
  constants (tau_m 8, tau_s 4 steps) keep their meaning in these units. Cut
  the events to the window with ``t_max=30``.
* ``"recording"``: the ``T = 30`` window spans the whole 315 ms recording
  (3 saccades of 105 ms, as in Orchard's ``stabilize.m``), ``t = t_us / 10500``.
* a positive float: units per microsecond, ``t = t_us * time_scale``.

Other differences from the official input, none of them applied by default:
the official files were *stabilised* (saccade motion removed, Orchard's
``stabilize.m``; :func:`stabilize_events`, ``stabilize=True``), binary (two
events of a pixel and polarity in one 3 ms bin count once) and laid out as
(polarity, x, y), i.e. transposed; here the input index is
``p*34*34 + y*34 + x`` (polarity, row, column).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..spikes import SpikeTrains, csr_offsets, offsets_of
from . import store
from .store import DatasetError, DownloadError, corrupt_file_error, notice

__all__ = [
    "ARCHIVES",
    "INFO",
    "INPUT_SHAPE",
    "NAME",
    "SENSOR_SIZE",
    "SPLITS",
    "TIME_SCALES",
    "NmnistArchive",
    "NmnistEvents",
    "decode_nmnist",
    "input_shape",
    "load_nmnist",
    "nmnist_checksum",
    "open_nmnist",
    "read_nmnist_bin",
    "stabilize_events",
]

#: Registry name and cache subfolder.
NAME = "nmnist"
#: Width and height of the sensor in pixels.
SENSOR_SIZE = 34
#: (polarity, y, x) shape of the input at full resolution.
INPUT_SHAPE = (2, SENSOR_SIZE, SENSOR_SIZE)
#: Bytes per event in a ``.bin`` file.
EVENT_BYTES = 5
#: ``y`` value of a timestamp-overflow marker, and the time it adds (eventvision.py).
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 13
#: Duration of one saccade and of a whole recording (Orchard's stabilize.m).
SACCADE_US = 105_000
RECORDING_US = 3 * SACCADE_US
#: Named time scales: microseconds per model time unit.
TIME_SCALES: dict[str, float] = {
    "official": 3000.0,  # TSSL-BP's NMNIST_Converter time_window, the official input
    "recording": RECORDING_US / 30,  # T = 30 units span the 315 ms recording
}
#: Valid splits.
SPLITS = ("train", "test")
#: Largest archive member read into memory (real samples are ~20-40 kB).
MAX_MEMBER_BYTES = 64 * 1024 * 1024

_N_CLASSES = 10
_PLANE = SENSOR_SIZE * SENSOR_SIZE
_MENDELEY = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
_DROPBOX = "https://www.dropbox.com/sh/tg2ljlbmtzygrag/"


@dataclass(frozen=True)
class NmnistArchive:
    """One N-MNIST archive.

    Attributes
    ----------
    filename : str
        Archive name in the cache folder.
    urls : tuple of str
        Full download URLs, tried in order.
    known_hash : str
        Pinned hash, ``"md5:<hex>"`` (no sha256 is published).
    """

    filename: str
    urls: tuple[str, ...]
    known_hash: str


#: The archives, by split.
ARCHIVES: dict[str, NmnistArchive] = {
    "train": NmnistArchive(
        "Train.zip",
        (
            _MENDELEY + "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
            _DROPBOX + "AABlMOuR15ugeOxMCX0Pvoxga/Train.zip?dl=1",
        ),
        "md5:20959b8e626244a1b502305a9e6e2031",
    ),
    "test": NmnistArchive(
        "Test.zip",
        (
            _MENDELEY + "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
            _DROPBOX + "AADSKgJ2CjaBWh75HnTNZyhca/Test.zip?dl=1",
        ),
        "md5:69ca8762b2fe404d9b9bad1103e97832",
    ),
}


# ---------------------------------------------------------------------------
# The .bin format
# ---------------------------------------------------------------------------


class _FormatError(Exception):
    """Internal: what is wrong with some event bytes (turned into a DatasetError)."""


def _decode(data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    raw = raw.reshape(-1)
    if raw.dtype != np.uint8:
        raise TypeError("event data must be bytes or a uint8 array")
    if raw.size % EVENT_BYTES:
        raise _FormatError(
            f"{raw.size} bytes, not a multiple of the {EVENT_BYTES}-byte event size (truncated?)"
        )
    ev = raw.reshape(-1, EVENT_BYTES)
    x = ev[:, 0]
    y = ev[:, 1]
    b2 = ev[:, 2]
    p = b2 >> 7
    t = (
        ((b2 & 0x7F).astype(np.int64) << 16)
        | (ev[:, 3].astype(np.int64) << 8)
        | ev[:, 4].astype(np.int64)
    )
    overflow = y == OVERFLOW_Y
    if overflow.any():
        t = t + OVERFLOW_US * np.cumsum(overflow, dtype=np.int64)
        keep = ~overflow
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    bad = (x >= SENSOR_SIZE) | (y >= SENSOR_SIZE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _FormatError(
            f"event {i} at x={int(x[i])}, y={int(y[i])} lies outside the "
            f"{SENSOR_SIZE}x{SENSOR_SIZE} sensor ({int(bad.sum())} such events)"
        )
    return x.copy(), y.copy(), p.astype(np.uint8), t


def decode_nmnist(data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the content of an N-MNIST ``.bin`` file.

    Parameters
    ----------
    data : bytes or ndarray of uint8
        The file's bytes (5 per event, see the module docstring).

    Returns
    -------
    x, y : ndarray of uint8
        Pixel column and row, 0..33.
    p : ndarray of uint8
        Polarity, 0 (OFF) or 1 (ON).
    t_us : ndarray of int64
        Timestamps in microseconds, in file order (overflow markers applied
        and removed).

    Raises
    ------
    DatasetError
        If the length is not a multiple of 5 bytes or an event lies outside
        the 34 x 34 sensor.
    """
    try:
        return _decode(data)
    except _FormatError as exc:
        raise DatasetError(f"N-MNIST event data: {exc}") from None


def read_nmnist_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read one N-MNIST ``.bin`` file.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    x, y, p, t_us : ndarray
        See :func:`decode_nmnist`.

    Raises
    ------
    DatasetError
        If the file is missing, truncated or holds events outside the sensor;
        the message names it.

    Examples
    --------
    >>> x, y, p, t_us = read_nmnist_bin("Train/5/00003.bin")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: not found") from exc
    try:
        return _decode(data)
    except _FormatError as exc:
        raise corrupt_file_error(path, str(exc)) from None


def _matlab_round(v: np.ndarray) -> np.ndarray:
    """MATLAB's round: halves away from zero."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _stabilized(x, y, t_us) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stabilised 0-based (x, y) as int64, and the mask of the events that stay on the sensor."""
    x1 = np.asarray(x, dtype=np.float64) + 1.0
    y1 = np.asarray(y, dtype=np.float64) + 1.0
    ts = np.asarray(t_us, dtype=np.float64)
    s = float(SACCADE_US)
    one = ts <= s
    two = (ts > s) & (ts <= 2 * s)
    three = ts > 2 * s
    x1 = np.where(one, x1 - 3.5 * ts / s, x1)
    y1 = np.where(one, y1 - 7 * ts / s, y1)
    x1 = np.where(two, x1 - 3.5 - 3.5 * (ts - s) / s, x1)
    y1 = np.where(two, y1 - 7 + 7 * (ts - s) / s, y1)
    x1 = np.where(three, x1 - 7 + 7 * (ts - 2 * s) / s, x1)
    x1 = _matlab_round(x1)
    y1 = _matlab_round(y1)
    keep = (x1 >= 1) & (y1 >= 1) & (x1 <= SENSOR_SIZE) & (y1 <= SENSOR_SIZE)
    return (x1 - 1).astype(np.int64), (y1 - 1).astype(np.int64), keep


def stabilize_events(x, y, p, t_us):
    """Remove the saccade motion, as Orchard's ``stabilize.m`` (and TSSL-BP's converter) do.

    Within saccade 1 (``t <= 105 ms``) the image moves by (+3.5, +7) pixels,
    within saccade 2 by (+3.5, -7), within saccade 3 by (-7, 0); each event is
    shifted back, rounded half away from zero, and dropped if it leaves the
    34 x 34 sensor. The arithmetic follows the MATLAB code (1-based
    coordinates, same order of operations), so the same events survive.

    Parameters
    ----------
    x, y, p, t_us : array_like
        Events, as returned by :func:`read_nmnist_bin`.

    Returns
    -------
    x, y, p, t_us : ndarray
        The surviving events, stabilised (dtypes as :func:`decode_nmnist`).
    """
    xs, ys, keep = _stabilized(x, y, t_us)
    return (
        xs[keep].astype(np.uint8),
        ys[keep].astype(np.uint8),
        np.asarray(p, dtype=np.uint8)[keep],
        np.asarray(t_us, dtype=np.int64)[keep],
    )


def input_shape(downsample: int = 1) -> tuple[int, int, int]:
    """Shape ``(2, S, S)`` of the input after spatial downsampling by `downsample`.

    ``S = ceil(34 / downsample)``: pixel ``(x, y)`` goes to ``(x // k, y // k)``.
    """
    k = _check_downsample(downsample)
    side = -(-SENSOR_SIZE // k)
    return (2, side, side)


def _check_downsample(downsample) -> int:
    k = int(downsample)
    if k != downsample or k < 1:
        raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
    return k


def _units_per_us(time_scale) -> tuple[float, bool]:
    """-> (factor, divide): times = t_us / factor if divide else t_us * factor."""
    if isinstance(time_scale, str):
        try:
            return TIME_SCALES[time_scale], True
        except KeyError:
            raise ValueError(
                f"unknown time_scale {time_scale!r}; expected one of {sorted(TIME_SCALES)} "
                "or a positive number of model units per microsecond"
            ) from None
    scale = float(time_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"time_scale must be positive and finite, got {time_scale!r}")
    return scale, False


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def _cache_names(split: str) -> dict[str, str]:
    return {kind: f"{split}_{kind}.npy" for kind in ("addr", "t_us", "offsets", "labels")}


def _members(zf: zipfile.ZipFile) -> list[tuple[int, str, zipfile.ZipInfo]]:
    """The ``<digit>/<name>.bin`` members, sorted by (digit, name, path)."""
    out = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        parts = info.filename.split("/")
        if "__MACOSX" in parts or parts[-1].startswith("."):
            continue
        if len(parts) < 2 or not parts[-1].endswith(".bin") or parts[-2] not in tuple("0123456789"):
            continue
        out.append((int(parts[-2]), parts[-1], info))
    out.sort(key=lambda e: (e[0], e[1], e[2].filename))
    return out


def _convert(archive: Path, split: str, directory: Path, source: str) -> None:
    """Decode a verified archive into the split's cache files and record their sha256."""
    arc = ARCHIVES[split]
    addrs, times, counts, labels = [], [], [], []
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _members(zf)
            if not members:
                raise corrupt_file_error(archive, "contains no <digit>/<name>.bin member")
            for label, _, info in members:
                if info.file_size > MAX_MEMBER_BYTES:
                    raise corrupt_file_error(
                        archive, f"member {info.filename} is {info.file_size} bytes, too large"
                    )
                try:
                    x, y, p, t = _decode(zf.read(info))
                except _FormatError as exc:
                    raise corrupt_file_error(archive, f"member {info.filename}: {exc}") from None
                if t.size and t.max() >= 1 << 32:
                    raise corrupt_file_error(archive, f"member {info.filename}: timestamps beyond 2**32 us")
                addrs.append(p.astype(np.uint16) * _PLANE + y.astype(np.uint16) * SENSOR_SIZE + x)
                times.append(t.astype(np.uint32))
                counts.append(t.size)
                labels.append(label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise corrupt_file_error(
            archive, f"cannot be read as a zip archive ({type(exc).__name__}: {exc})"
        ) from exc
    offsets = csr_offsets(counts)
    arrays = {
        "addr": np.concatenate(addrs).astype(np.uint16),
        "t_us": np.concatenate(times).astype(np.uint32),
        "offsets": offsets,
        "labels": np.asarray(labels, dtype=np.uint8),
    }
    names = _cache_names(split)
    written = {names[kind]: store.save_npy(directory / names[kind], a) for kind, a in arrays.items()}
    store.record_derived(
        directory,
        written,
        source_file=arc.filename,
        source_hash=arc.known_hash,
        source=source,
        archive_sha256=store.sha256_file(archive),
        conversion="<digit>/<name>.bin members in (digit, name) order, decoded; "
        "addr = p*1156 + y*34 + x (uint16), t_us (uint32)",
    )


def _ensure_cache(split: str, directory: Path, download: bool) -> None:
    if all((directory / n).is_file() for n in _cache_names(split).values()):
        return
    arc = ARCHIVES[split]
    archive = directory / arc.filename
    if archive.is_file():
        store.verify_hash(archive, arc.known_hash)  # before anything reads it
        _convert(archive, split, directory, f"local file {arc.filename}")
        return
    if not download:
        raise DatasetError(
            f"N-MNIST {split} split not found in {directory}: neither the cache nor "
            f"{arc.filename}. Run with download=True (the default) to fetch it, or copy the "
            f"official {arc.filename} there."
        )
    notice(f"downloading N-MNIST {arc.filename} into {directory}")
    failures: list[store.MirrorFailure] = []
    got = store.download_from_mirrors(arc.filename, arc.urls, arc.known_hash, directory, failures=failures)
    if got is None:
        reasons = "; ".join(dict.fromkeys(f"{f.host}: {f.reason}" for f in failures)) or "no mirrors"
        raise DownloadError(
            f"could not download N-MNIST {arc.filename} ({reasons}). Download it by hand "
            f"(https://www.garrickorchard.com/datasets/n-mnist) into {directory} and run again."
        )
    path, url = got
    _convert(path, split, directory, url)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = csr_offsets(counts)[:-1]
    return np.repeat(starts - before, counts) + np.arange(total, dtype=np.int64)


class NmnistEvents:
    """One split of N-MNIST, verified and memory-mapped; batches are built on demand.

    Obtain it with :func:`open_nmnist`. The cache files are checked against
    their recorded sha256 once, when the split is opened.

    Attributes
    ----------
    split : str
    labels : ndarray of int64, shape (N,)
        Digit of each sample.
    offsets : ndarray of int64, shape (N + 1,)
        Events of sample ``i`` are ``offsets[i]:offsets[i+1]`` of the cache.
    """

    def __init__(self, split: str, addr: np.ndarray, t_us: np.ndarray, offsets: np.ndarray, labels: np.ndarray):
        self.split = split
        self._addr = addr
        self._t_us = t_us
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"NmnistEvents(split={self.split!r}, n_samples={len(self)}, n_events={int(self.offsets[-1])})"

    def _select(self, indices) -> np.ndarray:
        n = len(self)
        if indices is None:
            return np.arange(n, dtype=np.int64)
        idx = np.asarray(indices)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("indices must be integers")
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"sample index out of range for {n} samples")
        return idx % max(n, 1)

    def events(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The raw events ``(x, y, p, t_us)`` of sample `i`, as :func:`read_nmnist_bin` gives them."""
        (i,) = self._select([i])
        a, b = self.offsets[i], self.offsets[i + 1]
        addr = np.asarray(self._addr[a:b])
        p, rest = np.divmod(addr, _PLANE)
        y, x = np.divmod(rest, SENSOR_SIZE)
        return x.astype(np.uint8), y.astype(np.uint8), p.astype(np.uint8), np.asarray(self._t_us[a:b]).astype(np.int64)

    def batch(
        self,
        indices=None,
        *,
        time_scale: str | float = "official",
        downsample: int = 1,
        t_max: float | None = None,
        stabilize: bool = False,
    ) -> SpikeTrains:
        """The events of some samples as :class:`~eventsnn.spikes.SpikeTrains`.

        Parameters
        ----------
        indices : array_like of int, optional
            Samples, in the order wanted (default: all of the split).
        time_scale : {"official", "recording"} or float, optional
            Microseconds to model units, see the module docstring: ``"official"``
            ``t = t_us / 3000``, ``"recording"`` ``t = t_us / 10500``, a float
            ``t = t_us * time_scale``. The times are exact conversions of the
            microsecond timestamps, not binned.
        downsample : int, optional
            Spatial factor ``k``: pixel ``(x, y)`` becomes ``(x // k, y // k)``
            on a ``ceil(34 / k)`` square grid (see :func:`input_shape`); events
            that meet on one input are all kept.
        t_max : float, optional
            Drop the events later than this (model units), e.g. 30 for the
            official window.
        stabilize : bool, optional
            Remove the saccade motion first (:func:`stabilize_events`).

        Returns
        -------
        SpikeTrains
            Input index ``p*S*S + (y//k)*S + x//k`` with ``S = ceil(34/k)``
            (polarity, row, column; ``n_neurons = 2*S*S``), amplitude 1 per
            event, sorted by time then input within each sample.
        """
        k = _check_downsample(downsample)
        factor, divide = _units_per_us(time_scale)
        idx = self._select(indices)
        starts = self.offsets[idx]
        counts = self.offsets[idx + 1] - starts
        take = _ranges(starts, counts)
        addr = np.asarray(self._addr[take]).astype(np.int64)
        t_us = np.asarray(self._t_us[take]).astype(np.int64)
        samples = np.repeat(np.arange(idx.size, dtype=np.int64), counts)
        p, rest = np.divmod(addr, _PLANE)
        y, x = np.divmod(rest, SENSOR_SIZE)
        if stabilize:
            x, y, keep = _stabilized(x, y, t_us)
            x, y, p, t_us, samples = x[keep], y[keep], p[keep], t_us[keep], samples[keep]
        times = t_us / factor if divide else t_us * factor
        if t_max is not None:
            keep = times <= float(t_max)
            times, x, y, p, samples = times[keep], x[keep], y[keep], p[keep], samples[keep]
        side = -(-SENSOR_SIZE // k)
        neurons = p.astype(np.int64) * (side * side) + (y.astype(np.int64) // k) * side + x.astype(np.int64) // k
        n_neurons = 2 * side * side
        ones = np.ones(times.size)
        if _is_sorted(samples, times, neurons):
            return SpikeTrains(times, neurons, ones, offsets_of(samples, idx.size), n_neurons)
        return SpikeTrains.from_unsorted(times, neurons, ones, samples, idx.size, n_neurons)


def _is_sorted(samples: np.ndarray, times: np.ndarray, neurons: np.ndarray) -> bool:
    """True if events are ordered by (sample, time, neuron) already."""
    if samples.size < 2:
        return True
    ds = np.diff(samples)
    dt = np.diff(times)
    dn = np.diff(neurons)
    return bool(np.all((ds > 0) | ((ds == 0) & ((dt > 0) | ((dt == 0) & (dn >= 0))))))


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def open_nmnist(
    split: str = "train", data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> NmnistEvents:
    """Open one split of N-MNIST (download, verify and convert it on first use).

    Parameters
    ----------
    split : {"train", "test"}
        60000 training or 10000 test recordings.
    data_dir : str or path-like, optional
        Data directory (CLI ``--data-dir``); default ``$EVENTSNN_DATA``, else
        ``./data``. Files live in its ``nmnist/`` subfolder.
    download : bool, optional
        Fetch the archive if neither the cache nor the archive is there. If
        False, that raises :class:`~eventsnn.datasets.store.DatasetError`.

    Returns
    -------
    NmnistEvents
        The verified, memory-mapped split; ``.batch(indices, ...)`` gives
        :class:`~eventsnn.spikes.SpikeTrains`.

    Raises
    ------
    ValueError
        If `split` is unknown.
    DatasetError
        If a file is missing (``download=False``), corrupt or truncated; the
        message names it. :class:`~eventsnn.datasets.store.DownloadError` if
        the archive could not be downloaded.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown N-MNIST split {split!r}; expected one of {list(SPLITS)}")
    directory = store.dataset_dir(NAME, data_dir)
    _ensure_cache(split, directory, download)
    source_hash = ARCHIVES[split].known_hash
    names = _cache_names(split)
    arrays = {kind: store.load_npy(directory / names[kind], source_hash, mmap=True) for kind in names}
    expected = {"addr": np.uint16, "t_us": np.uint32, "offsets": np.int64, "labels": np.uint8}
    for kind, dtype in expected.items():
        a = arrays[kind]
        if a.dtype != dtype or a.ndim != 1:
            raise corrupt_file_error(
                directory / names[kind], f"1-d {np.dtype(dtype)} array expected, got {a.dtype} {a.shape}"
            )
    offsets = np.asarray(arrays["offsets"])
    labels = np.asarray(arrays["labels"])
    n_events = arrays["addr"].size
    if (
        offsets.size != labels.size + 1
        or offsets[0] != 0
        or offsets[-1] != n_events
        or arrays["t_us"].size != n_events
        or np.any(np.diff(offsets) < 0)
    ):
        raise corrupt_file_error(
            directory / names["offsets"], "offsets do not match the events and labels"
        )
    if labels.size and labels.max() >= _N_CLASSES:
        raise corrupt_file_error(directory / names["labels"], f"label {int(labels.max())} outside 0..9")
    if n_events and int(arrays["addr"].max()) >= 2 * _PLANE:
        raise corrupt_file_error(directory / names["addr"], "input index outside 0..2311")
    return NmnistEvents(split, arrays["addr"], arrays["t_us"], offsets, labels)


def load_nmnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    time_scale: str | float = "official",
    downsample: int = 1,
    indices=None,
    t_max: float | None = None,
    stabilize: bool = False,
) -> tuple[SpikeTrains, np.ndarray]:
    """Load N-MNIST samples as events in continuous time.

    Parameters
    ----------
    split : {"train", "test"}
    data_dir : str or path-like, optional
    download : bool, optional
        See :func:`open_nmnist`.
    time_scale, downsample, t_max, stabilize
        See :meth:`NmnistEvents.batch`. Default: 1 model unit = 3 ms (the
        official code's step), full 34 x 34 resolution, all events.
    indices : array_like of int, optional
        Samples to load (default: the whole split). The whole training split
        is about 250 million events, some 6 GB as ``SpikeTrains``; for
        training, :func:`open_nmnist` once and build batches with
        :meth:`NmnistEvents.batch`.

    Returns
    -------
    events : SpikeTrains
        One sample per recording, ``n_neurons = 2 * S * S`` (2312 at full
        resolution), amplitude 1, times ``t_us`` scaled, never binned.
    labels : ndarray of int64, shape (n_samples,)

    Raises
    ------
    ValueError, DatasetError
        See :func:`open_nmnist` and :meth:`NmnistEvents.batch`.

    Examples
    --------
    >>> events, labels = load_nmnist("test", indices=range(50))  # doctest: +SKIP
    >>> events.n_neurons, events.n_samples  # doctest: +SKIP
    (2312, 50)
    """
    data = open_nmnist(split, data_dir, download=download)
    idx = data._select(indices)
    trains = data.batch(idx, time_scale=time_scale, downsample=downsample, t_max=t_max, stabilize=stabilize)
    return trains, data.labels[idx]


def nmnist_checksum(data_dir: str | os.PathLike | None = None) -> str:
    """Return the sha256 identifying the N-MNIST cache (both splits).

    Parameters
    ----------
    data_dir : str or path-like, optional
        See :func:`open_nmnist`.

    Returns
    -------
    str
        See :func:`eventsnn.datasets.store.derived_checksum`: built from the
        archives' pinned md5 after every cached file was verified.

    Raises
    ------
    DatasetError
        If a cached file is missing or corrupt. Nothing is downloaded.
    """
    files = {
        fname: (ARCHIVES[split].filename, ARCHIVES[split].known_hash)
        for split in SPLITS
        for fname in _cache_names(split).values()
    }
    return store.derived_checksum(
        NAME,
        store.dataset_dir(NAME, data_dir),
        files,
        hint="Open both splits first (open_nmnist('train'), open_nmnist('test')).",
    )


#: Registry entry of N-MNIST. Its ``load`` returns ``(SpikeTrains, labels)``.
INFO = store.DatasetInfo(
    name=NAME,
    description="N-MNIST event-camera digits, 2x34x34 inputs, 10 classes, 60000 train / 10000 test (events)",
    splits=SPLITS,
    load=load_nmnist,
    checksum=nmnist_checksum,
    n_classes=_N_CLASSES,
    input_shape=INPUT_SHAPE,
)
