"""Tests of the Fashion-MNIST, CIFAR-10/100 and N-MNIST loaders.

Everything runs offline on tiny files written here in the exact on-disk
formats (IDX .gz files, CIFAR tar.gz archives of pickled dicts, N-MNIST zip
archives of 40-bit event records packed by a reference packer); the pinned
checksums are monkeypatched to those of the fake files, as in
``test_datasets.py``. The real archives were never downloaded: these tests
are all there is for them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import requests

from eventsnn.datasets import (
    DATASETS,
    DatasetError,
    DownloadError,
    cifar,
    dataset_checksum,
    dataset_info,
    fashion_mnist,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_fashion_mnist,
    load_nmnist,
    nmnist,
    open_nmnist,
    read_nmnist_bin,
    store,
)
from eventsnn.spikes import SpikeTrains

# ---------------------------------------------------------------------------
# Helpers written from the formats, independent of the modules under test
# ---------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + np.asarray(array, dtype=np.uint8).tobytes()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*.tmp")) if directory.exists() else []


def provenance(folder: Path) -> dict:
    return json.loads((folder / "provenance.json").read_text())["files"]


def serve(monkeypatch, files: dict[str, bytes], dead=("",), seen=None):
    """Fake pooch.retrieve: URLs containing a `dead` substring are unreachable."""

    def fake_retrieve(url, known_hash, fname, path, downloader, progressbar):
        if seen is not None:
            seen.append((url, known_hash, fname))
        if any(d and d in url for d in dead):
            raise requests.ConnectionError("no route")
        data = files[fname]
        algorithm, digest = known_hash.split(":")
        assert hashlib.new(algorithm, data).hexdigest() == digest
        Path(path, fname).write_bytes(data)
        return str(Path(path, fname))

    monkeypatch.setattr(store.pooch, "retrieve", fake_retrieve)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network and no $EVENTSNN_DATA in any test here."""
    monkeypatch.delenv(store.ENV_VAR, raising=False)

    def no_network(url, *args, **kwargs):
        raise requests.ConnectionError(f"network blocked in tests: {url}")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip download must not run in these tests")

    monkeypatch.setattr(store.pooch, "retrieve", no_network)
    monkeypatch.setattr(store, "_pip_download", no_pip)


# ===========================================================================
# Fashion-MNIST
# ===========================================================================


@pytest.fixture
def fmnist(monkeypatch):
    """Tiny Fashion-MNIST: 5 train / 3 test images; FILES patched to them.

    Returns the uint8 arrays, the IDX bytes and the .gz bytes of each file.
    """
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "train_labels": np.array([9, 0, 0, 3, 7], dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "test_labels": np.array([9, 2, 1], dtype=np.uint8),
    }
    arrays["train_images"][0, 0, :2] = (0, 255)
    idx, gz = {}, {}
    for key, array in arrays.items():
        spec = fashion_mnist.FILES[key]
        idx[key] = idx_bytes(array, spec.magic)
        gz[key] = gzip.compress(idx[key], mtime=0)
        monkeypatch.setitem(
            fashion_mnist.FILES, key, dataclasses.replace(spec, shape=array.shape, gz_sha256=sha(gz[key]))
        )
    return {"arrays": arrays, "idx": idx, "gz": gz}


def put_gz(folder: Path, fm, keys=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys or fm["gz"]:
        (folder / (fashion_mnist.FILES[key].filename + ".gz")).write_bytes(fm["gz"][key])
    return folder


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_loads_local_gz(tmp_path, fmnist, split):
    folder = put_gz(tmp_path / "fashion_mnist", fmnist)
    images, labels = load_fashion_mnist(split, tmp_path, download=False)
    raw_x, raw_y = fmnist["arrays"][f"{split}_images"], fmnist["arrays"][f"{split}_labels"]
    assert images.dtype == np.float32 and images.shape == raw_x.shape
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, raw_x.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(labels, raw_y)
    assert 0.0 <= images.min() and images.max() <= 1.0
    key = f"{split}_images"
    name = fashion_mnist.FILES[key].filename
    assert (folder / name).read_bytes() == fmnist["idx"][key]  # decompressed into the cache
    entry = provenance(folder)[name]
    assert entry["sha256"] == sha(fmnist["idx"][key]) and entry["source_hash"] == sha(fmnist["gz"][key])
    assert entry["source"] == f"local file {name}.gz"
    assert leftovers(folder) == []
    # read again from the cache alone
    (folder / (name + ".gz")).unlink()
    np.testing.assert_array_equal(load_fashion_mnist(split, tmp_path, download=False)[0], images)


def test_fashion_download_from_second_mirror(tmp_path, fmnist, monkeypatch, capsys):
    seen = []
    files = {fashion_mnist.FILES[k].filename + ".gz": b for k, b in fmnist["gz"].items()}
    serve(monkeypatch, files, dead=("amazonaws",), seen=seen)
    _, labels = load_fashion_mnist("test", tmp_path)
    np.testing.assert_array_equal(labels, fmnist["arrays"]["test_labels"])
    assert seen[0][0] == fashion_mnist.MIRRORS[0] + "t10k-images-idx3-ubyte.gz"
    assert seen[1][0] == fashion_mnist.MIRRORS[1] + "t10k-images-idx3-ubyte.gz"
    assert sum("amazonaws" in url for url, _, _ in seen) == 1  # the dead host is tried once
    assert all(h.startswith("sha256:") for _, h, _ in seen)
    record = provenance(tmp_path / "fashion_mnist")
    assert record["t10k-labels-idx1-ubyte"]["source"] == fashion_mnist.MIRRORS[1] + "t10k-labels-idx1-ubyte.gz"
    assert "downloading Fashion-MNIST" in capsys.readouterr().err
    assert not (tmp_path / "fashion_mnist" / "train-images-idx3-ubyte").exists()


def test_fashion_download_failure_and_missing(tmp_path, fmnist):
    with pytest.raises(DatasetError, match="not found.*download=True") as info:
        load_fashion_mnist("train", tmp_path, download=False)
    assert not isinstance(info.value, DownloadError)
    with pytest.raises(DownloadError, match="amazonaws.*unreachable.*by hand") as info:
        load_fashion_mnist("train", tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split 'valid'"):
        load_fashion_mnist("valid", tmp_path)


def test_fashion_bad_gz_refused(tmp_path, fmnist):
    folder = tmp_path / "fashion_mnist"
    put_gz(folder, fmnist, ["test_labels"])
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(fmnist["idx"]["test_images"][:-1] + b"\x01", mtime=0))
    with pytest.raises(DatasetError, match="sha256 .* does not match") as info:
        load_fashion_mnist("test", tmp_path)  # download=True: still refused, not replaced
    assert str(bad) in str(info.value) and "delete it and run again" in str(info.value)
    assert not (folder / "t10k-images-idx3-ubyte").exists() and leftovers(folder) == []


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[:-1], "size .* expected"),
        (lambda b: b + b"\0", "size .* expected"),
        (_flip_last, "sha256 .* does not match"),
        (lambda b: b"", "shorter than"),
    ],
)
def test_fashion_corrupt_cache_refused(tmp_path, fmnist, corrupt, message):
    folder = put_gz(tmp_path / "fashion_mnist", fmnist)
    load_fashion_mnist("train", tmp_path)
    bad = folder / "train-images-idx3-ubyte"
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        load_fashion_mnist("train", tmp_path)
    assert str(bad) in str(info.value) and "delete it and run again" in str(info.value)
    bad.unlink()  # the advice works: rebuilt from the .gz
    assert load_fashion_mnist("train", tmp_path)[0].shape == (5, 28, 28)


