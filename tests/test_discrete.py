"""The official discrete-time algorithm (eventsnn.engine.discrete, Network.set_time("discrete")).

Each formula is pinned on a hand-computed case; a slow, literal numpy transcription of
the official code's forward and backward (dense tensors (T, batch, neurons), loops over
steps, the official clamps and tables) is compared with the compiled kernels on a small
conv-pool-dense network; and the clock approaches exact continuous time as dt -> 0.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eventsnn import GradParams, Network, NeuronParams, SpikeTrains, encode
from eventsnn.checkpoint import build_network, load_checkpoint, save_checkpoint
from eventsnn.config import TrainConfig
from eventsnn.engine import discrete
from eventsnn.engine.conv import PoolGeometry
from eventsnn.engine.discrete import Clock
from eventsnn.engine.sweep import ForcedSpikes
from eventsnn.engine.sweep import dense_forward as exact_dense_forward
from eventsnn.loss import count_loss, readout

P = NeuronParams(5.0, 3.0, 1.0)


def one_sample(times, neurons, amps, n_in):
    return SpikeTrains(times, neurons, amps, [0, len(times)], n_in)


# ----------------------------------------------------------------------------------
# hand-computed cases
# ----------------------------------------------------------------------------------
def test_trace_recurrence_by_hand():
    # one input neuron, weight 1, current 0.6 at step 0 and 0.3 at step 2 (dt = 1):
    # m = (m + I) 0.8, s = (s + I) 2/3, u = 2.5 (m - s)
    st = one_sample([0.0, 2.0], [0, 0], [0.6, 0.3], 1)
    out, rec = discrete.dense_forward(st, [[1.0]], P, Clock(4, 4.0))
    m = [0.6 * 0.8, 0.6 * 0.64, (0.6 * 0.64 + 0.3) * 0.8, (0.6 * 0.64 + 0.3) * 0.64]
    s = [0.6 * 2 / 3, 0.6 * 4 / 9, (0.6 * 4 / 9 + 0.3) * 2 / 3, (0.6 * 4 / 9 + 0.3) * 4 / 9]
    u = [2.5 * (a - b) for a, b in zip(m, s)]
    np.testing.assert_allclose(rec.du[:, 0, 0], np.diff(u, prepend=0.0), rtol=1e-14)
    assert out.n_events == 0 and max(u) < 1.0


def test_reset_of_all_traces_on_a_spike():
    # 1.5 at step 0 gives u[0] = 2.5 * 1.5 * (0.8 - 2/3) = 0.5; 3.0 at step 1:
    # u[1] = 2.5 ((1.5 * 0.8 + 3) 0.8 - (1.5 * 2/3 + 3) 2/3) >= 1 -> spike, reset;
    # step 2 has no input: u[2] = 0, du[2] = 0 - 0 (u_last reset to 0); step 3: 0.9 alone
    st = one_sample([0.0, 1.0, 3.0], [0, 0, 0], [1.5, 3.0, 0.9], 1)
    out, rec = discrete.dense_forward(st, [[1.0]], P, Clock(5, 5.0))
    u1 = 2.5 * ((1.5 * 0.8 + 3.0) * 0.8 - (1.5 * 2 / 3 + 3.0) * 2 / 3)
    assert u1 >= 1.0
    assert out.times.tolist() == [1.0]                  # reported at the step time n dt
    np.testing.assert_allclose(rec.du[1, 0, 0], u1 - 0.5, rtol=1e-14)
    assert rec.du[2, 0, 0] == 0.0                       # nothing left after the reset
    np.testing.assert_allclose(rec.du[3, 0, 0], 2.5 * 0.9 * (0.8 - 2 / 3), rtol=1e-14)
    np.testing.assert_allclose(rec.du[4, 0, 0], 2.5 * 0.9 * (0.64 - 4 / 9) - 2.5 * 0.9 * (0.8 - 2 / 3),
                               rtol=1e-13)


def test_kernel_tables_exponential_and_original():
    clock = Clock(4, 4.0)
    syn_a, h = discrete.kernel_tables(clock, P, GradParams("exp", 2.5))
    d1 = np.arange(1, 5)
    np.testing.assert_allclose(syn_a, 2.5 * (0.8 ** d1 - (2 / 3) ** d1), rtol=1e-14)
    np.testing.assert_allclose(h, 0.6 ** d1, rtol=1e-14)            # (1 - 1/2.5)^(d+1)
    _, h_orig = discrete.kernel_tables(clock, P, GradParams("depsilon"))
    f = lambda t: 2.5 * (0.8 ** t - (2 / 3) ** t)  # noqa: E731
    np.testing.assert_allclose(h_orig, [f(1) - f(0), f(2) - f(1), f(3) - f(2), f(4) - f(3)], rtol=1e-13)
    # with dt = 0.5 the decays are 1 - dt/tau
    syn_half, h_half = discrete.kernel_tables(Clock(4, 2.0), P, GradParams("exp", 2.5))
    np.testing.assert_allclose(h_half, 0.8 ** d1, rtol=1e-14)
    np.testing.assert_allclose(syn_half, 2.5 * (0.9 ** d1 - (1 - 0.5 / 3) ** d1), rtol=1e-14)


def _two_input_spike():
    """Inputs a (w 1, amp 1.5) at step 0 and b (w 1, amp 3.0) at step 1: spike at step 1."""
    return one_sample([0.0, 1.0], [0, 1], [1.5, 3.0], 2), np.array([[1.0, 1.0]])


def test_backward_by_hand_exponential():
    st, W = _two_input_spike()
    out, rec = discrete.dense_forward(st, W, P, Clock(3, 3.0))
    assert out.times.tolist() == [1.0]
    G = 0.7
    g = discrete.clock_backward(rec, [G], GradParams("exp", 2.5, max_dt_du=None))
    # D = g trace at the spike: (1.5 * 0.6 + 3.0) * 0.6; shares h[1] x / D, h[0] x / D
    D = (1.5 * 0.6 + 3.0) * 0.6
    np.testing.assert_allclose(g.d_times, [G * 0.36 * 1.5 / D, G * 0.6 * 3.0 / D], rtol=1e-13)
    assert math.isclose(g.d_times.sum(), G, rel_tol=1e-13)          # Eq. 6 on the clock
    du = rec.du[1, 0, 0]
    syn_a = 2.5 * (np.array([0.8, 0.64]) - np.array([2 / 3, 4 / 9]))
    np.testing.assert_allclose(g.d_weight, [[G * (-1 / du) * syn_a[1] * 1.5, G * (-1 / du) * syn_a[0] * 3.0]],
                               rtol=1e-13)
    assert g.flags.tolist() == [0]


def test_dt_du_cap_and_input_grad_scale():
    st, W = _two_input_spike()
    out, rec = discrete.dense_forward(st, W, P, Clock(3, 3.0))
    du = rec.du[1, 0, 0]
    cap = 0.5 / du                                          # smaller than 1/du: clamps
    g = discrete.clock_backward(rec, [1.0], GradParams("exp", 2.5, max_dt_du=cap, input_grad_scale=0.85))
    free = discrete.clock_backward(rec, [1.0], GradParams("exp", 2.5))
    np.testing.assert_allclose(g.d_weight, free.d_weight * cap * du, rtol=1e-13)
    assert g.flags.tolist() == [4] and g.n_clamped == 1
    np.testing.assert_allclose(g.d_times, 0.85 * free.d_times, rtol=1e-14)
    # with dt = 0.5 the weight path uses -dt/du
    out2, rec2 = discrete.dense_forward(st, W, P, Clock(6, 3.0))
    g2 = discrete.clock_backward(rec2, np.ones(out2.n_events), GradParams("exp", 2.5))
    k = np.flatnonzero(rec2.out[:, 0, 0])[0]
    assert g2.d_weight[0, 1] < 0 and np.isfinite(g2.d_weight).all()
    syn_a, _ = discrete.kernel_tables(rec2.clock, P, GradParams())
    lag_b = k - 2                                           # b sits in step 2 (t = 1, dt = 0.5)
    np.testing.assert_allclose(g2.d_weight[0, 1], -0.5 / rec2.du[k, 0, 0] * syn_a[lag_b] * 3.0, rtol=1e-13)


def test_nonpositive_denominator_dropped():
    # a positive input, then a negative one in the step that fires: the slow potential
    # (tau 20/10) still crosses at step 1, the fast g trace (tau_grad 1.2) is negative there
    params = NeuronParams(20.0, 10.0, 1.0)
    st = one_sample([0.0, 1.0], [0, 1], [9.5, -1.7], 2)
    out, rec = discrete.dense_forward(st, [[1.0, 1.0]], params, Clock(3, 3.0))
    assert out.times.tolist() == [1.0]
    a_g = 1 - 1 / 1.2
    assert (9.5 * a_g - 1.7) * a_g < 0
    gp = GradParams("exp", 1.2, drop_nonpositive=True)
    g = discrete.clock_backward(rec, [1.0], gp)
    assert g.flags.tolist() == [3] and g.n_dropped == 1 and not np.any(g.d_times)
    kept = discrete.clock_backward(rec, [1.0], GradParams("exp", 1.2, drop_nonpositive=False))
    assert kept.flags.tolist() == [2] and math.isclose(kept.d_times.sum(), 1.0, rel_tol=1e-12)


def _forced_record(du_label, out_label):
    """A ClockRecord stand-in for supervision_times: du and out of one sample's label neuron."""
    T = len(du_label)
    du = np.zeros((T, 1, 2))
    du[:, 0, 1] = du_label
    out = np.zeros((T, 1, 2), dtype=np.int8)
    out[:, 0, 1] = out_label
    from types import SimpleNamespace

    return SimpleNamespace(du=du, out=out, clock=Clock(T, float(T)))


