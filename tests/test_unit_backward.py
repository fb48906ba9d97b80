"""The channel-parallel unit walks of the sparse convolution backward
(:mod:`eventsnn.engine.unit_backward`) against the per-spike window walks they replace
(:func:`eventsnn.engine.conv._backward_units_path`, the reference): real spikes of random
spike inputs (coincident input times, several spikes per neuron), fabricated spike lists
(spikes exactly on group times -- the skip rule --, empty windows, recomputed slopes),
both kernels, every stabiliser, forced spikes, the fallbacks, numba thread counts, the
second convolution of 15C5-P2-40C5-P2-300 on MNIST-like images, and finite differences
of dL/dK."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spike_refs import spike_ranks
from toy_run import stroke_images

from eventsnn import GradParams, NeuronParams, SpikeTrains
from eventsnn.engine import unit_backward as ub
from eventsnn.engine.conv import (
    ConvGeometry,
    _backward_units_path,
    _conv_backward_with,
    _reach,
    conv_backward,
    conv_forward,
)
from eventsnn.engine.sweep import ForcedSpikes, _backward_dense_path

PARAMS = NeuronParams(5.0, 3.0, 1.0)
#: Agreement with the per-spike walks, relative to the largest magnitude of each result.
RTOL = 1e-12


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------
def spike_inputs(rng, n_samples, geom, n_events, t_end, rounded=4):
    """Spikes at random times in (0, t_end), every ``rounded``-th time rounded to an
    integer (coincident input times), some amplitudes not 1."""
    n = n_samples * n_events
    times = rng.uniform(0.0, t_end, n)
    times[::rounded] = np.round(times[::rounded])
    amps = np.where(rng.uniform(size=n) < 0.8, 1.0, rng.uniform(0.3, 1.5, n))
    return SpikeTrains.from_unsorted(times, rng.integers(0, geom.n_in, n), amps,
                                     np.repeat(np.arange(n_samples), n_events), n_samples,
                                     geom.n_in)


def sparse_record(seed, geom, n_samples=3, n_events=120, t_end=10.0, mean=0.35, sd=0.7,
                  params=PARAMS):
    rng = np.random.default_rng(seed)
    inputs = spike_inputs(rng, n_samples, geom, n_events, t_end)
    K = rng.normal(mean, sd, geom.weight_shape)
    _, rec = conv_forward(inputs, K, geom, params, t_end, path="sparse")
    return rec, rng


def real_spikes(rec):
    return (rec.out_unit, rec.out_channel, rec.outputs.times, rec.out_slope, rec.out_row,
            rec.out_wstart)


def run_path(path, rec, gp, spikes, grad, *, recompute=False, min_slope=0.0, cap=-1.0,
             need_input=True):
    """One call of a units path: (flags, dL/dK^T summed over chunks, ent_dt, ent_da)."""
    KT, dKT_c, ent_dt, ent_da = ub.units_path_buffers(rec, need_input)
    flags = path(rec, gp, spikes, grad, recompute, min_slope, cap, need_input, KT, dKT_c, ent_dt,
                 ent_da)
    return flags, dKT_c.sum(axis=0), ent_dt, ent_da


def both(rec, gp, spikes, grad, **kw):
    return (run_path(_backward_units_path, rec, gp, spikes, grad, **kw),
            run_path(ub.backward_units_path, rec, gp, spikes, grad, **kw))


def assert_agree(old, new, rtol=RTOL):
    np.testing.assert_array_equal(new[0], old[0], err_msg="flags")
    for name, a, b in zip(("dL/dK", "ent_dt", "ent_da"), old[1:], new[1:]):
        assert a.shape == b.shape
        scale = np.abs(a).max(initial=0.0)
        err = np.abs(a - b).max(initial=0.0)
        assert err <= rtol * scale, f"{name}: max |difference| {err:.3g} vs scale {scale:.3g}"


def fabricated_spikes(rec, rng, max_per_channel=4):
    """Spike lists that follow the forward's window conventions, without being real
    crossings: per (unit, channel) a few times, some exactly on group times (window end
    we = row + 2, next window start row + 2: the skip rule), some in the same interval
    (empty windows). Slopes random positive."""
    ul = rec.units
    rows = []
    for u in range(ul.unit_group_offsets.size - 1):
        g0, g1 = ul.unit_group_offsets[u], ul.unit_group_offsets[u + 1]
        if g1 - g0 < 2:
            continue
        gt = ul.group_times[g0:g1]
        for ch in rng.choice(rec.geometry.c_out, size=rng.integers(1, rec.geometry.c_out + 1),
                             replace=False):
            n = int(rng.integers(1, max_per_channel + 1))
            pool = np.concatenate([rng.choice(gt[1:], n), rng.uniform(gt[0], rec.t_end, n),
                                   np.nextafter(rng.choice(gt[1:], 1), np.inf)])
            ws = g0
            for t in np.sort(rng.choice(pool, n, replace=False)):
                row = g0 + int(np.searchsorted(gt, t, side="left")) - 1  # last t_g < t
                if row < g0:
                    continue
                rows.append((u, ch, t, rng.uniform(0.05, 2.0), row, ws))
                on_group = row + 1 < g1 and ul.group_times[row + 1] == t
                ws = row + 2 if on_group else row + 1
    a = np.array(rows)
    return tuple(a[:, i].astype(np.int64 if i in (0, 1, 4, 5) else np.float64) for i in range(6))


def window_stats(rec, spikes):
    """(number of spikes exactly on a group time, mask of the spikes with an empty
    window) of a spike list."""
    ul = rec.units
    units, _, tms, _, rows, ws = spikes
    nxt = np.minimum(rows + 1, ul.group_times.size - 1)
    on = (rows + 1 < ul.unit_group_offsets[units + 1]) & (ul.group_times[nxt] == tms)
    we = rows + 1 + on
    return int(on.sum()), we <= ws


GEOM = ConvGeometry(3, 9, 8, 5, 3, 1, 1)


@pytest.fixture(scope="module")
def record():
    """Random spike inputs (coincident times) through a 3x3 conv with mixed-sign weights
    (several spikes per neuron), plus in every sample strong inhibition at t = 0 and
    excitation at t = 6 on the centre taps of a few positions: the neurons there still
    fire, with a negative Eq. 12 denominator for the exp kernel with tau_grad = 20."""
    rng = np.random.default_rng(7)
    base = spike_inputs(rng, 3, GEOM, 120, 10.0)
    K = rng.normal(0.35, 0.7, GEOM.weight_shape)
    K[:, 0, 1, 1], K[:, 1, 1, 1] = -20.0, 8.0
    pix = [(2, 2), (5, 3), (6, 6)]
    extra_t = [t for _ in range(3) for _ in pix for t in (0.0, 6.0)]
    extra_n = [c * GEOM.h * GEOM.w + y * GEOM.w + x for _ in range(3) for y, x in pix
               for c in (0, 1)]
    extra_s = np.repeat(np.arange(3), 2 * len(pix))
    inputs = SpikeTrains.from_unsorted(
        np.concatenate([base.times, extra_t]), np.concatenate([base.neurons, extra_n]),
        np.concatenate([base.amplitudes, np.ones(len(extra_t))]),
        np.concatenate([base.samples, extra_s]), 3, GEOM.n_in)
    _, rec = conv_forward(inputs, K, GEOM, PARAMS, 10.0, path="sparse")
    return rec, rng.uniform(-1.0, 1.0, rec.outputs.n_events)


# ----------------------------------------------------------------------------------
# real spikes
# ----------------------------------------------------------------------------------
def test_record_is_a_real_test(record):
    rec, grad = record
    _, counts = np.unique(rec.out_unit * GEOM.c_out + rec.out_channel, return_counts=True)
    assert rec.outputs.n_events > 300 and counts.max() >= 4, "several spikes per neuron"
    assert np.any(np.diff(rec.units.group_entry_offsets) > 1), "coincident input times"
    flags = run_path(_backward_units_path, rec, GradParams(tau_grad=20.0), real_spikes(rec),
                     grad)[0]
    assert np.any(flags & 2), "some Eq. 12 denominators <= 0"


@pytest.mark.parametrize("need_input", [True, False])
@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("cap", [None, 0.8])
@pytest.mark.parametrize("kernel,tau_grad", [("exp", 2.5), ("exp", 20.0), ("depsilon", 2.5)])
def test_real_spikes_agree(record, kernel, tau_grad, cap, drop, need_input):
    rec, grad = record
    gp = GradParams(kernel=kernel, tau_grad=tau_grad, max_dt_du=cap, drop_nonpositive=drop)
    old, new = both(rec, gp, real_spikes(rec), grad, cap=-1.0 if cap is None else cap,
                    need_input=need_input)
    assert_agree(old, new)
    if cap is not None:
        assert np.any(new[0] & 4), "the cap must act"


# ----------------------------------------------------------------------------------
# fabricated spike lists: skip rule, empty windows, recomputed slopes
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
def test_fabricated_windows_agree(record, kernel, recompute):
    rec, _ = record
    rng = np.random.default_rng(11)
    spikes = fabricated_spikes(rec, rng)
    on_group, empty = window_stats(rec, spikes)
    assert on_group >= 20 and empty.sum() >= 20, (on_group, empty.sum())
    grad = rng.uniform(-1.0, 1.0, spikes[0].size)
    gp = GradParams(kernel=kernel, max_dt_du=4.0, drop_nonpositive=True)
    old, new = both(rec, gp, spikes, grad, recompute=recompute, min_slope=0.25 if recompute else 0.0,
                    cap=4.0)
    assert np.all(new[0][empty] == 3)
    # random (not threshold-crossing) times make some denominators nearly cancel: a
    # slightly looser bound than for real spikes
    assert_agree(old, new, rtol=4 * RTOL)


@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
def test_long_windows_agree(kernel):
    """t_end / tau up to 40: the walks' e^{t/tau} factors stay well conditioned."""
    params = NeuronParams(4.0, 2.0, 1.0)
    rec, rng = sparse_record(3, ConvGeometry(2, 7, 7, 3, 3, 1, 1), n_samples=2, n_events=120,
                             t_end=80.0, mean=0.3, sd=0.6, params=params)
    spikes = fabricated_spikes(rec, rng)
    grad = rng.uniform(-1.0, 1.0, spikes[0].size)
    old, new = both(rec, GradParams(kernel=kernel, tau_grad=2.0), spikes, grad)
    assert_agree(old, new)


