"""Training checkpoints in HDF5, written atomically.

Layout of ``checkpoint.h5`` (format ``eventsnn.checkpoint/1``):

* attributes: ``format``, ``eventsnn_version``, ``config`` (TrainConfig JSON),
  ``epoch`` (number of completed epochs), ``history`` (per-epoch metrics JSON),
  ``dataset_checksum``, ``rng_state`` (JSON of the data-order generator state),
  ``n_classes``, ``input_shape``;
* ``params/<name>``: every learnable array of the network (float64);
* ``optim/m/<i>``, ``optim/v/<i>`` and attribute ``optim/t``: AdamW state;
* optional attribute ``averaged_from``: JSON list of the sources (path, sha256,
  epoch) of a network averaged by :func:`average_checkpoints`.

Loading checks the format and that the stored arrays fit the architecture of
the stored configuration; anything else raises :class:`CheckpointError`.

:func:`init_from_checkpoint` starts a *new* run from a checkpoint's weights
(fine-tuning under another configuration: augmentation, learning rate,
schedule, dropout); the source is named in the new run's configuration
together with its sha256, so the run records exactly what it started from.
:func:`average_checkpoints` averages the weights of several checkpoints of
one network (a uniform "model soup").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py

from .config import TrainConfig
from .io import atomic_h5
from .network import Network

CHECKPOINT_FORMAT = "eventsnn.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the network."""


@dataclass(eq=False)
class Checkpoint:
    """A loaded checkpoint: the network with its weights and everything needed to resume."""

    config: TrainConfig
    network: Network
    epoch: int
    history: list
    optim_state: dict | None
    dataset_checksum: str
    rng_state: dict | None
    version: str
    averaged_from: list | None = None


def build_network(config: TrainConfig, n_classes: int, input_shape) -> Network:
    """The network a configuration describes (weights freshly initialised from ``config.seed``;
    time mode ``config.time``, in discrete time T = ``config.steps`` clock steps)."""
    net = Network.from_arch(config.arch, n_classes, tau_m=config.tau_m, tau_s=config.tau_s,
                            threshold=config.threshold, weight_norm=config.weight_norm,
                            input_shape=input_shape, seed=config.seed, t_end=config.t_end,
                            pool=config.pool, dropout=config.dropout)
    return net.set_time(config.time, config.steps if config.time == "discrete" else None)


def save_checkpoint(path, *, config: TrainConfig, network: Network, epoch: int, history: list,
                    optim_state: dict | None, dataset_checksum: str, rng_state: dict | None,
                    averaged_from: list | None = None) -> None:
    """Write a checkpoint atomically (a crash never leaves a truncated file).

    ``averaged_from`` (optional): the sources of an averaged network (:func:`average_checkpoints`).
    """
    from . import __version__

    with atomic_h5(path) as f:
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["eventsnn_version"] = __version__
        f.attrs["config"] = config.to_json()
        f.attrs["epoch"] = int(epoch)
        f.attrs["history"] = json.dumps(history)
        f.attrs["dataset_checksum"] = dataset_checksum
        f.attrs["rng_state"] = json.dumps(rng_state)
        f.attrs["n_classes"] = int(network.n_classes)
        f.attrs["input_shape"] = json.dumps(list(network.input_shape))
        if averaged_from is not None:
            f.attrs["averaged_from"] = json.dumps(averaged_from)
        g = f.create_group("params")
        for name, arr in network.parameters():
            g.create_dataset(name, data=arr)
        if optim_state is not None:
            o = f.create_group("optim")
            o.attrs["t"] = int(optim_state["t"])
            for key in ("m", "v"):
                sub = o.create_group(key)
                for i, arr in enumerate(optim_state[key]):
                    sub.create_dataset(str(i), data=arr)