def test_supervisory_spike_at_the_last_rising_step():
    sup = discrete.supervision_times
    rec = _forced_record([0.3, 0.2, 0.04, -0.1, 0.06, -0.2], [0] * 6)
    assert sup(rec, [1]).tolist() == [4.0]                      # last du > 0.05
    assert sup(rec, [1], "end").tolist() == [5.0]
    rec = _forced_record([0.01, -0.1, 0.05], [0, 0, 0])         # never rises above 0.05: step 0
    assert sup(rec, [1]).tolist() == [0.0]
    rec = _forced_record([0.0, -0.1, 0.0], [0, 0, 0])           # du[0] == 0: no spike written
    assert np.isnan(sup(rec, [1])).all()
    rec = _forced_record([0.2, 1.2, -0.3], [0, 1, 0])           # on a real spike: none added
    assert np.isnan(sup(rec, [1])).all()
    # with dt = 0.5 the rise must exceed 0.05 dt = 0.025
    rec = _forced_record([0.2, 0.03, 0.02], [0, 0, 0])
    rec.clock = Clock(3, 1.5)
    assert sup(rec, [1]).tolist() == [0.5]
    with pytest.raises(ValueError, match="rule"):
        sup(rec, [1], "middle")


def test_count_loss_without_supervisory_spike_where_nan():
    out = SpikeTrains([1.0, 2.0], [1, 0], [1.0, 1.0], [0, 1, 2], 3)
    cl = count_loss(out, [1, 2], steps=5, t_end=5.0, supervision="last-rise", supervision_times=[np.nan, 3.0])
    assert cl.counts.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert cl.forced.samples.tolist() == [1] and cl.forced.times.tolist() == [3.0]
    end = count_loss(out, [1, 2], steps=5, t_end=5.0, supervision="end", supervision_times=[4.0, np.nan])
    assert end.forced.times.tolist() == [4.0] and end.counts.tolist() == [[0, 2, 0], [1, 0, 0]]