# ----------------------------------------------------------------------------------
# forced spikes, the whole conv_backward
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("need_input", [True, False])
@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
def test_conv_backward_with_forced_spikes(record, kernel, need_input):
    """conv_backward (the unit walks) equals the per-spike walks, forced spikes included
    (one per neuron, at t_end or earlier, recomputed slope floored at 1/max_dt_du)."""
    rec, grad = record
    rng = np.random.default_rng(5)
    S = rec.outputs.n_samples
    pick = rng.choice(S * GEOM.n_out, size=40, replace=False)
    times = np.where(rng.uniform(size=40) < 0.5, rec.t_end, rng.uniform(1.0, rec.t_end, 40))
    forced = ForcedSpikes(pick // GEOM.n_out, pick % GEOM.n_out, times, rng.uniform(-1, 1, 40))
    gp = GradParams(kernel=kernel, max_dt_du=4.0, input_grad_scale=0.85, drop_nonpositive=True)
    new = conv_backward(rec, grad, gp, need_input_grad=need_input, forced=forced)
    old = _conv_backward_with(_backward_dense_path, _backward_units_path, rec, grad, gp,
                              need_input, forced)
    np.testing.assert_array_equal(new.flags, old.flags)
    for name in ("d_weight", "d_times", "d_amplitudes"):
        a, b = getattr(old, name), getattr(new, name)
        assert np.abs(a - b).max(initial=0.0) <= RTOL * np.abs(a).max(initial=0.0), name


# ----------------------------------------------------------------------------------
# fallbacks to the per-spike walks
# ----------------------------------------------------------------------------------
def _counting(monkeypatch):
    calls = []

    def wrapped(*args):
        calls.append(1)
        return _backward_units_path(*args)

    monkeypatch.setattr(ub, "_backward_units_path", wrapped)
    return calls


def test_overlapping_windows_fall_back(record, monkeypatch):
    """Two windows of one (unit, channel) sharing groups (not possible for real spikes)
    cannot be separated: the per-spike walks run, with identical results."""
    rec, grad = record
    spikes = [np.array(a) for a in real_spikes(rec)]
    key = spikes[0] * GEOM.c_out + spikes[1]
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    k = np.flatnonzero(key == key[first[np.argmax(counts)]])  # a neuron's spikes
    spikes[5][k] = rec.units.unit_group_offsets[spikes[0][k]]  # every window from the start
    calls = _counting(monkeypatch)
    new = run_path(ub.backward_units_path, rec, GradParams(), tuple(spikes), grad)
    old = run_path(_backward_units_path, rec, GradParams(), tuple(spikes), grad)
    assert calls == [1]
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a, b)


