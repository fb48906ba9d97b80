"""Datasets of eventsnn: download, verify, cache and load.

Every dataset is cached under the data directory (:func:`resolve_data_dir`:
the ``data_dir`` argument / CLI ``--data-dir``, else ``$EVENTSNN_DATA``, else
``./data``), in a subfolder named after it. Files are verified against pinned
checksums whenever they are read; a corrupt, truncated or foreign file raises
:class:`DatasetError` (a :class:`ValueError`) naming it, and is never used.
Loaders return raw intensities in [0, 1]; normalisation is the trainer's job.

Examples
--------
>>> from eventsnn.datasets import load_dataset, dataset_checksum
>>> images, labels = load_dataset("mnist", "train")  # doctest: +SKIP
>>> dataset_checksum("mnist")  # doctest: +SKIP
'...'
"""

from __future__ import annotations

import os

import numpy as np

from . import cifar, fashion_mnist, mnist, nmnist
from .cifar import load_cifar10, load_cifar100
from .fashion_mnist import load_fashion_mnist
from .mnist import load_mnist
from .nmnist import load_nmnist, open_nmnist, read_nmnist_bin
from .store import DatasetError, DatasetInfo, DownloadError, resolve_data_dir

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "DownloadError",
    "dataset_checksum",
    "dataset_info",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_nmnist",
    "open_nmnist",
    "read_nmnist_bin",
    "resolve_data_dir",
]

#: Registry of the known datasets, by name.
DATASETS: dict[str, DatasetInfo] = {
    mnist.INFO.name: mnist.INFO,
    fashion_mnist.INFO.name: fashion_mnist.INFO,
    cifar.INFO_CIFAR10.name: cifar.INFO_CIFAR10,
    cifar.INFO_CIFAR100.name: cifar.INFO_CIFAR100,
    nmnist.INFO.name: nmnist.INFO,  # load() returns (SpikeTrains, labels), not images
}


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        known = ", ".join(DATASETS)  # registry order
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}") from None


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a registered dataset.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` (e.g. ``"mnist"``).
    split : str, optional
        One of the dataset's splits (``"train"``, ``"test"``).
    data_dir : str or path-like, optional
        See :func:`resolve_data_dir`.
    download : bool, optional
        Fetch missing files; if False, a missing file raises :class:`DatasetError`.

    Returns
    -------
    images : ndarray of float32
        Intensities in [0, 1], first axis the sample.
    labels : ndarray of int64, shape (N,)

    Raises
    ------
    ValueError
        If `name` is not registered (the message lists the known names) or
        `split` is unknown.
    DatasetError
        See the dataset's loader.
    """
    return _info(name).load(split, data_dir, download=download)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a dataset (classes, input shape, splits); ValueError if unknown."""
    return _info(name)


def dataset_checksum(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """Return a sha256 identifying a dataset's cached files, for checkpoints.

    The cached files are verified against their pinned checksums on the way,
    so the value is the same on every machine that holds a valid cache.
    Nothing is downloaded: load the dataset first.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    data_dir : str or path-like, optional
        See :func:`resolve_data_dir`.

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    ValueError
        If `name` is not registered.
    DatasetError
        If a cached file is missing or corrupt.
    """
    return _info(name).checksum(data_dir)