def test_time_weighted_readout():
    # sample 0: neuron 0 spikes at t=0 and t=4 (1.1 + 1.02 = 2.12), neuron 1 at t=1, 2 (1.08 + 1.06)
    # -> 1 wins; sample 1: one spike each at the same time -> tie to the lower index;
    # sample 2: silent -> 0
    out = SpikeTrains([0.0, 1.0, 2.0, 4.0, 3.0, 3.0], [0, 1, 1, 0, 2, 1], np.ones(6), [0, 4, 6, 6], 3)
    assert readout(out, weighting="time", t_end=5.0).tolist() == [1, 1, 0]
    assert readout(out).tolist() == [0, 1, 0]                   # count readout: earlier first spike
    with pytest.raises(ValueError, match="t_end"):
        readout(out, weighting="time")
    with pytest.raises(ValueError, match="weighting"):
        readout(out, weighting="latency")


def _pool_case():
    """One step, a 1 x 2 x 4 input: window 0 = positions (0,0) (0,1) (1,0) (1,1)."""
    geom = PoolGeometry(1, 2, 4, 2)
    # window 0: spikes at (0,1) and (1,0); window 1: spike at (1,3) only
    nrn = [1, 4, 7]
    st = one_sample([0.0, 0.0, 0.0], nrn, [1.0, 1.0, 1.0], 8)
    return geom, st


@pytest.mark.parametrize("kind, amps, back", [
    ("avg", [0.5, 0.25], [0.1 / 4, 0.1 / 4, 0.3 / 4]),
    ("adjusted-avg", [0.5, 0.25], [0.1 / 2, 0.1 / 2, 0.3]),
    ("max", [1.0, 1.0], [0.1, 0.0, 0.3]),                     # first maximal position
])
def test_pooling_rules_by_hand(kind, amps, back):
    geom, st = _pool_case()
    out, rec = discrete.pool_forward(st, geom, kind, Clock(1, 1.0))
    assert out.neurons.tolist() == [0, 1] and out.times.tolist() == [0.0, 0.0]
    np.testing.assert_allclose(out.amplitudes, amps)
    g = discrete.pool_backward(rec, [0.1, 0.3])
    np.testing.assert_allclose(g.d_times, back, rtol=1e-14)
    if kind == "avg":
        assert rec.count.tolist() == [2, 1]


def test_pooling_drops_remainder_and_splits_coincident_events():
    geom = PoolGeometry(1, 3, 3, 2)                  # row 2 and column 2 are cut
    # two events of position 0 in one step (a 0.25 + 0.75) and one in the cut row
    st = one_sample([0.0, 0.0, 0.5], [0, 6, 0], [0.25, 1.0, 0.75], 9)
    out, rec = discrete.pool_forward(st, geom, "adjusted-avg", Clock(1, 1.0))
    assert out.n_events == 1 and out.amplitudes.tolist() == [0.25]
    g = discrete.pool_backward(rec, [0.8])
    # 1/y = 4 <= k^2 + 1: g r / k^2 = 0.8; split 1 : 3 by amplitude; the cut event gets 0
    np.testing.assert_allclose(g.d_times, [0.8 * 0.25, 0.0, 0.8 * 0.75], rtol=1e-14)