def test_overlap_detection():
    order = np.array([0, 1, 2])
    chans = np.array([0, 1, 0])
    eo, ec = np.array([0, 2, 5]), np.array([5, 9, 7])
    last = np.zeros(2, dtype=np.int64)
    assert not ub._windows_overlap(order, chans, eo, ec, last)  # touching windows: fine
    ec[0] = 6
    assert ub._windows_overlap(order, chans, eo, ec, np.zeros(2, dtype=np.int64))


def test_large_exponent_falls_back(record, monkeypatch):
    rec, grad = record
    calls = _counting(monkeypatch)
    monkeypatch.setattr(ub._sweep, "MAX_REFERENCED_EXPONENT", 1.0)  # t_end / tau = 10 / 2.5 beyond it
    new = run_path(ub.backward_units_path, rec, GradParams(), real_spikes(rec), grad)
    assert calls == [1]
    old = run_path(_backward_units_path, rec, GradParams(), real_spikes(rec), grad)
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------
# threads, determinism
# ----------------------------------------------------------------------------------
def test_thread_counts_and_determinism(record):
    """Chunks follow the thread count (one dL/dK accumulator per chunk, as for the
    per-spike walks); for each, the walks agree and repeat bit for bit."""
    rec, grad = record
    gp = GradParams(max_dt_du=4.0, drop_nonpositive=True)
    counts = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    before = numba.get_num_threads()
    try:
        for n in counts:
            numba.set_num_threads(n)
            old, new = both(rec, gp, real_spikes(rec), grad, cap=4.0)
            assert_agree(old, new)
            again = run_path(ub.backward_units_path, rec, gp, real_spikes(rec), grad, cap=4.0)
            for a, b in zip(new, again):
                np.testing.assert_array_equal(a, b)
    finally:
        numba.set_num_threads(before)


