"""Training checkpoints in HDF5, written atomically.

Layout of ``checkpoint.h5`` (format ``eventsnn.checkpoint/1``):

* attributes: ``format``, ``eventsnn_version``, ``config`` (TrainConfig JSON),
  ``epoch`` (number of completed epochs), ``history`` (per-epoch metrics JSON),
  ``dataset_checksum``, ``rng_state`` (JSON of the data-order generator state),
  ``n_classes``, ``input_shape``;
* ``params/<name>``: every learnable array of the network (float64);
* ``optim/m/<i>``, ``optim/v/<i>`` and attribute ``optim/t``: AdamW state.

Loading checks the format and that the stored arrays fit the architecture of
the stored configuration; anything else raises :class:`CheckpointError`.
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


def build_network(config: TrainConfig, n_classes: int, input_shape) -> Network:
    """The network a configuration describes (weights freshly initialised from ``config.seed``;
    time mode ``config.time``, in discrete time T = ``config.steps`` clock steps)."""
    net = Network.from_arch(config.arch, n_classes, tau_m=config.tau_m, tau_s=config.tau_s,
                            threshold=config.threshold, weight_norm=config.weight_norm,
                            input_shape=input_shape, seed=config.seed, t_end=config.t_end,
                            pool=config.pool, dropout=config.dropout)
    return net.set_time(config.time, config.steps if config.time == "discrete" else None)


def save_checkpoint(path, *, config: TrainConfig, network: Network, epoch: int, history: list,
                    optim_state: dict | None, dataset_checksum: str, rng_state: dict | None) -> None:
    """Write a checkpoint atomically (a crash never leaves a truncated file)."""
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


def load_checkpoint(path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, of another format, or its arrays do
        not match the architecture in its configuration.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.h5"
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
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
            )
        except CheckpointError:
            raise
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise CheckpointError(f"{path}: corrupt checkpoint ({exc})") from None