def test_binning_rule():
    clock = Clock(4, 2.0)                          # dt = 0.5
    st = SpikeTrains([0.0, 0.49, 0.5, 1.5 - 1e-12, 1.99, 2.0, 0.3], [0, 1, 2, 0, 1, 2, 0],
                     np.ones(7), [0, 6, 7], 3)
    b = discrete.bin_events(st, clock)
    steps = np.full(7, -1)
    steps[b.keep] = b.row_step[b.ev_row]
    # floor(t/dt + 1e-9): 1.5 - 1e-12 falls in step 3 (rounding of a multiple of dt); t = 2 is cut
    assert steps.tolist() == [0, 0, 1, 3, 3, -1, 0]
    assert sorted(b.row_sample[b.ev_row].tolist()) == [0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match=">= 0"):
        discrete.bin_events(SpikeTrains([-0.1], [0], [1.0], [0, 1], 1), clock)


def test_clock_validation():
    with pytest.raises(ValueError, match="steps"):
        Clock(0, 5.0)
    with pytest.raises(ValueError, match="t_end"):
        Clock(5, -1.0)
    with pytest.raises(ValueError, match="tau_s"):
        Clock(2, 6.0).decay(3.0, "tau_s")


# ----------------------------------------------------------------------------------
# u[n] and continuous time
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [5, 17, 80])
def test_discrete_potential_is_continuous_potential_one_step_later(steps, ref):
    """Without spikes u[n] = (A/A') u'((n+1) dt) with tau' = -dt/ln(1 - dt/tau)."""
    t_end = 5.0
    clock = Clock(steps, t_end)
    dt = clock.dt
    rng = np.random.default_rng(steps)
    n_in = 6
    k = rng.integers(0, steps, 9)
    st = SpikeTrains.from_unsorted(k * dt, rng.integers(0, n_in, 9), rng.uniform(-0.05, 0.1, 9),
                                   np.zeros(9, int), 1, n_in)
    W = rng.uniform(0, 1, (3, n_in))
    out, rec = discrete.dense_forward(st, W, P, clock)
    assert out.n_events == 0
    u = np.cumsum(rec.du, axis=0)[:, 0, :]                      # (T, n_out)
    tm, ts = (-dt / math.log(1 - dt / tau) for tau in (P.tau_m, P.tau_s))
    A, A2 = P.amplitude, tm / (tm - ts)
    c = W[:, st.neurons] * st.amplitudes                        # (n_out, n_events)
    grid = (np.arange(steps) + 1) * dt
    cont = ref.eps(grid[:, None] - st.times[None, :], tm, ts) @ c.T
    np.testing.assert_allclose(u, A / A2 * cont, rtol=1e-10, atol=1e-15)


def test_spike_times_converge_to_continuous_time():
    """One neuron, inputs on a fine grid: the error of the first spike time shrinks with dt."""
    rng = np.random.default_rng(3)
    times = np.sort(rng.choice(np.arange(0, 4.0, 0.0625), 12, replace=False))
    amps = rng.uniform(0.2, 0.6, 12)
    st = one_sample(times, np.arange(12), amps, 12)
    W = np.ones((1, 12))
    exact, _ = exact_dense_forward(st, W, P, 5.0)
    assert exact.n_events >= 1
    errs = []
    for steps in (80, 320, 1280, 5120):
        out, _ = discrete.dense_forward(st, W, P, Clock(steps, 5.0))
        assert out.n_events == exact.n_events
        errs.append(np.max(np.abs(out.times - exact.times)))
        assert errs[-1] <= 2 * 5.0 / steps                          # within about a step
    assert errs[-1] < errs[0] / 8


# ----------------------------------------------------------------------------------
# a slow, literal transcription of the official code (dense tensors, loops over steps)
# ----------------------------------------------------------------------------------
def ref_neuron_forward(I, dt, tau_m, tau_s, theta):
    """Official neuron_forward: (delta_u, outputs), I of shape (T, ...)."""
    am, as_ = 1 - dt / tau_m, 1 - dt / tau_s
    A = (1 / tau_s) / (1 / tau_s - 1 / tau_m)
    syn_m = np.zeros(I.shape[1:])
    syn_s = np.zeros(I.shape[1:])
    u_last = np.zeros(I.shape[1:])
    delta_u = np.zeros_like(I)
    outputs = np.zeros_like(I)
    for t in range(I.shape[0]):
        syn_m = (syn_m + I[t]) * am
        syn_s = (syn_s + I[t]) * as_
        u = (syn_m - syn_s) * A
        delta_u[t] = u - u_last
        out = (u >= theta).astype(float)
        u_last = u * (1 - out)
        syn_m = syn_m * (1 - out)
        syn_s = syn_s * (1 - out)
        outputs[t] = out
    return delta_u, outputs


