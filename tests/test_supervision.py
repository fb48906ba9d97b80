"""The official-code placement of the supervisory spike, in continuous time ("last-rise")."""

import numpy as np
import pytest

from eventsnn import NeuronParams, SpikeTrains
from eventsnn.engine import sweep
from eventsnn.engine.sweep import dense_forward, last_rise_times
from eventsnn.kernels import deps
from eventsnn.loss import count_loss

T_END = 6.0


def reference_last_rise(t_in, c, t_prev, params, grid=200001):
    """Latest grid time in (t_prev, T_END] where u'(t) > 0, by brute force over the kernels."""
    t = np.linspace(max(t_prev, 0.0), T_END, grid)[1:]
    live = (t_in > t_prev)
    du = np.zeros_like(t)
    for tm, cm in zip(t_in[live], c[live]):
        lag = t - tm
        du += np.where(lag >= 0, cm * deps(np.maximum(lag, 0.0), params.tau_m, params.tau_s), 0.0)
    rising = np.flatnonzero(du > 0)
    return (t[rising[-1]] if rising.size else T_END), t[1] - t[0]


@pytest.mark.parametrize("density", [0.05, 0.0])  # sparse path / dense path
def test_last_rise_matches_brute_force(monkeypatch, density):
    monkeypatch.setattr(sweep, "DENSE_INPUT_DENSITY", density)
    rng = np.random.default_rng(5)
    params = NeuronParams()
    n_in, n_out = 12, 8
    times = np.sort(rng.uniform(0, 5.0, 30))
    src = rng.integers(0, n_in, 30)
    st = SpikeTrains(times, src, np.ones(30), [0, 30], n_in)
    W = rng.normal(0.15, 0.6, (n_out, n_in))
    out, rec = dense_forward(st, W, params, T_END)
    got = last_rise_times(rec, np.zeros(n_out, int), np.arange(n_out))
    assert np.sum(got < T_END - 0.1) >= 2  # the case exercises peaks before the window end
    for i in range(n_out):
        mine = out.times[out.neurons == i]
        t_prev = mine.max() if mine.size else -np.inf
        want, step = reference_last_rise(times, W[i, src], t_prev, params)
        assert abs(got[i] - want) <= 2 * step, f"neuron {i}: {got[i]} vs {want}"


def test_count_loss_places_forced_spikes_at_given_times():
    out = SpikeTrains([1.0, 2.0], [0, 1], [1.0, 1.0], [0, 2], 3)
    cl = count_loss(out, [2], steps=5, t_end=5.0, supervision="last-rise", supervision_times=[3.25])
    assert cl.forced.times.tolist() == [3.25] and cl.forced.neurons.tolist() == [2]
    assert cl.counts[0].tolist() == [1, 1, 1]  # the forced spike counts
    with pytest.raises(ValueError, match="supervision_times"):
        count_loss(out, [2], steps=5, t_end=5.0, supervision="last-rise")
