"""Shared slow references for the exact-core tests.

Everything here is written from the model's definition in
``docs/continuous-time-model.md``, independently of the library's compiled
routines: the potential is a direct sum of kernels, critical points and
threshold crossings are located by dense sampling and refined with
``scipy.optimize.brentq``, and the reset rule is applied explicitly. The
references are slow and obviously correct; the tests compare the fast library
against them.
"""

from __future__ import annotations

import os

# The GPU engine's tests (tests/test_cuda.py, marked "cuda") run its kernels under the
# CUDA simulator unless NUMBA_ENABLE_CUDASIM is set otherwise (=0 on a GPU machine runs
# them on the GPU). numba.cuda reads it when first imported, so it is set before any
# import; ``--device auto`` never picks the simulator.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import contextlib
import decimal
import hashlib
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.optimize import brentq

#: brentq tolerances used by the references (as tight as brentq allows).
BRENT_RTOL = 4.0 * np.finfo(float).eps
BRENT_XTOL = 1e-300


# ----------------------------------------------------------------------------------
# kernels, straight from the formulas
# ----------------------------------------------------------------------------------
def _stable_parts(s, tau_m, tau_s):
    """s clipped at 0, the slow time constant tau_1, |A| and delta' = |1/tau_fast - 1/tau_slow|.

    The difference of the two time constants is exact in floating point, so
    delta' = |tau_m - tau_s| / (tau_m tau_s) keeps full relative precision even
    for close time constants.
    """
    s = np.asarray(s, dtype=np.float64)
    sp = np.where(s >= 0, s, 0.0)
    tau_1 = max(tau_m, tau_s)
    abs_a = tau_m / abs(tau_m - tau_s)
    delta = abs(tau_m - tau_s) / (tau_m * tau_s)
    return s, sp, tau_1, abs_a, delta


def ref_eps(s, tau_m, tau_s):
    """eps(s) = tau_m/(tau_m - tau_s) (exp(-s/tau_m) - exp(-s/tau_s)), 0 for s < 0.

    Evaluated as |A| exp(-s/tau_1) (1 - exp(-s delta')) with tau_1 the slower
    time constant, which keeps its relative accuracy for small s and for close
    time constants and never overflows.
    """
    s, sp, tau_1, abs_a, delta = _stable_parts(s, tau_m, tau_s)
    val = -abs_a * np.exp(-sp / tau_1) * np.expm1(-sp * delta)
    return np.where(s >= 0, val, 0.0)


def ref_deps(s, tau_m, tau_s):
    """d eps / ds, 0 for s < 0 (right derivative at 0).

    Differentiating the stable form and using |A| delta' = 1/tau_s:
    exp(-s/tau_1) (exp(-s delta')/tau_s + |A|/tau_1 expm1(-s delta')).
    """
    s, sp, tau_1, abs_a, delta = _stable_parts(s, tau_m, tau_s)
    val = np.exp(-sp / tau_1) * (np.exp(-sp * delta) / tau_s + abs_a / tau_1 * np.expm1(-sp * delta))
    return np.where(s >= 0, val, 0.0)


def naive_eps(s, tau_m, tau_s):
    """The kernel formula evaluated literally (loses accuracy for close time constants)."""
    s = np.asarray(s, dtype=np.float64)
    sp = np.where(s >= 0, s, 0.0)
    val = tau_m / (tau_m - tau_s) * (np.exp(-sp / tau_m) - np.exp(-sp / tau_s))
    return np.where(s >= 0, val, 0.0)


def naive_deps(s, tau_m, tau_s):
    s = np.asarray(s, dtype=np.float64)
    sp = np.where(s >= 0, s, 0.0)
    val = tau_m / (tau_m - tau_s) * (np.exp(-sp / tau_s) / tau_s - np.exp(-sp / tau_m) / tau_m)
    return np.where(s >= 0, val, 0.0)


def ref_h(s, kernel, tau_m, tau_s, tau_grad):
    s = np.asarray(s, dtype=np.float64)
    if kernel == "exp":
        return np.where(s >= 0, np.exp(-np.where(s >= 0, s, 0.0) / tau_grad), 0.0)
    return ref_deps(s, tau_m, tau_s)