def ref_neuron_backward(grad_delta, outputs, real, I, delta_u, dt, tau_m, tau_s, tau_grad, kernel, cap):
    """Official neuron_backward (grad_in_, grad_w_), the tables built as in global_v.init."""
    T = I.shape[0]
    am, as_ = 1 - dt / tau_m, 1 - dt / tau_s
    f = lambda t: ((am ** t) - (as_ ** t)) * (1 / tau_s) / (1 / tau_s - 1 / tau_m)  # noqa: E731
    syn_a = np.array([f(t + 1) for t in range(T)] + [0.0])       # T + 1 entries, as global_v
    if kernel == "exp":
        ag = 1 - dt / tau_grad
        partial_a = -np.array([ag ** (t + 1) for t in range(T)] + [0.0])
        syn_grad = np.zeros(I.shape[1:])
        delta_u_t = np.zeros_like(I)
        for t in range(T):                                   # the forward's syn_grad trace
            syn_grad = (syn_grad + I[t]) * ag
            delta_u_t[t] = syn_grad
            syn_grad = syn_grad * (1 - real[t])
    else:
        partial_a = -np.array([f(t + 1) - f(t) for t in range(T)] + [0.0])
        delta_u_t = delta_u
    grad_in_ = np.zeros_like(I)
    grad_w_ = np.zeros_like(I)
    pw = np.zeros(I.shape[1:])
    pt = np.zeros(I.shape[1:])
    delta_t = np.zeros(I.shape[1:], dtype=int)
    spiked = np.zeros(I.shape[1:])
    with np.errstate(divide="ignore"):
        for t in range(T - 1, -1, -1):
            out = outputs[t]
            spiked += (1 - spiked) * out
            partial_u = np.clip(-dt / delta_u[t], -cap, 0)
            partial_u_t = np.clip(-1 / delta_u_t[t], -1e300, 0)
            pw = pw * (1 - out) + grad_delta[t] * partial_u * out
            pt = pt * (1 - out) + grad_delta[t] * partial_u_t * out
            delta_t = (delta_t + 1) * (1 - out).astype(int)
            grad_in_[t] = pt * partial_a[delta_t] * spiked
            grad_w_[t] = pw * syn_a[delta_t] * spiked
    return grad_in_, grad_w_


def ref_pool_forward(x, k, kind):
    """(T, S, C, H, W) -> pooled (T, S, C, H//k, W//k) (torch avg_pool2d / max_pool2d)."""
    T, S, C, H, W = x.shape
    ho, wo = H // k, W // k
    win = x[..., :ho * k, :wo * k].reshape(T, S, C, ho, k, wo, k)
    return win.max(axis=(4, 6)) if kind == "max" else win.mean(axis=(4, 6))


def ref_pool_backward(g, x, y, k, kind):
    """Official pooling backward: avg g/k^2 everywhere, max to the first maximal position,
    adjusted_avg g (1/y, 0 where > k^2 + 1) / k^2 everywhere."""
    gx = np.zeros_like(x)
    T, S, C, ho, wo = y.shape
    for idx in np.ndindex(T, S, C, ho, wo):
        t, s, c, oy, ox = idx
        block = x[t, s, c, oy * k:(oy + 1) * k, ox * k:(ox + 1) * k]
        if kind == "avg":
            gx[t, s, c, oy * k:(oy + 1) * k, ox * k:(ox + 1) * k] = g[idx] / k ** 2
        elif kind == "max":
            dy, dx = divmod(int(np.argmax(block)), k)
            gx[t, s, c, oy * k + dy, ox * k + dx] = g[idx]
        else:
            r = 1 / y[idx] if y[idx] != 0 else np.inf
            gx[t, s, c, oy * k:(oy + 1) * k, ox * k:(ox + 1) * k] = g[idx] * (0.0 if r > k * k + 1 else r) / k ** 2
    return gx


def ref_conv_matrix(K, c_in, h, w):
    """Dense (n_out, n_in) matrix of a valid, stride-1 convolution (written by hand)."""
    c_out, _, k, _ = K.shape
    ho, wo = h - k + 1, w - k + 1
    M = np.zeros((c_out * ho * wo, c_in * h * w))
    for co, oy, ox, ci, dy, dx in np.ndindex(c_out, ho, wo, c_in, k, k):
        M[(co * ho + oy) * wo + ox, (ci * h + oy + dy) * w + ox + dx] = K[co, ci, dy, dx]
    return M


