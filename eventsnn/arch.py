"""Architecture strings: ``784-800`` and the paper's notation.

Grammar (tokens separated by ``-``; the output layer, one neuron per class, is
implicit and never written):

* ``N`` (an integer): the input size when it is the first token, else a dense
  layer of N neurons;
* ``cCk`` / ``cCkpP``: a convolution with c channels, k x k filters, padding P;
* ``Pk``: a k x k pooling layer;
* ``RcCk``: a SEW residual block (ADD) of two c-channel k x k convolutions with
  "same" padding; the shortcut is the identity when the input has c channels,
  else a 1x1 spiking convolution (:class:`eventsnn.blocks.ResidualBlock`).

Convolutions have stride 1; pooling windows are non-overlapping (stride k);
the pooling rule (max, avg, adjusted-avg) is chosen for the whole network.

Presets (whole-string names): ``vgg11`` (the paper's CIFAR network,
``128C3p1-128C3p1-P2-256C3p1-256C3p1-256C3p1-P2-512C3p1-512C3p1-512C3p1-P2-2048-2048``).
``sew-resnet14`` (our reading of the official CIFAR SEW-ResNet: a 128-channel
stem, 3 stages of 2 residual blocks with 128/256/512 channels, 2x2 pooling
between stages: 1 + 12 + 1 weighted layers,
``128C3p1-R128C3-R128C3-P2-R256C3-R256C3-P2-R512C3-R512C3-P2``; the first block
of stages 2 and 3 has a 1x1 projection shortcut).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DENSE = re.compile(r"^(\d+)$")
_CONV = re.compile(r"^(\d+)C(\d+)(?:p(\d+))?$")
_POOL = re.compile(r"^P(\d+)$")
_RES = re.compile(r"^R(\d+)C(\d+)$")

#: Architecture presets (the paper's networks), expanded by :func:`parse_arch`.
PRESETS = {
    "vgg11": "128C3p1-128C3p1-P2-256C3p1-256C3p1-256C3p1-P2-512C3p1-512C3p1-512C3p1-P2-2048-2048",
    "sew-resnet14": "128C3p1-R128C3-R128C3-P2-R256C3-R256C3-P2-R512C3-R512C3-P2",
}


class ArchError(ValueError):
    """A malformed or unsupported architecture string."""


@dataclass(frozen=True)
class LayerSpec:
    """One parsed token: ``kind`` in {"dense", "conv", "pool", "residual"} and its sizes."""

    kind: str
    size: int = 0
    kernel: int = 0
    padding: int = 0


@dataclass(frozen=True)
class ArchSpec:
    """A parsed architecture: the input size (or None) and the hidden layers."""

    text: str
    n_inputs: int | None
    layers: tuple[LayerSpec, ...]


def parse_arch(text: str) -> ArchSpec:
    """Parse an architecture string.

    Parameters
    ----------
    text : str
        E.g. ``"784-800"`` (input 784, dense 800) or ``"15C5-P2-40C5-P2-300"``.

    Returns
    -------
    ArchSpec

    Raises
    ------
    ArchError
        Quoting the first bad token.
    """
    if not isinstance(text, str) or not text.strip():
        raise ArchError(f"architecture must be a non-empty string like '784-800', got {text!r}")
    name = text.strip().lower()
    if name in PRESETS:
        text = PRESETS[name]
    tokens = [t.strip() for t in text.strip().split("-")]
    n_inputs = None
    layers = []
    for pos, tok in enumerate(tokens):
        if m := _DENSE.match(tok):
            n = int(m.group(1))
            if n < 1:
                raise ArchError(f"bad token '{tok}' in architecture '{text}': sizes must be >= 1")
            if pos == 0:
                n_inputs = n
            else:
                layers.append(LayerSpec("dense", n))
        elif m := _CONV.match(tok):
            c, k = int(m.group(1)), int(m.group(2))
            p = int(m.group(3) or 0)
            if c < 1 or k < 1:
                raise ArchError(f"bad token '{tok}' in architecture '{text}': channels and kernel must be >= 1")
            layers.append(LayerSpec("conv", c, k, p))
        elif m := _POOL.match(tok):
            k = int(m.group(1))
            if k < 1:
                raise ArchError(f"bad token '{tok}' in architecture '{text}': pool size must be >= 1")
            layers.append(LayerSpec("pool", 0, k))
        elif m := _RES.match(tok):
            c, k = int(m.group(1)), int(m.group(2))
            if c < 1 or k < 1 or k % 2 == 0:
                raise ArchError(f"bad token '{tok}' in architecture '{text}': a residual block needs "
                                "channels >= 1 and an odd kernel size")
            layers.append(LayerSpec("residual", c, k, (k - 1) // 2))
        else:
            raise ArchError(
                f"bad token '{tok}' in architecture '{text}' "
                "(expected N for a dense layer, cCk[pP] for a convolution, Pk for pooling, "
                "RcCk for a residual block)"
            )
    return ArchSpec(text.strip(), n_inputs, tuple(layers))
