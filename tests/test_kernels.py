"""Kernels eps, deps and h against their formulas, finite differences and
high-precision decimal arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

import eventsnn
from eventsnn import deps, eps, h

TAU_PAIRS = [(5.0, 3.0), (3.0, 5.0), (10.0, 2.0), (1.0, 7.5), (5.0, 4.5)]
#: Close time constants (the kernel is a 0/0 form as tau_s -> tau_m).
CLOSE_TAU_PAIRS = [(5.0, 4.999999), (5.0, 5.000001), (1.0, 1.0 + 2.0**-30)]


def _grid(rng):
    return np.concatenate([
        [0.0, 1e-300, 1e-12, 1e-6, 1e-3],
        rng.uniform(0.0, 40.0, 200),
        [60.0, 100.0, 300.0],
    ])


@pytest.mark.parametrize("tau_m,tau_s", TAU_PAIRS)
def test_eps_matches_formula(ref, tau_m, tau_s):
    s = _grid(np.random.default_rng(1))
    got = eps(s, tau_m, tau_s)
    want = ref.eps(s, tau_m, tau_s)
    assert got.dtype == np.float64 and got.shape == s.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
    # the literal formula where it does not cancel (s not tiny)
    mid = (s > 1e-2) & (s < 50.0)
    np.testing.assert_allclose(got[mid], ref.naive_eps(s[mid], tau_m, tau_s), rtol=1e-12)


@pytest.mark.parametrize("tau_m,tau_s", TAU_PAIRS)
def test_deps_matches_formula(ref, tau_m, tau_s):
    s = _grid(np.random.default_rng(2))
    got = deps(s, tau_m, tau_s)
    want = ref.naive_deps(s, tau_m, tau_s)
    # deps changes sign at the peak of eps: compare on the scale of deps(0) = 1/tau_s
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15 / tau_s)
    np.testing.assert_allclose(got, ref.deps(s, tau_m, tau_s), rtol=1e-13, atol=1e-15 / tau_s)


@pytest.mark.parametrize("tau_m,tau_s", TAU_PAIRS)
def test_kernel_special_values(tau_m, tau_s):
    neg = np.array([-1e-300, -1e-9, -1.0, -1e6])
    assert np.all(eps(neg, tau_m, tau_s) == 0.0)
    assert np.all(deps(neg, tau_m, tau_s) == 0.0)
    assert eps([0.0], tau_m, tau_s)[0] == 0.0
    # right derivative at 0: A (1/tau_s - 1/tau_m) = 1/tau_s
    assert deps([0.0], tau_m, tau_s)[0] == pytest.approx(1.0 / tau_s, rel=1e-14)
    # positive everywhere after 0, maximum where deps vanishes
    s = np.linspace(1e-6, 60.0, 2001)
    assert np.all(eps(s, tau_m, tau_s) > 0.0)
    s_star = np.log(tau_m / tau_s) * tau_m * tau_s / (tau_m - tau_s)
    assert abs(deps([s_star], tau_m, tau_s)[0]) < 1e-15
    assert eps([s_star], tau_m, tau_s)[0] >= eps(s, tau_m, tau_s).max()


@pytest.mark.parametrize("tau_m,tau_s", TAU_PAIRS)
def test_kernels_at_long_times(ref, tau_m, tau_s):
    """Events thousands of units old (long simulations): tiny or zero, never NaN/inf.

    With tau_m < tau_s the factor exp(-s/tau_m) underflows while
    exp(s (1/tau_m - 1/tau_s)) overflows: a naive product gives 0 * inf = NaN.
    """
    big = np.array([500.0, 1e3, 3e3, 1e4, 1e5, 1e8, 1e300])
    for f, r in ((eps, ref.eps), (deps, ref.deps)):
        got = f(big, tau_m, tau_s)
        assert np.all(np.isfinite(got)), f"{f.__name__}({big}) = {got}"
        np.testing.assert_allclose(got, r(big, tau_m, tau_s), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("tau_m,tau_s", TAU_PAIRS + [(5.0, 4.999999)])
def test_deps_is_derivative_of_eps(tau_m, tau_s):
    """Central finite differences of the library's own eps agree with deps."""
    rng = np.random.default_rng(3)
    s = np.concatenate([rng.uniform(1e-3, 30.0, 100), [0.01, 0.5, 3.0, 10.0]])
    dx = 1e-5
    fd = (eps(s + dx, tau_m, tau_s) - eps(s - dx, tau_m, tau_s)) / (2 * dx)
    np.testing.assert_allclose(deps(s, tau_m, tau_s), fd, rtol=0, atol=1e-9)