def ref_official_network(x, layers, labels, dt, p, gp, desired, undesired, loss_steps, rule):
    """Forward, count loss with the supervisory spike (official rule), backward.

    x : (T, S, n_in) dense input. layers : list of ("conv", K, (c_in, h, w)) | ("pool", k, kind,
    (c, h, w)) | ("dense", W). Returns (spike rasters per layer, weight gradients per layer
    (None for pooling), grad of the input).
    """
    T, S, _ = x.shape
    acts, saved = [x], []
    for lay in layers:
        inp = acts[-1]
        if lay[0] == "pool":
            _, k, kind, shape = lay
            xi = inp.reshape(T, S, *shape)
            y = ref_pool_forward(xi, k, kind)
            saved.append((xi, y))
            acts.append(y.reshape(T, S, -1))
            continue
        W = lay[1] if lay[0] == "dense" else ref_conv_matrix(lay[1], *lay[2])
        I = inp @ W.T
        du, out = ref_neuron_forward(I, dt, p.tau_m, p.tau_s, p.threshold)
        saved.append((I, du, out.copy(), W))
        acts.append(out)
    # supervisory spike on the label neuron: last step with du > 0.05 dt, else 0; written if du != 0
    I, du, real, W = saved[-1]
    out = real.copy()
    rows = np.arange(S)
    if rule != "none":
        is_inc = (du[:, rows, labels] > 0.05 * dt).astype(float)
        i1 = (np.argmax(is_inc * np.arange(1, T + 1)[:, None], axis=0) if rule == "last-rise"
              else np.full(S, T - 1))
        out[i1, rows, labels] = (du[i1, rows, labels] != 0).astype(float)
    counts = out.sum(axis=0)
    target = np.full(counts.shape, undesired)
    target[rows, labels] = desired
    delta = (counts - target) / loss_steps
    delta[((target == desired) & (delta > 0)) | ((target == undesired) & (delta < 0))] = 0
    grad = -np.repeat(delta[None], T, axis=0)            # loss_reverse: G = -delta at every step
    grads_w = [None] * len(layers)
    for l in range(len(layers) - 1, -1, -1):
        lay = layers[l]
        if lay[0] == "pool":
            xi, y = saved[l]
            grad = ref_pool_backward(grad.reshape(y.shape), xi, y, lay[1], lay[2]).reshape(T, S, -1)
            continue
        I, du, real, W = saved[l]
        outputs = out if l == len(layers) - 1 else real
        gd = grad * outputs
        gin, gw = ref_neuron_backward(gd, outputs, real, I, du, dt, p.tau_m, p.tau_s, gp.tau_grad, gp.kernel,
                                      gp.max_dt_du if gp.max_dt_du is not None else np.inf)
        inp = acts[l]
        grad = (gin @ W) * inp * gp.input_grad_scale
        gW = np.einsum("tsi,tsj->ij", gw, inp)
        if lay[0] == "conv":
            K = lay[1]
            gW = np.array([np.sum(gW * ref_conv_matrix(np.eye(K.size)[e].reshape(K.shape), *lay[2]))
                           for e in range(K.size)]).reshape(K.shape)
        grads_w[l] = gW
    return [a for a in acts[1:]], grads_w, grad


def dense_input(inputs: SpikeTrains, clock: Clock) -> np.ndarray:
    x = np.zeros((clock.steps, inputs.n_samples, inputs.n_neurons))
    step = clock.step_of(inputs.times)
    ok = step < clock.steps
    np.add.at(x, (step[ok], inputs.samples[ok], inputs.neurons[ok]), inputs.amplitudes[ok])
    return x


def raster(st: SpikeTrains, clock: Clock, values=False) -> np.ndarray:
    r = np.zeros((clock.steps, st.n_samples, st.n_neurons))
    r[clock.step_of(st.times), st.samples, st.neurons] = st.amplitudes if values else 1.0
    return r


@pytest.mark.parametrize("pool", ["adjusted-avg", "max", "avg"])
@pytest.mark.parametrize("kernel, t_end, steps, rule", [("exp", 5.0, 5, "last-rise"),
                                                         ("depsilon", 5.0, 5, "end"),
                                                         ("exp", 4.0, 10, "last-rise")])
def test_network_against_literal_official_code(pool, kernel, t_end, steps, rule):
    rng = np.random.default_rng(11)
    net = Network.from_arch("3C3-P2-12", 4, input_shape=(1, 8, 8), weight_norm=False, seed=2,
                            t_end=t_end, pool=pool)
    net.layers[0].weight = net.layers[0].weight * 3.0 + 0.15
    net.layers[2].weight = net.layers[2].weight * 6.0 + 0.3
    net.layers[3].weight = net.layers[3].weight * 4.0 + 0.25
    net.set_time("discrete", steps)
    clock = Clock(steps, t_end)
    images = rng.uniform(-0.5, 1.5, (6, 64))
    inputs = encode.current(images, steps=int(t_end))            # impulses at t = 0..t_end-1
    labels = rng.integers(0, 4, 6)
    gp = GradParams(kernel, 2.5, max_dt_du=4.0, input_grad_scale=0.85, drop_nonpositive=True)
    result = net.forward(inputs)
    sup_t = net.supervision_times(result, labels, rule)
    cl = count_loss(result.spikes[-1], labels, steps=steps, t_end=t_end, desired=3, undesired=1,
                    supervision=rule, supervision_times=sup_t)
    grads = net.backward(result, cl.grad, kernel=kernel, tau_grad=2.5, max_dt_du=4.0, input_grad_scale=0.85,
                         drop_nonpositive=True, forced=cl.forced)
    layers = [("conv", net.layers[0].weight, (1, 8, 8)), ("pool", 2, pool, (3, 6, 6)),
              ("dense", net.layers[2].weight), ("dense", net.layers[3].weight)]
    acts, gws, gx = ref_official_network(dense_input(inputs, clock), layers, labels, clock.dt, net.params, gp,
                                         3, 1, steps, rule)
    assert all(s.n_events for s in result.spikes), [s.n_events for s in result.spikes]
    for l, (st, want) in enumerate(zip(result.spikes, acts)):
        np.testing.assert_array_equal(raster(st, clock, values=(l == 1)), want, err_msg=f"layer {l}")
    for l in (0, 2, 3):
        np.testing.assert_allclose(grads.weights[l], gws[l], rtol=1e-9, atol=1e-12, err_msg=f"layer {l}")
    assert np.any(gws[0] != 0)
    want_events = gx[clock.step_of(inputs.times), inputs.samples, inputs.neurons]
    np.testing.assert_allclose(grads.events[0], want_events, rtol=1e-9, atol=1e-12)
    # every hidden spike's gradient is the official grad of its (step, neuron)
    for l in (0, 1, 2):
        assert grads.events[l + 1].shape == (result.spikes[l].n_events,)


