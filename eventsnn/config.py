"""The one typed training configuration: built by the CLI (or in Python), stored whole in checkpoints.

Defaults reproduce the official MNIST configuration of the paper's code
(batch 50, lr 5e-4, weight decay 5e-4, T = 5, targets 5/1, tau 5/3/2.5,
gain initialisation to 0.5 spikes per neuron, gradient-norm clip 1, seed 3,
the official stabilisers: |dt/du| cap 4, input-gradient scale 0.85 per layer,
windows with a non-positive denominator dropped). ``time="discrete"`` trains
with the official discrete-time algorithm instead of exact continuous time (T
clock steps of dt = 1, :mod:`eventsnn.engine.discrete`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from . import augment as _augment
from .arch import parse_arch
from .engine.conv import POOL_KINDS
from .engine.discrete import Clock
from .loss import SUPERVISION
from .network import TIME_MODES
from .params import GradParams, NeuronParams

ENCODERS = ("current", "latency")


#: Fields a resumed run may change: the schedule's length and which checkpoints are kept
#: (neither changes a step already taken).
RESUME_MAY_CHANGE = ("epochs", "keep_epochs")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (see the CLI's ``train --help``).

    Validated in ``__post_init__``: a bad value raises ``ValueError`` naming the field.
    """

    dataset: str = "mnist"
    arch: str = "784-800"
    epochs: int = 100
    batch_size: int = 50
    lr: float = 5e-4
    weight_decay: float = 5e-4
    grad_clip: float = 1.0
    seed: int = 3
    steps: int = 5
    encoder: str = "current"
    tau_m: float = 5.0
    tau_s: float = 3.0
    threshold: float = 1.0
    grad_kernel: str = "exp"
    tau_grad: float = 2.5
    desired: float = 5.0
    undesired: float = 1.0
    supervision: str = "auto"
    weight_norm: bool = True
    pool: str = "adjusted-avg"
    avg_spike_init: float = 0.5
    max_dt_du: float | None = 4.0
    input_grad_scale: float = 0.85
    drop_nonpositive: bool = True
    limit_train: int | None = None
    limit_test: int | None = None
    validation: int = 0
    keep_epochs: bool = False
    augment: str = "auto"
    elastic_alpha: float = _augment.ELASTIC_DEFAULT[0]
    elastic_sigma: float = _augment.ELASTIC_DEFAULT[1]
    dropout: float = 0.0
    revive: bool = False
    grad_pieces: int = 1
    time: str = "continuous"
    init_from: str | None = None
    init_from_sha256: str | None = None

    def __post_init__(self):
        if self.augment == "auto":  # resolved here, so that checkpoints store the concrete kind
            object.__setattr__(self, "augment", _augment.OFFICIAL.get(self.dataset, "none"))
        if self.augment not in _augment.KINDS:
            raise ValueError(f"augment must be one of {('auto',) + _augment.KINDS}, got {self.augment!r}")
        parse_arch(self.arch)
        NeuronParams(self.tau_m, self.tau_s, self.threshold)
        self.grad_params()
        for name in ("epochs", "batch_size", "steps", "grad_pieces"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "avg_spike_init"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not float(self.elastic_sigma) > 0:
            raise ValueError(f"elastic_sigma must be > 0, got {self.elastic_sigma}")
        for name in ("weight_decay", "grad_clip", "desired", "undesired", "elastic_alpha"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.validation) < 0:
            raise ValueError(f"validation must be >= 0, got {self.validation}")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.pool not in POOL_KINDS:
            raise ValueError(f"pool must be one of {POOL_KINDS}, got {self.pool!r}")
        if self.supervision == "auto":  # the paper's placement in continuous time, the official code's on the clock
            object.__setattr__(self, "supervision", "last-rise" if self.time == "discrete" else "end")
        if self.supervision not in SUPERVISION:
            raise ValueError(f"supervision must be one of {SUPERVISION}, got {self.supervision!r}")
        if self.time not in TIME_MODES:
            raise ValueError(f"time must be one of {TIME_MODES}, got {self.time!r}")
        if (self.init_from is None) != (self.init_from_sha256 is None):
            raise ValueError("init_from and init_from_sha256 go together (the source checkpoint and its "
                             "sha256; see eventsnn.checkpoint.init_from_checkpoint)")
        if self.time == "discrete":  # the official clock: T steps of dt = 1 over (0, T]
            clock = Clock(self.steps, self.t_end)
            for name in ("tau_m", "tau_s") + (("tau_grad",) if self.grad_kernel == "exp" else ()):
                clock.decay(getattr(self, name), name)

    @property
    def t_end(self) -> float:
        """End of the simulation window: T."""
        return float(self.steps)

    def neuron_params(self) -> NeuronParams:
        return NeuronParams(self.tau_m, self.tau_s, self.threshold)

    def grad_params(self) -> GradParams:
        return GradParams(kernel=self.grad_kernel, tau_grad=self.tau_grad, max_dt_du=self.max_dt_du,
                          input_grad_scale=self.input_grad_scale, drop_nonpositive=self.drop_nonpositive)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = json.loads(text)
        data.setdefault("pool", "adjusted-avg")  # checkpoints written before pooling existed
        data.setdefault("augment", "none")  # ... and before augmentation existed
        data.setdefault("dropout", 0.0)
        data.setdefault("revive", False)  # ... and before silent-neuron recycling
        data.setdefault("grad_pieces", 1)
        data.setdefault("time", "continuous")  # ... and before the discrete-time mode
        data.setdefault("validation", 0)  # ... and before validation hold-out
        data.setdefault("init_from", None)  # ... and before fine-tuning from a checkpoint
        data.setdefault("init_from_sha256", None)
        data.setdefault("keep_epochs", False)  # ... and before per-epoch checkpoints
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown configuration fields: {sorted(unknown)}")
        return cls(**data)