def test_fashion_unrecorded_or_foreign_cache_refused(tmp_path, fmnist):
    folder = put_gz(tmp_path / "fashion_mnist", fmnist)
    load_fashion_mnist("test", tmp_path)
    record = json.loads((folder / "provenance.json").read_text())
    record["files"]["t10k-images-idx3-ubyte"]["source_hash"] = "0" * 64  # made from another file
    (folder / "provenance.json").write_text(json.dumps(record))
    with pytest.raises(DatasetError, match="no checksum recorded"):
        load_fashion_mnist("test", tmp_path)
    (folder / "provenance.json").unlink()
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte: no checksum recorded"):
        load_fashion_mnist("test", tmp_path)


def test_fashion_checksum_and_registry(tmp_path, fmnist):
    for d in ("a", "b"):
        put_gz(tmp_path / d / "fashion_mnist", fmnist)
    with pytest.raises(DatasetError, match="not found.*Load both splits"):
        dataset_checksum("fashion_mnist", tmp_path / "a")
    for d in ("a", "b"):
        load_fashion_mnist("train", tmp_path / d)
        load_fashion_mnist("test", tmp_path / d)
    gz_lines = sorted(f"{s.filename}.gz {s.gz_sha256}\n" for s in fashion_mnist.FILES.values())
    expected = sha(("fashion_mnist\n" + "".join(gz_lines)).encode())
    assert dataset_checksum("fashion_mnist", tmp_path / "a") == expected
    assert dataset_checksum("fashion_mnist", tmp_path / "b") == expected
    info = dataset_info("fashion_mnist")
    assert (info.n_classes, info.input_shape, info.splits) == (10, (28, 28), ("train", "test"))
    np.testing.assert_array_equal(load_dataset("fashion_mnist", "test", tmp_path / "a")[1], [9, 2, 1])