def test_every_step_gives_the_same_results():
    rng = np.random.default_rng(4)
    net = Network.from_arch("30-20", 5, seed=1, t_end=5.0)
    inputs = encode.current(rng.uniform(-0.5, 2.0, (5, 30)), steps=5)
    res = {}
    for every in (False, True):
        net.set_time("discrete", 20, every_step=every)
        r = net.forward(inputs)
        g = net.backward(r, np.linspace(-1, 1, r.spikes[-1].n_events), max_dt_du=4.0)
        res[every] = (r, g)
    for a, b in zip(res[False][0].spikes, res[True][0].spikes):
        assert a.equals(b)
    for a, b in zip(res[False][1].weights, res[True][1].weights):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res[False][1].events[0], res[True][1].events[0], rtol=1e-10, atol=1e-14)


def test_sparse_and_dense_input_paths_agree(monkeypatch):
    rng = np.random.default_rng(6)
    st = SpikeTrains.from_unsorted(rng.uniform(0, 5, 40), rng.integers(0, 25, 40), np.ones(40),
                                   rng.integers(0, 3, 40), 3, 25)
    W = rng.normal(0.4, 0.5, (7, 25))
    clock = Clock(25, 5.0)
    outs = []
    for density in (0.0, 1.1):                                  # dense BLAS path / sparse scatter path
        monkeypatch.setattr(discrete, "DENSE_INPUT_DENSITY", density)
        out, rec = discrete.dense_forward(st, W, P, clock)
        assert (rec.X is not None) == (density == 0.0)
        g = discrete.clock_backward(rec, np.arange(out.n_events) % 3 - 1.0, GradParams(max_dt_du=4.0))
        outs.append((out, g))
    assert outs[0][0].equals(outs[1][0]) and outs[0][0].n_events
    for name in ("d_weight", "d_times", "d_amplitudes"):
        np.testing.assert_allclose(getattr(outs[0][1], name), getattr(outs[1][1], name), rtol=1e-10, atol=1e-13)


def test_gradient_sum_conserved_without_stabilisers():
    """Eq. 8 on the clock: without the 0.85 scale and without supervisory spikes the total
    gradient passes through dense, conv and adjusted-avg pooling unchanged."""
    rng = np.random.default_rng(9)
    net = Network.from_arch("3C3-P2-10", 4, input_shape=(1, 8, 8), seed=5, pool="adjusted-avg")
    net.layers[0].gain[:] = 4.0
    net.layers[2].gain[:] = 6.0
    net.layers[3].gain[:] = 6.0
    net.set_time("discrete", 5)
    r = net.forward(encode.current(rng.uniform(0, 1.5, (4, 64)), steps=5))
    assert all(s.n_events for s in r.spikes)
    g_out = rng.uniform(-1, 1, r.spikes[-1].n_events)
    grads = net.backward(r, g_out, drop_nonpositive=False)
    for ev in grads.events[1:]:
        assert math.isclose(ev.sum(), g_out.sum(), rel_tol=1e-9)
    scaled = net.backward(r, g_out, input_grad_scale=0.85)
    # events[1] feeds the pooling: two dense layers above it scale by 0.85, pooling does not
    assert math.isclose(scaled.events[1].sum(), 0.85 ** 2 * g_out.sum(), rel_tol=1e-9)


# ----------------------------------------------------------------------------------
# network, configuration, checkpoints, training
# ----------------------------------------------------------------------------------
def test_set_time_validation_and_defaults():
    net = Network.from_arch("20-5", 3, seed=0, t_end=5.0)
    assert net.time == "continuous" and net.readout_weighting == "count"
    net.set_time("discrete")
    assert net.steps == 5 and net.readout_weighting == "time"
    with pytest.raises(ValueError, match="time"):
        net.set_time("hybrid")
    with pytest.raises(ValueError, match="must be smaller than tau_m"):
        net.set_time("discrete", 1)                             # dt = 5 = tau_m
    net.set_time("continuous")
    assert net.steps is None
    r = net.forward(encode.current(np.ones((2, 20)), steps=5))
    assert r.time == "continuous"