# ----------------------------------------------------------------------------------
# a real record: the second convolution of 15C5-P2-40C5-P2-300
# ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def conv2_case():
    """(record, grad_out) of the second convolution in a training step of the default
    configuration (gains initialised as in training) on four MNIST-like images."""
    from eventsnn.checkpoint import build_network
    from eventsnn.config import TrainConfig
    from eventsnn.loss import count_loss
    from eventsnn.train import encode_images, init_gains

    rng = np.random.default_rng(0)
    x = stroke_images(rng, 4)
    y = np.arange(4)
    cfg = TrainConfig(arch="15C5-P2-40C5-P2-300")
    net = build_network(cfg, 10, x.shape[1:])
    init_gains(net, encode_images(x, cfg), cfg.avg_spike_init)
    xs, records = encode_images(x, cfg), []
    for layer in net.layers:
        xs, rec = layer.forward(xs, net.params, net.t_end)
        records.append(rec)
    cl = count_loss(xs, y, steps=cfg.steps, t_end=cfg.t_end, desired=cfg.desired,
                    undesired=cfg.undesired, supervision=cfg.supervision)
    g = cl.grad
    for l in range(len(net.layers) - 1, 2, -1):
        g = net.layers[l].backward(records[l], g, cfg.grad_params(),
                                   forced=cl.forced if l == len(net.layers) - 1 else None).events
    return records[2].engine, g, cfg.grad_params()


@pytest.mark.parametrize("kernel", ["trainer", "depsilon"])
def test_second_conv_of_mnist_network(conv2_case, kernel):
    rec, grad, gp = conv2_case
    assert not rec.dense and rec.geometry.out_shape == (40, 8, 8)
    assert rec.outputs.n_events > 500 and np.any(grad != 0.0)
    if kernel == "depsilon":
        gp = GradParams(kernel="depsilon")
    cap = gp.max_dt_du if gp.max_dt_du is not None else -1.0
    old, new = both(rec, gp, real_spikes(rec), grad, cap=cap)
    assert_agree(old, new)


