"""AdamW with a cosine learning-rate schedule and global gradient-norm clipping.

The update is PyTorch's ``torch.optim.AdamW`` (decoupled weight decay)::

    p <- p (1 - lr wd)
    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

The schedule is cosine annealing per epoch, lr_e = lr (1 + cos(pi e / E)) / 2
(``CosineAnnealingLR`` with T_max = E, eta_min = 0). Clipping rescales all
gradients together when their global L2 norm exceeds ``max_norm``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _adamw_update(p, g, m, v, lr, wd, b1, b2, c1, c2, eps):
    """One fused AdamW update of a flat array (all arguments 1-D views)."""
    for k in prange(p.size):
        gk = g[k]
        mk = b1 * m[k] + (1.0 - b1) * gk
        vk = b2 * v[k] + (1.0 - b2) * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] = p[k] * (1.0 - lr * wd) - lr * (mk / c1) / (math.sqrt(vk / c2) + eps)


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based) of ``epochs`` under cosine annealing."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def clip_grad_norm(grads: list, max_norm: float) -> float:
    """Rescale ``grads`` in place so that their global L2 norm is at most ``max_norm``.

    Returns
    -------
    float
        The norm before clipping.
    """
    norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= scale
    return norm


class AdamW:
    """AdamW over a list of numpy arrays updated in place.

    Parameters
    ----------
    params : list of ndarray
        Arrays updated in place by :meth:`step`.
    lr, weight_decay : float
    betas : (float, float)
    eps : float
    """

    def __init__(self, params: list, *, lr: float = 5e-4, weight_decay: float = 5e-4,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list) -> None:
        """Apply one update with gradients aligned with ``params``."""
        self.t += 1
        b1, b2 = self.betas
        c1 = 1.0 - b1 ** self.t
        c2 = 1.0 - b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if not (p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
                raise ValueError("AdamW needs C-contiguous parameter arrays")
            _adamw_update(p.reshape(-1), np.ascontiguousarray(g, dtype=np.float64).reshape(-1),
                          m.reshape(-1), v.reshape(-1), self.lr, self.weight_decay,
                          b1, b2, c1, c2, self.eps)

    def state(self) -> dict:
        """Arrays and scalars that restore this optimiser exactly."""
        return {"t": self.t, "m": [a.copy() for a in self.m], "v": [a.copy() for a in self.v]}

    def load_state(self, state: dict) -> None:
        """Restore from :meth:`state` (shapes must match)."""
        if len(state["m"]) != len(self.params):
            raise ValueError("optimiser state does not match the parameters")
        for dst, src in zip(self.m + self.v, list(state["m"]) + list(state["v"])):
            if dst.shape != np.shape(src):
                raise ValueError("optimiser state does not match the parameter shapes")
            dst[...] = src
        self.t = int(state["t"])