def decimal_eps(s, tau_m, tau_s, prec=60):
    """eps(s) in 60-digit decimal arithmetic (reference for close time constants)."""
    with decimal.localcontext() as ctx:
        ctx.prec = prec
        S, M, T = decimal.Decimal(float(s)), decimal.Decimal(float(tau_m)), decimal.Decimal(float(tau_s))
        if S < 0:
            return 0.0
        val = M / (M - T) * ((-S / M).exp() - (-S / T).exp())
        return float(val)


def decimal_deps(s, tau_m, tau_s, prec=60):
    with decimal.localcontext() as ctx:
        ctx.prec = prec
        S, M, T = decimal.Decimal(float(s)), decimal.Decimal(float(tau_m)), decimal.Decimal(float(tau_s))
        if S < 0:
            return 0.0
        val = M / (M - T) * ((-S / T).exp() / T - (-S / M).exp() / M)
        return float(val)


# ----------------------------------------------------------------------------------
# slow reference neuron
# ----------------------------------------------------------------------------------
def _first_crossing_ref(ta, ca, a, b, theta, tau_m, tau_s, n_samples):
    """First t in (a, b] where u(t) = sum ca eps(t - ta) reaches theta, or None.

    u is sampled densely on [a, b] only to locate sign changes of u' (critical
    points, refined with brentq on u') and of u - theta; the crossing is then
    refined with brentq on the direct sum.
    """

    def u(x):
        return float(np.sum(ca * ref_eps(x - ta, tau_m, tau_s)))

    def du(x):
        return float(np.sum(ca * ref_deps(x - ta, tau_m, tau_s)))

    xs = np.linspace(a, b, n_samples + 1)
    xs[-1] = b
    dus = ref_deps(xs[:, None] - ta[None, :], tau_m, tau_s) @ ca
    crit = []
    for j in np.flatnonzero((dus[:-1] > 0) & (dus[1:] < 0)):
        # a maximum (the only place where u can touch theta and leave)
        crit.append(brentq(du, xs[j], xs[j + 1], xtol=BRENT_XTOL, rtol=BRENT_RTOL))
    cand = np.unique(np.concatenate([xs, np.array(crit, dtype=np.float64)]))
    us = ref_eps(cand[:, None] - ta[None, :], tau_m, tau_s) @ ca
    hit = np.flatnonzero(us[1:] >= theta)
    if hit.size == 0:
        return None
    j = hit[0] + 1
    lo, hi = cand[j - 1], cand[j]
    if us[j] == theta:
        return float(hi)
    return float(brentq(lambda x: u(x) - theta, lo, hi, xtol=BRENT_XTOL, rtol=BRENT_RTOL))


def ref_spike_times(in_times, in_weights, tau_m, tau_s, threshold, t_end, n_samples=48):
    """Spike times in (0, t_end] of one SRM neuron, by brute force.

    For every interval (tau_g, tau_{g+1}] between consecutive distinct input
    times (the last one ends at t_end) the potential of the inputs received
    since the last spike is searched for its first threshold crossing. After a
    spike at t_k every input with t_m <= t_k is forgotten.
    """
    t = np.asarray(in_times, dtype=np.float64).reshape(-1)
    c = np.asarray(in_weights, dtype=np.float64).reshape(-1)
    keep = t <= t_end
    t, c = t[keep], c[keep]
    starts = np.unique(t)
    spikes = []
    last = -np.inf
    for g, tg in enumerate(starts):
        if tg <= last:
            continue  # only possible when the last spike was exactly at tg
        right = starts[g + 1] if g + 1 < starts.size else t_end
        if right <= tg:
            continue
        active = (t > last) & (t <= tg)
        ta, ca = t[active], c[active]
        if not np.any(ca != 0):
            continue
        tk = _first_crossing_ref(ta, ca, tg, right, threshold, tau_m, tau_s, n_samples)
        if tk is not None:
            spikes.append(tk)
            last = tk
    return np.array(spikes, dtype=np.float64)