def test_config_time_field_and_old_checkpoints(tmp_path):
    cfg = TrainConfig(arch="16-6", time="discrete", steps=5)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    old = json.loads(TrainConfig(arch="16-6").to_json())
    del old["time"]
    assert TrainConfig.from_json(json.dumps(old)).time == "continuous"
    with pytest.raises(ValueError, match="time"):
        TrainConfig(time="clock")
    with pytest.raises(ValueError, match="tau_grad"):
        TrainConfig(time="discrete", tau_grad=0.9)
    net = build_network(cfg, 4, (16,))
    assert net.time == "discrete" and net.steps == 5 and net.t_end == 5.0
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, config=cfg, network=net, epoch=0, history=[], optim_state=None,
                    dataset_checksum="x", rng_state=None)
    ck = load_checkpoint(path)
    assert ck.network.time == "discrete" and ck.network.steps == 5


def test_training_steps_in_discrete_time_reduce_the_loss():
    from eventsnn.optim import AdamW
    from eventsnn.train import (
        apply_gradients,
        batch_gradients,
        encode_images,
        init_gains,
    )

    rng = np.random.default_rng(0)
    cfg = TrainConfig(dataset="synthetic", arch="16-12", time="discrete", steps=5, supervision="last-rise",
                      lr=5e-3, desired=4, undesired=0)
    images = rng.uniform(0, 1, (20, 16))
    labels = (images[:, :8].sum(1) > images[:, 8:].sum(1)).astype(int)
    net = build_network(cfg, 2, (16,))
    init_gains(net, encode_images(images, cfg), 1.0)
    opt = AdamW([a for _, a in net.parameters()], lr=cfg.lr, weight_decay=0.0)
    losses = []
    for _ in range(15):
        grads, stats = batch_gradients(net, images, labels, cfg)
        apply_gradients(opt, grads, cfg)
        losses.append(stats.loss)
        assert stats.n_windows > 0
    assert losses[-1] < 0.7 * losses[0], losses


def test_inspection_refuses_discrete_networks_with_one_clear_error():
    from eventsnn import inspect as ins

    rng = np.random.default_rng(1)
    net = Network.from_arch("16-8", 3, seed=0).set_time("discrete", 5)
    x = encode.current(rng.uniform(0, 2, (2, 16)), steps=5)
    r = net.forward(x)
    with pytest.raises(ins.ContinuousTimeOnly, match="discrete clock"):
        ins.gradcheck(net, x)
    with pytest.raises(ins.ContinuousTimeOnly):
        ins.share_sums(net, r, 0)
    with pytest.raises(ins.ContinuousTimeOnly):
        ins.reverse_gradient(net, r, np.ones(r.spikes[-1].n_events))
    with pytest.raises(ins.ContinuousTimeOnly):
        ins.simulate(net, x.sample(0), membrane_points=10)
    sim = ins.simulate(net, x.sample(0))                       # spikes only: fine
    assert sim.spikes[0].n_events == net.forward(x.sample(0)).spikes[0].n_events
    rep = ins.verify_invariance(net, r, np.ones(r.spikes[-1].n_events))
    assert rep.conserved and all(l.spikes_checked == 0 for l in rep.layers)
    sums = ins.gradient_sums(net.backward(r, np.ones(r.spikes[-1].n_events)), np.ones(r.spikes[-1].n_events))
    assert all(math.isclose(s, sums[0], rel_tol=1e-9) for s in sums)


def test_forced_spikes_merge_like_the_official_raster():
    """A supervisory spike that falls on a real spike is not added; one in an empty step
    closes the window of the later spike (official backward on the merged raster)."""
    st = one_sample([0.0, 1.0, 3.0], [0, 0, 0], [1.5, 3.0, 4.0], 1)
    out, rec = discrete.dense_forward(st, [[1.0]], P, Clock(5, 5.0))
    spikes = out.times.tolist()
    assert 1.0 in spikes
    gp = GradParams("exp", 2.5)
    base = discrete.clock_backward(rec, np.ones(out.n_events), gp)
    same = discrete.clock_backward(rec, np.ones(out.n_events), gp,
                                   forced=ForcedSpikes([0], [0], [1.0], [5.0]))
    np.testing.assert_array_equal(base.d_times, same.d_times)          # on a real spike: ignored
    extra = discrete.clock_backward(rec, np.ones(out.n_events), gp,
                                    forced=ForcedSpikes([0], [0], [0.0], [2.0]))
    # the forced spike at step 0 takes the event of step 0 (share h[0] x / D = 1 -> 2.0)
    assert math.isclose(extra.d_times[0], 2.0, rel_tol=1e-12)
    # it does not reset the neuron: the real spike at step 1 keeps the step-0 input in its
    # denominator D (official syn_grad trace), though its window is step 1 alone
    D = (1.5 * 0.6 + 3.0) * 0.6
    assert math.isclose(extra.d_times[1], 0.6 * 3.0 / D, rel_tol=1e-12)
    assert math.isclose(base.d_times[1], 0.6 * 3.0 / D, rel_tol=1e-12)
    assert math.isclose(base.d_times[0] + base.d_times[1], 1.0, rel_tol=1e-12)