# ----------------------------------------------------------------------------------
# finite differences of dL/dK through the unit walks
# ----------------------------------------------------------------------------------
def test_weight_gradient_finite_differences():
    """With h = d eps/dt and no stabiliser, dL/dK from the unit walks is the derivative of
    L = sum_k g_k t_k (perturbations that change a spike count are skipped)."""
    geom = ConvGeometry(2, 7, 7, 3, 3, 1, 0)
    rng = np.random.default_rng(31)
    inputs = spike_inputs(rng, 3, geom, 60, 10.0)
    K = rng.normal(0.45, 0.6, geom.weight_shape)
    out, rec = conv_forward(inputs, K, geom, PARAMS, 10.0, path="sparse")
    gtab = rng.uniform(-1, 1, (inputs.n_samples, geom.n_out, 64))
    counts = out.counts()
    gr = _conv_backward_with(_backward_dense_path, ub.backward_units_path, rec,
                             gtab[out.samples, out.neurons, spike_ranks(out)],
                             GradParams(kernel="depsilon"), False, None)
    assert out.n_events >= 20 and gr.n_dropped == 0

    def loss(k):
        o, _ = conv_forward(inputs, k, geom, PARAMS, 10.0, path="sparse")
        if not np.array_equal(o.counts(), counts):
            return None
        return float(np.sum(gtab[o.samples, o.neurons, spike_ranks(o)] * o.times))

    dx = 1e-6
    checked = 0
    for flat in rng.choice(K.size, size=16, replace=False):
        idx = np.unravel_index(flat, K.shape)
        kp, km = K.copy(), K.copy()
        kp[idx] += dx
        km[idx] -= dx
        fp, fm = loss(kp), loss(km)
        if fp is None or fm is None:
            continue
        checked += 1
        assert gr.d_weight[idx] == pytest.approx((fp - fm) / (2 * dx), rel=1e-5, abs=2e-6), idx
    assert checked >= 12


# ----------------------------------------------------------------------------------
# properties over geometries
# ----------------------------------------------------------------------------------
@st.composite
def geometries(draw):
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, k - 1))
    h = draw(st.integers(max(1, k - 2 * pad), 9))
    w = draw(st.integers(max(1, k - 2 * pad), 9))
    return ConvGeometry(draw(st.integers(1, 2)), h, w, draw(st.integers(1, 4)), k, stride, pad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geom=geometries(), seed=st.integers(0, 2**16))
def test_prop_cover_and_fabricated_windows(geom, seed):
    """The cover positions hold every input position that reaches an output position,
    and the walks equal the per-spike walks on fabricated spikes of any geometry."""
    cover = set(ub._cover_positions(geom).tolist())
    for y in range(geom.h):
        ylo, yhi = _reach(y, geom.k, geom.stride, geom.padding, geom.h_out)
        for x in range(geom.w):
            xlo, xhi = _reach(x, geom.k, geom.stride, geom.padding, geom.w_out)
            reached = {oy * geom.w_out + ox for oy in range(ylo, yhi + 1)
                       for ox in range(xlo, xhi + 1)}
            assert not reached or reached & cover, (y, x)
    rec, rng = sparse_record(seed, geom, n_samples=2, n_events=40, t_end=8.0)
    if rec.units.max_groups < 2:
        return
    spikes = fabricated_spikes(rec, rng, max_per_channel=3)
    grad = rng.uniform(-1.0, 1.0, spikes[0].size)
    kernel = ("exp", "depsilon")[seed % 2]
    old, new = both(rec, GradParams(kernel=kernel), spikes, grad, recompute=bool(seed % 3 == 0),
                    min_slope=0.25)
    assert_agree(old, new, rtol=4 * RTOL)


@st.composite
def _unit_windows(draw):
    """Spikes of a few units with increasing entry ranges, windows [eo, ec) inside their
    unit's range (many equal starts and ends), some empty."""
    sizes = draw(st.lists(st.integers(0, 6), min_size=1, max_size=8))
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = draw(st.integers(0, 60))
    units = np.array(draw(st.lists(st.integers(0, len(sizes) - 1), min_size=n, max_size=n)), dtype=np.int64)
    pick = np.array(draw(st.lists(st.floats(0, 1), min_size=2 * n, max_size=2 * n))).reshape(n, 2)
    lo, hi = bounds[units], bounds[units + 1]
    a = lo + np.floor(pick[:, 0] * (hi - lo + 1)).astype(np.int64).clip(0, hi - lo)
    b = lo + np.floor(pick[:, 1] * (hi - lo + 1)).astype(np.int64).clip(0, hi - lo)
    return units, np.minimum(a, b), np.maximum(a, b), len(sizes)


@settings(max_examples=150, deadline=None)
@given(_unit_windows())
def test_prop_window_orders_are_the_stable_argsorts(case):
    """window_orders (counting sort by unit, then per unit in parallel) gives exactly the
    stable argsorts by window start and by window end that the walks were written for."""
    units, eo, ec, n_units = case
    live = np.flatnonzero(ec > eo)
    offsets, open_order, close_order = ub.window_orders(units, live, eo, ec, n_units)
    np.testing.assert_array_equal(open_order, live[np.argsort(eo[live], kind="stable")])
    np.testing.assert_array_equal(close_order, live[np.argsort(ec[live], kind="stable")])
    np.testing.assert_array_equal(np.diff(offsets), np.bincount(units[live], minlength=n_units))
