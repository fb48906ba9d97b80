"""AdamW, cosine schedule and gradient-norm clipping against straightforward
re-implementations of torch.optim.AdamW / CosineAnnealingLR / clip_grad_norm_
written here from their documented formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from eventsnn.optim import AdamW, clip_grad_norm, cosine_lr


class TorchAdamW:
    """torch.optim.AdamW (amsgrad=False, maximize=False), per its documentation:

    theta <- theta - lr*wd*theta
    m <- b1 m + (1 - b1) g ; v <- b2 v + (1 - b2) g^2
    m_hat = m / (1 - b1^t) ; v_hat = v / (1 - b2^t)
    theta <- theta - lr m_hat / (sqrt(v_hat) + eps)
    """

    def __init__(self, params, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
        self.params = [p.copy() for p in params]
        self.lr, self.wd, self.betas, self.eps = lr, weight_decay, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        for k, g in enumerate(grads):
            p = self.params[k] * (1.0 - self.lr * self.wd)
            self.m[k] = b1 * self.m[k] + (1.0 - b1) * g
            self.v[k] = b2 * self.v[k] + (1.0 - b2) * g * g
            m_hat = self.m[k] / (1.0 - b1 ** self.t)
            v_hat = self.v[k] / (1.0 - b2 ** self.t)
            self.params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def make_params(rng):
    return [rng.normal(size=(4, 3)), rng.normal(size=5), rng.normal(size=(2, 2, 2))]


@pytest.mark.parametrize("lr,wd,betas,eps", [(5e-4, 5e-4, (0.9, 0.999), 1e-8),
                                             (0.1, 0.05, (0.8, 0.99), 1e-6),
                                             (0.01, 0.0, (0.5, 0.9), 1e-3)])
def test_adamw_matches_reference_over_steps(lr, wd, betas, eps):
    rng = np.random.default_rng(0)
    params = make_params(rng)
    ref = TorchAdamW(params, lr, wd, betas, eps)
    opt = AdamW(params, lr=lr, weight_decay=wd, betas=betas, eps=eps)
    live = [p for p in params]
    for step in range(8):
        grads = [rng.normal(size=p.shape) * 10.0 ** rng.uniform(-3, 1) for p in params]
        if step == 3:
            grads[1][:] = 0.0  # zero gradient: only decay and momentum move it
        opt.step(grads)
        ref.step(grads)
        for p, q in zip(params, ref.params):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)
    assert all(a is b for a, b in zip(params, live))  # updated in place
    assert opt.t == 8


def test_adamw_first_step_is_sign_step():
    # with m_hat = g and v_hat = g^2 the first step moves every entry by lr * g/(|g| + eps)
    p = np.array([1.0, -2.0, 3.0])
    g = np.array([0.5, -4.0, 1e-3])
    opt = AdamW([p], lr=0.1, weight_decay=0.0, eps=1e-8)
    opt.step([g])
    want = np.array([1.0, -2.0, 3.0]) - 0.1 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(p, want, rtol=1e-12)


def test_adamw_lr_change_between_steps():
    # the schedule sets opt.lr between epochs; the next step must use it (decay too)
    rng = np.random.default_rng(1)
    params = make_params(rng)
    ref = TorchAdamW(params, 0.01, 0.1)
    opt = AdamW(params, lr=0.01, weight_decay=0.1)
    for lr in (0.01, 0.005, 0.001, 0.0):
        opt.lr = lr
        ref.lr = lr
        grads = [rng.normal(size=p.shape) for p in params]
        before = [p.copy() for p in params]
        opt.step(grads)
        ref.step(grads)
        for p, q in zip(params, ref.params):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(params[0], before[0])  # lr 0: nothing moves


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    params = make_params(rng)
    opt = AdamW(params, lr=0.02, weight_decay=0.01)
    grads = [[rng.normal(size=p.shape) for p in params] for _ in range(6)]
    for g in grads[:3]:
        opt.step(g)
    state = opt.state()
    copies = [p.copy() for p in params]
    # the state is a snapshot: later steps do not change it
    snap = {"t": state["t"], "m": [a.copy() for a in state["m"]], "v": [a.copy() for a in state["v"]]}
    for g in grads[3:]:
        opt.step(g)
    assert state["t"] == snap["t"] == 3
    for a, b in zip(state["m"] + state["v"], snap["m"] + snap["v"]):
        np.testing.assert_array_equal(a, b)
    opt2 = AdamW(copies, lr=0.02, weight_decay=0.01)
    opt2.load_state(state)
    for g in grads[3:]:
        opt2.step(g)
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(p, q)  # bit-identical
    assert opt2.t == opt.t == 6


def test_load_state_rejects_mismatch():
    rng = np.random.default_rng(3)
    opt = AdamW(make_params(rng))
    state = opt.state()
    other = AdamW([np.zeros(3)])
    with pytest.raises(ValueError):
        other.load_state(state)
    bad = {"t": 1, "m": [np.zeros((3, 4)), np.zeros(5), np.zeros((2, 2, 2))],
           "v": [np.zeros((4, 3)), np.zeros(5), np.zeros((2, 2, 2))]}
    with pytest.raises(ValueError):
        opt.load_state(bad)


def test_cosine_lr_values():
    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1, rel=1e-15)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05, rel=1e-14)
    assert cosine_lr(0.1, 10, 10) == pytest.approx(0.0, abs=1e-17)
    assert cosine_lr(1.0, 1, 4) == pytest.approx((1 + math.sqrt(0.5)) / 2, rel=1e-14)
    assert cosine_lr(1.0, 3, 4) == pytest.approx((1 - math.sqrt(0.5)) / 2, rel=1e-13)
    assert cosine_lr(2.0, 1, 3) == pytest.approx(2.0 * 0.75, rel=1e-14)  # cos(pi/3) = 1/2
    assert cosine_lr(5e-4, 0, 1) == 5e-4
    # CosineAnnealingLR(T_max=E, eta_min=0): strictly decreasing over the run
    lrs = [cosine_lr(1.0, e, 7) for e in range(8)]
    assert all(a > b for a, b in itertools.pairwise(lrs))


def test_clip_grad_norm():
    g1 = np.array([3.0, 0.0])
    g2 = np.array([[0.0], [4.0]])
    norm = clip_grad_norm([g1, g2], 1.0)
    assert norm == pytest.approx(5.0, rel=1e-15)
    # torch: scale = max_norm / (norm + 1e-6)
    np.testing.assert_allclose(g1, [3.0 / (5.0 + 1e-6), 0.0], rtol=1e-14)
    np.testing.assert_allclose(g2[:, 0], [0.0, 4.0 / (5.0 + 1e-6)], rtol=1e-14)
    assert math.sqrt(np.sum(g1 ** 2) + np.sum(g2 ** 2)) == pytest.approx(1.0, abs=1e-6)
    # below the limit: untouched
    g = [np.array([0.3, -0.4])]
    assert clip_grad_norm(g, 1.0) == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_array_equal(g[0], [0.3, -0.4])
    # max_norm 0: no clipping (the CLI's "0: off")
    g = [np.array([30.0, -40.0])]
    assert clip_grad_norm(g, 0.0) == pytest.approx(50.0, rel=1e-15)
    np.testing.assert_array_equal(g[0], [30.0, -40.0])
    # random: the norm is the global L2 norm over all arrays
    rng = np.random.default_rng(4)
    gs = [rng.normal(size=(5, 6)), rng.normal(size=7)]
    want = math.sqrt(sum(float((x ** 2).sum()) for x in gs))
    before = [x.copy() for x in gs]
    assert clip_grad_norm(gs, 0.5) == pytest.approx(want, rel=1e-14)
    for x, b in zip(gs, before):
        np.testing.assert_allclose(x, b * 0.5 / (want + 1e-6), rtol=1e-14)