def ref_windows(in_times, out_times):
    """Index arrays of the window (t_{k-1}, t_k] of every output spike."""
    t = np.asarray(in_times, dtype=np.float64)
    prev = -np.inf
    wins = []
    for tk in out_times:
        wins.append(np.flatnonzero((t > prev) & (t <= tk)))
        prev = tk
    return wins


def ref_time_gradients(in_times, in_weights, out_times, tau_m, tau_s, kernel, tau_grad):
    """Eq. 12 shares and d t_k / d c_m = -eps / u'(t_k), written from the formulas."""
    t = np.asarray(in_times, dtype=np.float64)
    c = np.asarray(in_weights, dtype=np.float64)
    n_out, n_in = len(out_times), t.size
    dtin = np.zeros((n_out, n_in))
    dw = np.zeros((n_out, n_in))
    for k, (tk, win) in enumerate(zip(out_times, ref_windows(t, out_times))):
        s = tk - t[win]
        hv = c[win] * ref_h(s, kernel, tau_m, tau_s, tau_grad)
        dtin[k, win] = hv / hv.sum()
        slope = np.sum(c[win] * ref_deps(s, tau_m, tau_s))
        dw[k, win] = -ref_eps(s, tau_m, tau_s) / slope
    return dtin, dw


def assert_times_close(got, want, rtol=1e-12, what="spike times"):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: got {got.size} spikes {got}, expected {want.size} {want}"
    if got.size:
        err = np.abs(got - want) / np.maximum(np.abs(want), 1.0)
        assert err.max() <= rtol, (
            f"{what}: max relative error {err.max():.3e} at index {err.argmax()} "
            f"(got {got[err.argmax()]!r}, expected {want[err.argmax()]!r})"
        )


@pytest.fixture(scope="session")
def ref():
    """The slow references, as a namespace (session-scoped so hypothesis tests can use it)."""
    return SimpleNamespace(
        eps=ref_eps,
        deps=ref_deps,
        naive_eps=naive_eps,
        naive_deps=naive_deps,
        h=ref_h,
        decimal_eps=decimal_eps,
        decimal_deps=decimal_deps,
        spike_times=ref_spike_times,
        windows=ref_windows,
        time_gradients=ref_time_gradients,
        assert_times_close=assert_times_close,
    )


# ---------------------------------------------------------------------------
# A tiny MNIST cache for the command-line tests
# ---------------------------------------------------------------------------
def idx_bytes(array, magic):
    """IDX by hand: big-endian uint32 magic, uint32 per dimension, uint8 data."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


@contextlib.contextmanager
def _fake_mnist_cache(arrays, data_dir):
    """Write ``arrays`` (uint8, keys of mnist.FILES) as an MNIST IDX cache under
    ``data_dir/mnist``; while open, the pinned checksums are patched to these
    files and the network and pip are blocked."""
    import requests

    from eventsnn.datasets import mnist, store

    (data_dir / "mnist").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, array in arrays.items():
            spec = mnist.FILES[key]
            blob = idx_bytes(array, spec.magic)
            (data_dir / "mnist" / spec.filename).write_bytes(blob)
            mp.setitem(mnist.FILES, key, mnist.IdxFile(spec.filename, spec.magic, array.shape,
                                                       hashlib.sha256(blob).hexdigest(), "0" * 64))

        def no_network(*args, **kwargs):
            raise requests.ConnectionError("network blocked in tests")

        def no_pip(*args, **kwargs):
            raise AssertionError("pip download must not run in tests")

        mp.setattr(store.pooch, "retrieve", no_network)
        mp.setattr(store, "_pip_download", no_pip)
        mp.delenv(store.ENV_VAR, raising=False)
        yield


@pytest.fixture(scope="session")
def fake_mnist_cache():
    """The context manager :func:`_fake_mnist_cache` (for module-scoped fixtures)."""
    return _fake_mnist_cache


@pytest.fixture
def seen_batches(monkeypatch):
    """A list that receives a copy of the images of every ``eventsnn.train.train_step`` call, in order."""
    import eventsnn.train as train_mod

    seen = []
    real_step = train_mod.train_step

    def spy(net, opt, images, labels, config):
        seen.append(np.array(images))
        return real_step(net, opt, images, labels, config)

    monkeypatch.setattr(train_mod, "train_step", spy)
    return seen