def test_fashion_official_normalise_and_flip():
    x = np.random.default_rng(0).random((6, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(fashion_mnist.normalise(x), (x - 0.1307) / 0.3081, rtol=1e-6)
    out1 = fashion_mnist.augment(x, np.random.default_rng(5))
    out2 = fashion_mnist.augment(x, np.random.default_rng(5))
    np.testing.assert_array_equal(out1, out2)
    flip = np.random.default_rng(5).random(6) < 0.5
    assert 0 < flip.sum() < 6
    for i in range(6):
        np.testing.assert_array_equal(out1[i], x[i, :, ::-1] if flip[i] else x[i])


def test_fashion_pinned_constants():
    hexdigits = set("0123456789abcdef")
    for spec in fashion_mnist.FILES.values():
        assert len(spec.gz_sha256) == 64 and set(spec.gz_sha256) <= hexdigits
    assert fashion_mnist.FILES["train_images"].gz_sha256.startswith("3aede38d")
    assert all(m.endswith("/") for m in fashion_mnist.MIRRORS) and len(fashion_mnist.MIRRORS) == 2


# ===========================================================================
# CIFAR-10 / CIFAR-100
# ===========================================================================


def pickled(d: dict) -> bytes:
    """A batch as the official files have it: a protocol-2 pickle of a dict with bytes keys."""
    return pickle.dumps(d, protocol=2)


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def cifar_batch(rng, n, label_key, n_classes, extra=None):
    """A batch dict as in the official pickles (bytes keys, uint8 data, list of int labels)."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, n_classes, size=n)]
    return {b"batch_label": b"fake batch", b"data": data, label_key.encode(): labels,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)], **(extra or {})}  # fmt: skip


@pytest.fixture
def fake_cifar(monkeypatch):
    """Tiny archives of both datasets; ARCHIVES patched to their sha256.

    Returns ``{name: {"tar": bytes, "train": (data, labels), "test": (data, labels)}}``.
    """
    rng = np.random.default_rng(2)
    out = {}
    # CIFAR-10: five train batches of 2 and a test batch of 3
    arc = cifar.ARCHIVES["cifar10"]
    members, train = {}, []
    for i in range(1, 6):
        b = cifar_batch(rng, 2, "labels", 10)
        train.append(b)
        members[f"{arc.folder}/data_batch_{i}"] = pickled(b)
    test = cifar_batch(rng, 3, "labels", 10)
    test[b"labels"][0] = 9
    members[f"{arc.folder}/test_batch"] = pickled(test)
    members[f"{arc.folder}/batches.meta"] = pickled({b"label_names": [b"airplane"] * 10})
    members[f"{arc.folder}/readme.html"] = b"<html></html>"
    tar10 = make_tar(members)
    out["cifar10"] = {
        "tar": tar10,
        "train": (np.concatenate([b[b"data"] for b in train]), [v for b in train for v in b[b"labels"]]),
        "test": (test[b"data"], test[b"labels"]),
    }
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", dataclasses.replace(arc, sha256=sha(tar10)))
    # CIFAR-100: train of 4, test of 2, fine and coarse labels
    arc = cifar.ARCHIVES["cifar100"]
    tr = cifar_batch(rng, 4, "fine_labels", 100, {b"coarse_labels": [19, 0, 1, 2]})
    tr[b"fine_labels"][0] = 99
    te = cifar_batch(rng, 2, "fine_labels", 100, {b"coarse_labels": [3, 4]})
    tar100 = make_tar({f"{arc.folder}/train": pickled(tr), f"{arc.folder}/test": pickled(te)})
    out["cifar100"] = {
        "tar": tar100,
        "train": (tr[b"data"], tr[b"fine_labels"]),
        "test": (te[b"data"], te[b"fine_labels"]),
    }
    monkeypatch.setitem(cifar.ARCHIVES, "cifar100", dataclasses.replace(arc, sha256=sha(tar100)))
    return out


def put_archive(tmp_path: Path, name: str, data: bytes) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / cifar.ARCHIVES[name].filename
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, loader", [("cifar10", load_cifar10), ("cifar100", load_cifar100)])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_loads_local_archive(tmp_path, fake_cifar, name, loader, split):
    put_archive(tmp_path, name, fake_cifar[name]["tar"])
    images, labels = loader(split, tmp_path, download=False)
    data, want_labels = fake_cifar[name][split]
    assert images.dtype == np.float32 and images.shape == (len(data), 3, 32, 32)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, want_labels)  # fine labels for CIFAR-100
    # channel planes: 1024 red, then green, then blue values, each row-major 32 x 32
    np.testing.assert_array_equal(images[:, 0, 0, :], data[:, :32] / np.float32(255))
    np.testing.assert_array_equal(images[:, 2, 31, 31], data[:, 3071] / np.float32(255))
    np.testing.assert_array_equal(images.reshape(len(data), -1) * np.float32(255), data.astype(np.float32))
    folder = tmp_path / name
    assert sorted(p.name for p in folder.glob("*.npy")) == [
        "test_images.npy", "test_labels.npy", "train_images.npy", "train_labels.npy",
    ]  # fmt: skip
    entry = provenance(folder)[f"{split}_images.npy"]
    assert entry["source_hash"] == cifar.ARCHIVES[name].sha256 and entry["source_file"].endswith(".tar.gz")
    assert leftovers(folder) == []
    assert not (folder / cifar.ARCHIVES[name].folder).exists()  # nothing extracted
    assert labels.max() < dataset_info(name).n_classes
    if name == "cifar100" and split == "train":
        assert labels[0] == 99


class Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler writing bytes as Python 2 ``str`` (BINSTRING), as cPickle did."""

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def py2_pickled(d: dict) -> bytes:
    """A pickle like the official (Python 2) files: str opcodes, numpy.core.multiarray."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(d)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_cifar_python2_pickles(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    folder = cifar.ARCHIVES["cifar10"].folder
    batches = {f"data_batch_{i}": cifar_batch(rng, 2, "labels", 10) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, 3, "labels", 10)
    blobs = {f"{folder}/{k}": py2_pickled(v) for k, v in batches.items()}
    assert b"cnumpy.core.multiarray\n_reconstruct" in blobs[f"{folder}/test_batch"]
    data = make_tar(blobs)
    pin_cifar10(monkeypatch, data)
    put_archive(tmp_path, "cifar10", data)
    images, labels = load_cifar10("test", tmp_path)
    want = batches["test_batch"]
    np.testing.assert_array_equal(labels, want[b"labels"])  # str keys after latin1 decoding
    np.testing.assert_array_equal(images.reshape(3, -1) * np.float32(255), want[b"data"].astype(np.float32))


def test_cifar_download(tmp_path, fake_cifar, monkeypatch):
    seen = []
    serve(monkeypatch, {"cifar-10-python.tar.gz": fake_cifar["cifar10"]["tar"]}, seen=seen)
    images, _ = load_dataset("cifar10", "test", tmp_path)
    assert seen == [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
         "sha256:" + sha(fake_cifar["cifar10"]["tar"]), "cifar-10-python.tar.gz"),
    ]  # fmt: skip
    assert images.shape == (3, 3, 32, 32)
    record = provenance(tmp_path / "cifar10")["train_labels.npy"]
    assert record["source"] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    load_cifar10("train", tmp_path)  # from the cache: no second download
    assert len(seen) == 1


def test_cifar_missing_and_download_failure(tmp_path, fake_cifar):
    with pytest.raises(DatasetError, match="neither the cache nor cifar-10-python.tar.gz.*download=True"):
        load_cifar10("train", tmp_path, download=False)
    with pytest.raises(DownloadError, match="www.cs.toronto.edu: unreachable.*by hand"):
        load_cifar100("train", tmp_path)
    with pytest.raises(ValueError, match="unknown cifar10 split"):
        load_cifar10("valid", tmp_path)
    with pytest.raises(ValueError, match="unknown CIFAR dataset"):
        cifar.load_cifar("cifar1000", "train", tmp_path)


def test_cifar_archive_checksum_checked_before_unpickling(tmp_path, fake_cifar, monkeypatch):
    def must_not_unpickle(raw):
        raise AssertionError("unpickled an unverified archive")

    monkeypatch.setattr(store, "safe_unpickle", must_not_unpickle)
    bad = put_archive(tmp_path, "cifar10", _flip_last(fake_cifar["cifar10"]["tar"]))
    with pytest.raises(DatasetError, match="sha256 .* does not match") as info:
        load_cifar10("train", tmp_path)
    assert str(bad) in str(info.value) and "delete it and run again" in str(info.value)
    assert not list((tmp_path / "cifar10").glob("*.npy"))


def pin_cifar10(monkeypatch, data: bytes) -> None:
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", dataclasses.replace(cifar.ARCHIVES["cifar10"], sha256=sha(data)))


def test_cifar_truncated_archive_refused(tmp_path, fake_cifar, monkeypatch):
    data = fake_cifar["cifar10"]["tar"][:-100]
    pin_cifar10(monkeypatch, data)  # passes the checksum; fails as an archive
    path = put_archive(tmp_path, "cifar10", data)
    with pytest.raises(DatasetError, match="cannot be read as a tar.gz archive") as info:
        load_cifar10("test", tmp_path)
    assert str(path) in str(info.value)
    assert not list((tmp_path / "cifar10").glob("*.npy")) and leftovers(tmp_path / "cifar10") == []


def test_cifar_links_and_traversal_never_followed(tmp_path, fake_cifar, monkeypatch):
    folder = cifar.ARCHIVES["cifar10"].folder
    good = {f"{folder}/data_batch_{i}": pickled(cifar_batch(np.random.default_rng(i), 1, "labels", 10))
            for i in range(1, 6)}  # fmt: skip
    outside = tmp_path / "escaped"
    # extra hostile members next to valid ones are ignored, never written anywhere
    evil = {"../escaped": b"x", str(outside): b"x", f"{folder}/../../escaped2": b"x"}
    data = make_tar({**good, **evil, f"{folder}/test_batch": good[f"{folder}/data_batch_1"]})
    pin_cifar10(monkeypatch, data)
    put_archive(tmp_path / "ok", "cifar10", data)
    assert load_cifar10("train", tmp_path / "ok")[0].shape == (5, 3, 32, 32)
    assert not outside.exists() and not (tmp_path / "escaped2").exists()
    assert not (tmp_path / "ok" / "escaped").exists()
    # a wanted member that is a link is refused
    data = make_tar(good, links={f"{folder}/test_batch": "/etc/passwd"})
    pin_cifar10(monkeypatch, data)
    put_archive(tmp_path / "link", "cifar10", data)
    with pytest.raises(DatasetError, match="test_batch is not a regular file"):
        load_cifar10("test", tmp_path / "link")


def test_cifar_hostile_or_wrong_pickles_refused(tmp_path, fake_cifar, monkeypatch, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    folder = cifar.ARCHIVES["cifar10"].folder
    good = {f"{folder}/data_batch_{i}": pickled(cifar_batch(np.random.default_rng(i), 1, "labels", 10))
            for i in range(1, 6)}  # fmt: skip
    cases = [
        (pickle.dumps(Evil(), protocol=2), "refusing to load .*print"),
        (pickled([1, 2]), "a pickled list, not a dict"),
        (pickled({b"data": np.zeros((2, 3072), np.uint8)}), "no 'labels' entry"),
        (pickled({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"shape \(N, 3072\)"),
        (pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "list of 2 integers"),
        (pickled({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), r"labels outside 0\.\.9"),
        (b"not a pickle", "cannot be unpickled"),
    ]
    for i, (blob, message) in enumerate(cases):
        data = make_tar({**good, f"{folder}/test_batch": blob})
        pin_cifar10(monkeypatch, data)
        path = put_archive(tmp_path / str(i), "cifar10", data)
        with pytest.raises(DatasetError, match=message) as info:
            load_cifar10("test", tmp_path / str(i))
        assert str(path) in str(info.value) and "member cifar-10-batches-py/test_batch" in str(info.value)
        assert not list(path.parent.glob("*.npy"))
    assert "executed!" not in capsys.readouterr().out
    data = make_tar(good)  # no test_batch at all
    pin_cifar10(monkeypatch, data)
    put_archive(tmp_path / "short", "cifar10", data)
    with pytest.raises(DatasetError, match="lacks the member.*test_batch"):
        load_cifar10("train", tmp_path / "short")


@pytest.mark.parametrize(
    "corrupt, message",
    [(lambda b: b[:-1], "sha256 .* does not match"), (_flip_last, "sha256 .* does not match")],
)
def test_cifar_corrupt_cache_refused(tmp_path, fake_cifar, corrupt, message):
    put_archive(tmp_path, "cifar10", fake_cifar["cifar10"]["tar"])
    load_cifar10("train", tmp_path)
    bad = tmp_path / "cifar10" / "train_images.npy"
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        load_cifar10("train", tmp_path)
    assert str(bad) in str(info.value) and "delete it and run again" in str(info.value)
    with pytest.raises(DatasetError):
        dataset_checksum("cifar10", tmp_path)
    load_cifar10("test", tmp_path)  # the other split is unaffected
    bad.unlink()  # the advice works: rebuilt from the kept archive
    assert load_cifar10("train", tmp_path)[0].shape == (10, 3, 32, 32)


def test_cifar_recorded_npy_of_wrong_kind_refused(tmp_path, fake_cifar):
    put_archive(tmp_path, "cifar10", fake_cifar["cifar10"]["tar"])
    load_cifar10("train", tmp_path)
    folder = tmp_path / "cifar10"
    sha_npy = store.save_npy(folder / "train_images.npy", np.zeros((10, 3, 32, 32), dtype=np.float64))
    arc = cifar.ARCHIVES["cifar10"]
    store.record_derived(folder, {"train_images.npy": sha_npy}, source_file=arc.filename,
                         source_hash=arc.sha256, source="test")  # fmt: skip
    with pytest.raises(DatasetError, match=r"uint8 array of shape \(N, 3, 32, 32\) expected"):
        load_cifar10("train", tmp_path)


def test_cifar_checksum_and_registry(tmp_path, fake_cifar):
    for name in ("cifar10", "cifar100"):
        with pytest.raises(DatasetError, match="not found.*Load the dataset first"):
            dataset_checksum(name, tmp_path)
        put_archive(tmp_path, name, fake_cifar[name]["tar"])
        load_dataset(name, "test", tmp_path)  # converts both splits
        arc = cifar.ARCHIVES[name]
        assert dataset_checksum(name, tmp_path) == sha(f"{name}\n{arc.filename} {arc.sha256}\n".encode())
        info = DATASETS[name]
        assert info.input_shape == (3, 32, 32) and info.splits == ("train", "test")
    assert (DATASETS["cifar10"].n_classes, DATASETS["cifar100"].n_classes) == (10, 100)
    assert dataset_checksum("cifar10", tmp_path) != dataset_checksum("cifar100", tmp_path)


def test_cifar_pinned_constants():
    assert cifar.ARCHIVES["cifar10"].sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert cifar.ARCHIVES["cifar100"].sha256 == "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
    assert cifar.ARCHIVES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.ARCHIVES["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert cifar.MEAN == (0.4914, 0.4822, 0.4465) and cifar.STD == (0.2023, 0.1994, 0.2010)


def test_cifar_normalise():
    x = np.random.default_rng(3).random((4, 3, 32, 32)).astype(np.float32)
    out = cifar.normalise(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (x[:, c] - cifar.MEAN[c]) / cifar.STD[c], rtol=1e-6)
    np.testing.assert_allclose(
        cifar.normalise(x, std=cifar.STD_PER_PIXEL)[:, 1], (x[:, 1] - 0.4822) / 0.2435, rtol=1e-6
    )
    with pytest.raises(ValueError, match="shape"):
        cifar.normalise(x[:, :2])


def reference_augment(images, rng, padding=4):
    """Crop + flip written image by image, with the documented draws."""
    n, _, h, w = images.shape
    offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
    flip = rng.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        padded = np.pad(images[i], ((0, 0), (padding, padding), (padding, padding)))
        crop = padded[:, offsets[i, 0] : offsets[i, 0] + h, offsets[i, 1] : offsets[i, 1] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


def test_cifar_augment_deterministic_and_correct():
    x = np.random.default_rng(4).random((16, 3, 32, 32)).astype(np.float32)
    a = cifar.augment(x, np.random.default_rng(7))
    b = cifar.augment(x, np.random.default_rng(7))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)  # same seed, same batch
    assert not np.array_equal(a, cifar.augment(x, np.random.default_rng(8)))
    np.testing.assert_array_equal(a, reference_augment(x, np.random.default_rng(7)))
    rng = np.random.default_rng(9)
    first, second = cifar.augment(x, rng), cifar.augment(x, rng)  # the generator advances
    assert not np.array_equal(first, second)
    # the padding is zeros; an un-shifted, un-flipped crop is the image itself
    offsets = np.random.default_rng(7).integers(0, 9, size=(16, 2))  # the first draw
    assert np.any(offsets[:, 0] > 4)
    for i in range(16):
        dy = offsets[i, 0] - 4
        if dy > 0:
            assert np.all(a[i, :, 32 - dy :, :] == 0)
    ident = cifar.augment(x, np.random.default_rng(0), padding=0)
    for i in range(16):
        assert np.array_equal(ident[i], x[i]) or np.array_equal(ident[i], x[i, :, :, ::-1])
    with pytest.raises(TypeError, match="Generator"):
        cifar.augment(x, 7)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cifar.augment(x[0], np.random.default_rng(0))


# ===========================================================================
# N-MNIST
# ===========================================================================


def pack_events(x, y, p, t) -> bytes:
    """Reference packer: one 40-bit big-endian word per event, x | y | p | 23-bit t."""
    out = bytearray()
    for xi, yi, pi, ti in zip(x, y, p, t):
        assert 0 <= xi < 256 and 0 <= yi < 256 and pi in (0, 1) and 0 <= ti < 1 << 23
        word = (int(xi) << 32) | (int(yi) << 24) | (int(pi) << 23) | int(ti)
        out += word.to_bytes(5, "big")
    return bytes(out)


def random_events(rng, n):
    x = rng.integers(0, 34, n)
    y = rng.integers(0, 34, n)
    p = rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 315_000, n))
    return x, y, p, t


def make_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2015, 1, 1, 0, 0, 0))
            if name.endswith("/"):
                zf.writestr(info, b"")
            else:
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def pin_nmnist(monkeypatch, split: str, data: bytes) -> None:
    arc = nmnist.ARCHIVES[split]
    monkeypatch.setitem(nmnist.ARCHIVES, split, dataclasses.replace(arc, known_hash="md5:" + md5(data)))


@pytest.fixture
def fake_nmnist(monkeypatch):
    """Tiny Train.zip / Test.zip; the pinned md5 patched to theirs.

    Returns ``{split: {"zip": bytes, "samples": [(label, (x, y, p, t)), ...] in load order}}``.
    """
    rng = np.random.default_rng(5)
    out = {}
    layout = {
        "train": [(3, "00007.bin"), (0, "00002.bin"), (9, "00001.bin"), (0, "00010.bin"), (1, "00003.bin")],
        "test": [(7, "00001.bin"), (2, "00002.bin"), (1, "00003.bin")],
    }
    for split, members in layout.items():
        folder = "Train" if split == "train" else "Test"
        entries = [(f"{folder}/", b""), (f"{folder}/0/", b""), ("__MACOSX/Train/0/._00002.bin", b"junk"),
                   (f"{folder}/readme.txt", b"hello")]  # fmt: skip
        samples = []
        for label, name in members:  # written out of order on purpose
            ev = random_events(rng, int(rng.integers(5, 40)))
            entries.append((f"{folder}/{label}/{name}", pack_events(*ev)))
            samples.append((label, name, ev))
        if split == "train":  # an empty recording, and the extremes of every field
            entries.append((f"{folder}/5/00004.bin", b""))
            samples.append((5, "00004.bin", tuple(np.zeros(0, int) for _ in range(4))))
            ev = (np.array([0, 33, 33, 0]), np.array([0, 33, 0, 33]), np.array([0, 1, 1, 0]),
                  np.array([0, 1, 1, (1 << 23) - 1]))  # fmt: skip
            entries.append((f"{folder}/8/00005.bin", pack_events(*ev)))
            samples.append((8, "00005.bin", ev))
        data = make_zip(entries)
        samples.sort(key=lambda s: (s[0], s[1]))
        out[split] = {"zip": data, "samples": [(label, ev) for label, _, ev in samples]}
        pin_nmnist(monkeypatch, split, data)
    return out


def put_zip(tmp_path: Path, split: str, data: bytes) -> Path:
    folder = tmp_path / "nmnist"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / nmnist.ARCHIVES[split].filename
    path.write_bytes(data)
    return path


def expected_trains(samples, times_of, neuron_of, n_neurons):
    """SpikeTrains built by hand: events sorted by (time, neuron) within each sample."""
    times, neurons, offsets = [], [], [0]
    for _, (x, y, p, t) in samples:
        tt = np.array([times_of(int(v)) for v in t], dtype=np.float64)
        nn = np.array([neuron_of(int(a), int(b), int(c)) for a, b, c in zip(x, y, p)], dtype=np.int64)
        order = np.lexsort((nn, tt))
        times.append(tt[order])
        neurons.append(nn[order])
        offsets.append(offsets[-1] + len(tt))
    times = np.concatenate(times) if times else np.zeros(0)
    neurons = np.concatenate(neurons) if neurons else np.zeros(0, np.int64)
    return SpikeTrains(times, neurons, np.ones(times.size), np.array(offsets), n_neurons)


def test_read_nmnist_bin_roundtrip(tmp_path):
    rng = np.random.default_rng(6)
    x, y, p, t = random_events(rng, 200)
    t[:4] = [0, 1, 1 << 16, (1 << 23) - 1]  # every timestamp byte, and the 23-bit maximum
    t[4:] = np.sort(rng.integers(0, 1 << 23, 196))
    x[:2], y[:2], p[:2] = (0, 33), (33, 0), (1, 0)
    path = tmp_path / "00001.bin"
    path.write_bytes(pack_events(x, y, p, t))
    gx, gy, gp, gt = read_nmnist_bin(path)
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    np.testing.assert_array_equal(gp, p)
    np.testing.assert_array_equal(gt, t)
    assert gx.dtype == gy.dtype == gp.dtype == np.uint8 and gt.dtype == np.int64
    # the bit layout, byte by byte: x, y, p|t[22:16], t[15:8], t[7:0]
    assert pack_events([1], [2], [1], [0x123456]) == bytes([1, 2, 0x80 | 0x12, 0x34, 0x56])
    (tmp_path / "one.bin").write_bytes(bytes([1, 2, 0x92, 0x34, 0x56]))
    assert [int(v[0]) for v in read_nmnist_bin(tmp_path / "one.bin")] == [1, 2, 1, 0x123456]
    (tmp_path / "empty.bin").write_bytes(b"")
    assert all(v.size == 0 for v in read_nmnist_bin(tmp_path / "empty.bin"))
    np.testing.assert_array_equal(nmnist.decode_nmnist(pack_events(x, y, p, t))[3], t)


def test_read_nmnist_bin_overflow_marker(tmp_path):
    # y == 240: +2**13 us for the marker and everything after it; the marker is dropped
    data = pack_events([1, 0, 2, 0, 3], [1, 240, 2, 240, 3], [0, 0, 1, 0, 1], [10, 0, 20, 0, 30])
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    x, y, p, t = read_nmnist_bin(path)
    np.testing.assert_array_equal(p, [0, 1, 1])
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_array_equal(y, [1, 2, 3])
    np.testing.assert_array_equal(t, [10, 20 + 8192, 30 + 2 * 8192])


@pytest.mark.parametrize(
    "data, message",
    [
        (pack_events([1], [1], [0], [5])[:-1], "4 bytes, not a multiple of the 5-byte"),
        (pack_events([1, 2], [1, 1], [0, 0], [5, 6]) + b"\x00\x01", "12 bytes"),
        (pack_events([34], [0], [0], [5]), "x=34, y=0 lies outside the 34x34 sensor"),
        (pack_events([0], [200], [0], [5]), "outside"),
    ],
)
def test_read_nmnist_bin_bad_file(tmp_path, data, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=message) as info:
        read_nmnist_bin(path)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="not found"):
        read_nmnist_bin(tmp_path / "missing.bin")


@pytest.mark.parametrize("split", ["train", "test"])
def test_nmnist_loads_local_archive_unbinned(tmp_path, fake_nmnist, split):
    put_zip(tmp_path, split, fake_nmnist[split]["zip"])
    events, labels = load_nmnist(split, tmp_path, download=False)
    samples = fake_nmnist[split]["samples"]
    assert isinstance(events, SpikeTrains) and events.n_neurons == 2 * 34 * 34
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [s[0] for s in samples])  # (digit, file name) order
    want = expected_trains(samples, lambda t: t / 3000.0, lambda x, y, p: p * 1156 + y * 34 + x, 2312)
    assert events.equals(want)  # exact floats: t_us / 3000, never binned
    assert np.all(events.amplitudes == 1.0)
    raw_t = np.concatenate([ev[3] for _, ev in samples])
    assert np.unique(events.times).size == np.unique(raw_t).size  # no two timestamps merged
    if split == "train":
        times = events.sample(labels.tolist().index(8)).times  # the extremes sample
        assert times[0] == 0.0 and times[-1] == ((1 << 23) - 1) / 3000
    folder = tmp_path / "nmnist"
    entry = provenance(folder)[f"{split}_t_us.npy"]
    assert entry["source_hash"] == nmnist.ARCHIVES[split].known_hash
    assert entry["archive_sha256"] == sha(fake_nmnist[split]["zip"])
    assert not (folder / ("Train" if split == "train" else "Test")).exists()  # nothing extracted
    assert leftovers(folder) == []


def test_nmnist_time_scales_and_t_max(tmp_path, fake_nmnist):
    put_zip(tmp_path, "train", fake_nmnist["train"]["zip"])
    data = open_nmnist("train", tmp_path)
    samples = fake_nmnist["train"]["samples"]
    raw_t = np.concatenate([ev[3] for _, ev in samples]).astype(np.int64)

    def sorted_times(trains):
        return np.sort(trains.times)

    np.testing.assert_array_equal(sorted_times(data.batch(time_scale="recording")), np.sort(raw_t / 10500.0))
    np.testing.assert_array_equal(sorted_times(data.batch(time_scale=1e-3)), np.sort(raw_t * 1e-3))
    assert nmnist.TIME_SCALES["recording"] * 30 == 315_000
    cut = data.batch(t_max=30.0)
    assert cut.n_events == int(np.count_nonzero(raw_t / 3000.0 <= 30.0)) and cut.times.max() <= 30.0
    for bad in ("frames", -1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match="time_scale"):
            data.batch(time_scale=bad)


@pytest.mark.parametrize("k, side", [(1, 34), (2, 17), (3, 12), (34, 1)])
def test_nmnist_downsampling(tmp_path, fake_nmnist, k, side):
    put_zip(tmp_path, "test", fake_nmnist["test"]["zip"])
    events, _ = load_nmnist("test", tmp_path, downsample=k)
    assert nmnist.input_shape(k) == (2, side, side) and events.n_neurons == 2 * side * side
    want = expected_trains(
        fake_nmnist["test"]["samples"],
        lambda t: t / 3000.0,
        lambda x, y, p: p * side * side + (y // k) * side + x // k,
        2 * side * side,
    )
    assert events.equals(want)
    for bad in (0, 1.5, -2):
        with pytest.raises(ValueError, match="downsample"):
            load_nmnist("test", tmp_path, downsample=bad)


def test_nmnist_batches_and_events(tmp_path, fake_nmnist):
    put_zip(tmp_path, "train", fake_nmnist["train"]["zip"])
    data = open_nmnist("train", tmp_path)
    samples = fake_nmnist["train"]["samples"]
    assert len(data) == len(samples) and "n_samples=7" in repr(data)
    full = data.batch()
    sub = data.batch([4, 0, -1])
    assert sub.equals(full.select([4, 0, len(samples) - 1]))
    events, labels = load_nmnist("train", tmp_path, indices=[4, 0])
    assert events.equals(full.select([4, 0]))
    np.testing.assert_array_equal(labels, [samples[4][0], samples[0][0]])
    for i, (_, ev) in enumerate(samples):
        for got, want in zip(data.events(i), ev):
            np.testing.assert_array_equal(got, want)
    assert data.batch([]).n_samples == 0
    with pytest.raises(IndexError):
        data.batch([len(samples)])


def test_nmnist_stabilize(tmp_path, monkeypatch):
    # hand-computed with stabilize.m (1-based, MATLAB round = half away from zero)
    x = np.array([10, 10, 10, 0, 33, 5])
    y = np.array([10, 10, 10, 0, 33, 5])
    p = np.array([1, 0, 1, 1, 0, 0])
    t = np.array([52_500, 157_500, 262_500, 105_000, 300_000, 0])
    # 1-based x1: 11-1.75=9.25->9, 11-3.5-1.75=5.75->6, 11-7+3.5=7.5->8, 1-3.5=-2.5->-3 (dropped),
    # 34-7+6=33, 6;  y1: 11-3.5=7.5->8, 11-7+3.5=7.5->8, 11, (dropped), 34, 6
    sx, sy, sp, st = nmnist.stabilize_events(x, y, p, t)
    np.testing.assert_array_equal(st, [52_500, 157_500, 262_500, 300_000, 0])
    np.testing.assert_array_equal(sx, [8, 5, 7, 32, 5])
    np.testing.assert_array_equal(sy, [7, 7, 10, 33, 5])
    np.testing.assert_array_equal(sp, [1, 0, 1, 0, 0])
    data = make_zip([("Test/4/00001.bin", pack_events(x, y, p, t))])
    pin_nmnist(monkeypatch, "test", data)
    put_zip(tmp_path, "test", data)
    events, _ = load_nmnist("test", tmp_path, stabilize=True)
    want = expected_trains([(4, (sx, sy, sp, st))], lambda v: v / 3000.0,
                           lambda a, b, c: c * 1156 + b * 34 + a, 2312)  # fmt: skip
    assert events.equals(want)


def test_nmnist_download_with_md5_and_full_urls(tmp_path, fake_nmnist, monkeypatch, capsys):
    seen = []
    serve(monkeypatch, {"Test.zip": fake_nmnist["test"]["zip"]}, dead=("mendeley",), seen=seen)
    events, labels = load_nmnist("test", tmp_path)
    np.testing.assert_array_equal(labels, [1, 2, 7])
    assert events.n_samples == 3
    urls = [u for u, _, _ in seen]
    assert urls == list(nmnist.ARCHIVES["test"].urls)  # full URLs, not <base><filename>
    assert "dropbox" in urls[1] and urls[1].endswith("Test.zip?dl=1")
    assert {h for _, h, _ in seen} == {"md5:" + md5(fake_nmnist["test"]["zip"])}
    assert {f for _, _, f in seen} == {"Test.zip"}
    assert provenance(tmp_path / "nmnist")["test_addr.npy"]["source"] == urls[1]
    assert "downloading N-MNIST Test.zip" in capsys.readouterr().err


def test_nmnist_missing_and_download_failure(tmp_path, fake_nmnist):
    with pytest.raises(DatasetError, match="neither the cache nor Train.zip.*download=True"):
        open_nmnist("train", tmp_path, download=False)
    with pytest.raises(DownloadError, match="data.mendeley.com: unreachable.*by hand"):
        open_nmnist("train", tmp_path)
    with pytest.raises(ValueError, match="unknown N-MNIST split"):
        open_nmnist("valid", tmp_path)


def test_nmnist_archive_md5_checked(tmp_path, fake_nmnist):
    bad = put_zip(tmp_path, "train", _flip_last(fake_nmnist["train"]["zip"]))
    with pytest.raises(DatasetError, match="md5 .* does not match") as info:
        open_nmnist("train", tmp_path)
    assert str(bad) in str(info.value) and "delete it and run again" in str(info.value)
    assert not list((tmp_path / "nmnist").glob("*.npy"))


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("Train/0/00001.bin", b"\x01\x02\x03\x04\x05\x06\x07")],
         "member Train/0/00001.bin: 7 bytes, not a multiple"),
        ([("Train/3/00001.bin", pack_events([40], [1], [0], [1]))], "member Train/3/00001.bin: event 0 at x=40"),
        ([("Train/readme.txt", b"no samples")], "contains no <digit>/<name>.bin member"),
        (None, "cannot be read as a zip archive"),
    ],
)  # fmt: skip
def test_nmnist_bad_archive_content_refused(tmp_path, monkeypatch, entries, message):
    data = make_zip(entries) if entries is not None else b"PK\x03\x04 truncated zip"
    pin_nmnist(monkeypatch, "train", data)  # passes the checksum; fails on content
    path = put_zip(tmp_path, "train", data)
    with pytest.raises(DatasetError, match=message) as info:
        open_nmnist("train", tmp_path)
    assert str(path) in str(info.value)
    assert not list((tmp_path / "nmnist").glob("*.npy")) and leftovers(tmp_path / "nmnist") == []


@pytest.mark.parametrize("kind", ["addr", "t_us", "offsets", "labels"])
def test_nmnist_corrupt_cache_refused(tmp_path, fake_nmnist, kind):
    put_zip(tmp_path, "test", fake_nmnist["test"]["zip"])
    open_nmnist("test", tmp_path)
    bad = tmp_path / "nmnist" / f"test_{kind}.npy"
    bad.write_bytes(_flip_last(bad.read_bytes()))
    with pytest.raises(DatasetError, match="sha256 .* does not match") as info:
        open_nmnist("test", tmp_path)
    assert str(bad) in str(info.value) and "delete it and run again" in str(info.value)
    bad.unlink()  # rebuilt from the kept archive
    assert len(open_nmnist("test", tmp_path)) == 3


def test_nmnist_inconsistent_cache_refused(tmp_path, fake_nmnist):
    put_zip(tmp_path, "test", fake_nmnist["test"]["zip"])
    open_nmnist("test", tmp_path)
    folder = tmp_path / "nmnist"
    arc = nmnist.ARCHIVES["test"]
    digest = store.save_npy(folder / "test_offsets.npy", np.array([0, 1, 2, 3], dtype=np.int64))
    store.record_derived(folder, {"test_offsets.npy": digest}, source_file=arc.filename,
                         source_hash=arc.known_hash, source="test")  # fmt: skip
    with pytest.raises(DatasetError, match="offsets do not match"):
        open_nmnist("test", tmp_path)


def test_nmnist_checksum_and_registry(tmp_path, fake_nmnist):
    for split in ("train", "test"):
        put_zip(tmp_path, split, fake_nmnist[split]["zip"])
    open_nmnist("test", tmp_path)
    with pytest.raises(DatasetError, match="not found.*Open both splits"):
        dataset_checksum("nmnist", tmp_path)
    events, labels = load_dataset("nmnist", "train", tmp_path)
    assert isinstance(events, SpikeTrains) and events.n_samples == len(labels) == 7
    tr, te = nmnist.ARCHIVES["train"], nmnist.ARCHIVES["test"]
    text = f"nmnist\nTest.zip {te.known_hash}\nTrain.zip {tr.known_hash}\n"
    assert dataset_checksum("nmnist", tmp_path) == sha(text.encode())
    info = DATASETS["nmnist"]
    assert (info.n_classes, info.input_shape, info.splits) == (10, (2, 34, 34), ("train", "test"))


def test_nmnist_pinned_constants():
    assert nmnist.ARCHIVES["train"].known_hash == "md5:20959b8e626244a1b502305a9e6e2031"
    assert nmnist.ARCHIVES["test"].known_hash == "md5:69ca8762b2fe404d9b9bad1103e97832"
    for arc in nmnist.ARCHIVES.values():
        assert len(arc.urls) == 2 and all(u.startswith("https://") for u in arc.urls)
    assert nmnist.TIME_SCALES["official"] == 3000.0


def test_registry_lists_all_datasets():
    assert list(DATASETS) == ["mnist", "fashion_mnist", "cifar10", "cifar100", "nmnist"]
    with pytest.raises(ValueError, match="known datasets: mnist, fashion_mnist, cifar10, cifar100, nmnist"):
        dataset_info("imagenet")


def test_nmnist_trains_on_its_own_event_times(tmp_path, fake_nmnist, monkeypatch):
    """`eventsnn train nmnist`: the network gets the loader's events (cut at t_end, never
    binned) and the run writes a checkpoint that `evaluate` reads."""
    from click.testing import CliRunner

    import eventsnn.train as train_mod
    from eventsnn.cli.main import main
    from eventsnn.spikes import EventSamples

    for split in ("train", "test"):
        put_zip(tmp_path, split, fake_nmnist[split]["zip"])
    seen = []
    real = train_mod.encode_images

    def spy(images, config):
        out = real(images, config)
        if isinstance(images, EventSamples):
            seen.append(out)
        return out

    monkeypatch.setattr(train_mod, "encode_images", spy)
    args = ["train", "nmnist", "--arch", "2C5p1-P2-8", "--steps", "30", "--tau-m", "8", "--tau-s", "4",
            "--tau-grad", "3", "--desired", "15", "--undesired", "2", "--epochs", "1", "--batch-size", "3",
            "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    raw = np.concatenate([load_nmnist(split, tmp_path, download=False)[0].times for split in ("train", "test")])
    cut = raw[raw <= 30.0]
    assert seen and max(s.times.max(initial=0) for s in seen) <= 30.0
    assert np.isin(np.concatenate([s.times for s in seen]), cut).all()  # the raw t_us / 3000 values
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "run"), "--data-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["n"] == 3
    # the errors figure shows event samples as event counts
    res = CliRunner().invoke(main, ["plot", "errors", str(tmp_path / "run"), "--data-dir", str(tmp_path),
                                    "--out", str(tmp_path / "errors.png"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "of 3 test images" in res.output and (tmp_path / "errors.png").stat().st_size > 1000


def test_event_samples_index_like_arrays():
    from eventsnn.spikes import EventSamples

    rng = np.random.default_rng(0)
    n = 40
    st = SpikeTrains.from_unsorted(rng.uniform(0, 5, n), rng.integers(0, 8, n), np.ones(n),
                                   rng.integers(0, 5, n), 5, 8)
    es = EventSamples(st, (2, 2, 2))
    assert len(es) == 5 and es.shape == (5, 2, 2, 2) and np.shape(es)[1:] == (2, 2, 2)
    for index, want in [(slice(1, 4), [1, 2, 3]), ([4, 0, 0], [4, 0, 0]), (np.array([True, False, True, False, False]), [0, 2])]:
        got = es[index].trains
        assert got.n_samples == len(want)
        for k, s in enumerate(want):
            assert got.sample(k).equals(st.sample(s))
    with pytest.raises(ValueError, match="input_shape"):
        EventSamples(st, (3, 3))