def checkpoint_path(path) -> Path:
    """The checkpoint file meant by ``path`` (a file, or a run directory holding ``checkpoint.h5``).

    Raises
    ------
    CheckpointError
        If there is no such file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.h5"
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    return path


def checkpoint_sha256(path) -> str:
    """sha256 (hex) of the checkpoint file meant by ``path`` (see :func:`checkpoint_path`)."""
    from .datasets.store import sha256_file

    return sha256_file(checkpoint_path(path))


def init_from_checkpoint(net: Network, path, sha256: str | None = None) -> Checkpoint:
    """Copy the learnable arrays of a checkpoint into ``net`` (the start of a fine-tuning run).

    The weighted layers of the two networks are matched in order, so layers
    without parameters (pooling, dropout) may differ: a network with dropout
    takes the weights of the same network trained without. Everything else
    about ``net`` (neuron constants, pooling rule, time mode) stays as built.

    Parameters
    ----------
    net : Network
        Receives the weights, in place.
    path : path
        Checkpoint file or run directory.
    sha256 : str, optional
        Expected sha256 of the file (a run records it in ``TrainConfig.init_from_sha256``);
        a file that changed since is refused.

    Returns
    -------
    Checkpoint
        The source checkpoint (its configuration, epoch and history).

    Raises
    ------
    CheckpointError
        If the file is missing, corrupt, not the expected one, or its weighted
        layers do not fit those of ``net`` (count, names or shapes).
    """
    path = checkpoint_path(path)
    if sha256 is not None and checkpoint_sha256(path) != sha256:
        raise CheckpointError(f"{path}: not the checkpoint this run started from (sha256 differs from "
                              f"{sha256[:12]}...)")
    src = load_checkpoint(path)
    pairs = _matched_layers(net, src.network, f"{path}: '{src.config.arch}'")
    for a, b in pairs:
        for k in a:
            a[k][...] = b[k]
    return src


def _weighted_layers(net: Network) -> list:
    """The parameter dicts of the layers of ``net`` that have parameters, in order."""
    return [layer.parameters() for layer in net.layers if layer.parameters()]


def _matched_layers(net: Network, other: Network, what: str) -> list:
    """(parameters of ``net``, parameters of ``other``) per weighted layer, matched in order.

    Raises :class:`CheckpointError` starting with ``what`` (the other network, as the user
    knows it) if the count, the names or a shape differ.
    """
    mine, theirs = _weighted_layers(net), _weighted_layers(other)
    if len(mine) != len(theirs):
        raise CheckpointError(f"{what} has {len(theirs)} weighted layers, '{net.arch}' has {len(mine)}")
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if list(a) != list(b) or any(a[k].shape != b[k].shape for k in a):
            raise CheckpointError(
                f"{what}: weighted layer {i} does not fit: "
                + ", ".join(f"{k} {v.shape}" for k, v in b.items()) + " there, "
                + ", ".join(f"{k} {v.shape}" for k, v in a.items()) + f" in '{net.arch}'")
    return list(zip(mine, theirs))


#: Configuration fields that define the network a checkpoint computes (not how it was
#: trained): checkpoints averaged by :func:`average_checkpoints` must agree on them.
MODEL_FIELDS = ("dataset", "arch", "steps", "time", "encoder", "tau_m", "tau_s", "threshold",
                "weight_norm", "pool")


def average_checkpoints(paths) -> Checkpoint:
    """The uniform average of the weights of several checkpoints (a "model soup").

    Every learnable array (weights, and gains and offsets with weight
    standardisation) is the mean over the checkpoints, summed first to last and
    divided by their number. Averaging is meaningful for runs that share a
    starting point, e.g. several fine-tuning runs (``--init-from``) of one
    network (Wortsman et al., 2022, *Model soups*).

    Parameters
    ----------
    paths : sequence of path
        Two or more checkpoint files or run directories. They must agree on
        :data:`MODEL_FIELDS` and their weighted layers must fit; training options
        (augmentation, learning rate, dropout, ...) may differ.

    Returns
    -------
    Checkpoint
        Configuration, dataset checksum and class count of the first checkpoint;
        ``epoch`` 0, empty history, no optimiser state; ``averaged_from`` lists
        each source (path, sha256, epoch).

    Raises
    ------
    CheckpointError
        Fewer than two checkpoints; a missing or corrupt one; checkpoints that
        disagree on a model field or whose layers do not fit.
    """
    paths = [checkpoint_path(p) for p in paths]
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    cks = [load_checkpoint(p) for p in paths]
    first = cks[0]
    for p, ck in zip(paths[1:], cks[1:]):
        for name in MODEL_FIELDS:
            a, b = getattr(first.config, name), getattr(ck.config, name)
            if a != b:
                raise CheckpointError(f"{p}: {name} is {b!r}, {paths[0]} has {a!r} (averaged checkpoints "
                                      f"must compute the same network)")
        if ck.network.n_classes != first.network.n_classes:
            raise CheckpointError(f"{p}: {ck.network.n_classes} classes, {paths[0]} has {first.network.n_classes}")
    net = first.network
    for p, ck in zip(paths[1:], cks[1:]):
        for a, b in _matched_layers(net, ck.network, f"{p}: '{ck.config.arch}'"):
            for k in a:
                a[k] += b[k]
    for params in _weighted_layers(net):
        for v in params.values():
            v /= len(cks)
    sources = [{"path": str(p), "sha256": checkpoint_sha256(p), "epoch": ck.epoch} for p, ck in zip(paths, cks)]
    return Checkpoint(config=first.config, network=net, epoch=0, history=[], optim_state=None,
                      dataset_checksum=first.dataset_checksum, rng_state=None, version=first.version,
                      averaged_from=sources)


def load_checkpoint(path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, of another format, or its arrays do
        not match the architecture in its configuration.
    """
    path = checkpoint_path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 checkpoint ({exc})") from None
    with f:
        if f.attrs.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not an eventsnn checkpoint (format {f.attrs.get('format')!r})")
        try:
            config = TrainConfig.from_json(f.attrs["config"])
            n_classes = int(f.attrs["n_classes"])
            input_shape = tuple(json.loads(f.attrs["input_shape"]))
            net = build_network(config, n_classes, input_shape)
            stored = f["params"]
            for name, arr in net.parameters():
                if name not in stored:
                    raise CheckpointError(f"{path}: parameter {name} missing")
                data = stored[name][()]
                if data.shape != arr.shape:
                    raise CheckpointError(
                        f"{path}: parameter {name} has shape {data.shape}, architecture "
                        f"'{config.arch}' needs {arr.shape}"
                    )
                arr[...] = data
            extra = set(stored) - {n for n, _ in net.parameters()}
            if extra:
                raise CheckpointError(f"{path}: parameters {sorted(extra)} do not belong to '{config.arch}'")
            optim_state = None
            if "optim" in f:
                o = f["optim"]
                n = len(net.parameters())
                optim_state = {"t": int(o.attrs["t"]),
                               "m": [o["m"][str(i)][()] for i in range(n)],
                               "v": [o["v"][str(i)][()] for i in range(n)]}
            return Checkpoint(
                config=config, network=net, epoch=int(f.attrs["epoch"]),
                history=json.loads(f.attrs["history"]), optim_state=optim_state,
                dataset_checksum=str(f.attrs["dataset_checksum"]),
                rng_state=json.loads(f.attrs["rng_state"]),
                version=str(f.attrs["eventsnn_version"]),
                averaged_from=json.loads(f.attrs["averaged_from"]) if "averaged_from" in f.attrs else None,
            )
        except CheckpointError:
            raise
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise CheckpointError(f"{path}: corrupt checkpoint ({exc})") from None