def test_kernel_shapes_preserved():
    s = np.random.default_rng(4).uniform(-2, 10, (3, 4, 5))
    for f in (eps, deps):
        out = f(s, 5.0, 3.0)
        assert out.shape == s.shape
        np.testing.assert_array_equal(out.reshape(-1), f(s.reshape(-1), 5.0, 3.0))
    assert h(s, "exp").shape == s.shape
    # Fortran-ordered and non-contiguous inputs give the same values
    np.testing.assert_array_equal(eps(np.asfortranarray(s)), eps(s))
    np.testing.assert_array_equal(eps(s[:, ::2, :]), eps(np.ascontiguousarray(s[:, ::2, :])))


@pytest.mark.parametrize("tau_m,tau_s", CLOSE_TAU_PAIRS)
def test_close_time_constants_eps_accurate(ref, tau_m, tau_s):
    """Near tau_m = tau_s the formula is 0/0; eps must keep (near) full relative precision."""
    s = np.array([1e-9, 1e-4, 0.01, 0.3, 1.0, 2.5, 5.0, 12.0, 40.0])
    want = np.array([ref.decimal_eps(x, tau_m, tau_s) for x in s])
    got = eps(s, tau_m, tau_s)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the test's own stable form agrees with the decimal reference
    np.testing.assert_allclose(ref.eps(s, tau_m, tau_s), want, rtol=1e-14)


@pytest.mark.parametrize("tau_m,tau_s", CLOSE_TAU_PAIRS)
def test_close_time_constants_deps_accurate(ref, tau_m, tau_s):
    """deps near tau_m = tau_s, compared on its natural scale deps(0) = 1/tau_s."""
    s = np.array([1e-9, 1e-4, 0.01, 0.3, 1.0, 2.5, 5.0, 12.0, 40.0])
    want = np.array([ref.decimal_deps(x, tau_m, tau_s) for x in s])
    got = deps(s, tau_m, tau_s)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 / tau_s)
    np.testing.assert_allclose(ref.deps(s, tau_m, tau_s), want, rtol=0, atol=1e-15 / tau_s)


@pytest.mark.parametrize("tau_grad", [0.5, 2.5, 11.0])
def test_h_exp(tau_grad):
    rng = np.random.default_rng(5)
    s = np.concatenate([[0.0, 1e-9], rng.uniform(0, 30, 100)])
    np.testing.assert_allclose(h(s, "exp", tau_grad=tau_grad), np.exp(-s / tau_grad), rtol=1e-15)
    assert np.all(h(-s[1:], "exp", tau_grad=tau_grad) == 0.0)
    # default kernel is "exp" with tau_grad = 2.5 (same code path: bit-equal; numpy's own exp may
    # differ from numba's in the last bit, which the rtol check above allows)
    np.testing.assert_array_equal(h(s), h(s, "exp", tau_grad=2.5))
    np.testing.assert_allclose(h(s), np.exp(-s / 2.5), rtol=1e-15)


@pytest.mark.parametrize("tau_m,tau_s", TAU_PAIRS)
def test_h_depsilon_is_deps(ref, tau_m, tau_s):
    rng = np.random.default_rng(6)
    s = np.concatenate([[0.0], rng.uniform(-5, 30, 100)])
    got = h(s, "depsilon", tau_m=tau_m, tau_s=tau_s, tau_grad=1.0)
    np.testing.assert_array_equal(got, deps(s, tau_m, tau_s))
    np.testing.assert_allclose(got, ref.h(s, "depsilon", tau_m, tau_s, 1.0), rtol=1e-13, atol=1e-15)


def test_kernels_are_exported():
    assert eventsnn.eps is eps and eventsnn.deps is deps and eventsnn.h is h


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: eps([1.0], 5.0, 5.0), "tau"),
        (lambda: deps([1.0], 3.0, 3.0), "tau"),
        (lambda: eps([1.0], 0.0, 3.0), "tau_m"),
        (lambda: eps([1.0], -5.0, 3.0), "tau_m"),
        (lambda: eps([1.0], 5.0, -3.0), "tau_s"),
        (lambda: eps([1.0], float("nan"), 3.0), "tau_m"),
        (lambda: deps([1.0], 5.0, float("inf")), "tau_s"),
        (lambda: eps([np.nan], 5.0, 3.0), "s"),
        (lambda: deps([0.0, np.nan], 5.0, 3.0), "s"),
        (lambda: h([1.0], "gauss"), "kernel"),
        (lambda: h([1.0], "exp", tau_grad=0.0), "tau_grad"),
        (lambda: h([1.0], "exp", tau_grad=-1.0), "tau_grad"),
        (lambda: h([1.0], "depsilon", tau_m=2.0, tau_s=2.0), "tau"),
        (lambda: h([np.nan], "exp"), "s"),
    ],
)
def test_kernel_validation(call, name):
    with pytest.raises(ValueError, match=name):
        call()
