"""The inspection library (eventsnn.inspect): Eq. 6 and Eq. 8 through random dense + conv +
pool networks, the silent share lost by plain avg pooling, the gradient check, one spike's
shares, membrane potentials, the reverse-gradient count and the HDF5 simulation files.

Every quantity is checked against a computation written here from the definitions
(docs/continuous-time-model.md), not against the library's own totals.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import eventsnn as es
from eventsnn.inspect import (
    _before_counts,
    _occurrence,
    gradcheck,
    gradient_sums,
    layer_name,
    load_simulation,
    membrane_potential,
    reverse_gradient,
    save_simulation,
    share_sums,
    simulate,
    spike_flow,
    spike_gradients,
    spike_index,
    verify_invariance,
)
from eventsnn.io import FileFormatError, save_spike_trains
from eventsnn.network import Network
from eventsnn.train import init_gains

ARCH = "4C3-P2-6C3-12"  # conv -> pool -> conv -> dense -> output, on (1, 10, 10) images


def images(rng, n, side=10, T=5):
    x = rng.normal(0.3, 0.9, (n, side * side)) * (rng.uniform(size=(n, side * side)) < 0.85)
    return es.encode.current(x, steps=T)


@pytest.fixture(scope="module")
def nets():
    """A random conv + pool + dense network per pooling rule, gains set by binary search,
    and its forward pass on 4 images (the same weights for every rule)."""
    out = {}
    for pool in ("max", "adjusted-avg", "avg"):
        rng = np.random.default_rng(11)
        net = Network.from_arch(ARCH, n_classes=3, input_shape=(10, 10), seed=5, pool=pool)
        init_gains(net, images(rng, 12), avg_spike_init=1.0)
        inputs = images(rng, 4)
        result = net.forward(inputs)
        assert all(s.n_events >= 5 for s in result.spikes), [s.n_events for s in result.spikes]
        out[pool] = (net, inputs, result)
    return out


def output_grad(result, seed=0):
    """A loss gradient at the output: G of both signs, summing far from 0."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 1.5, result.spikes[-1].n_events)


def ref_share_sums(net, result, layer, kernel, tau_grad=2.5):
    """Eq. 6 written out for every spike of a dense or conv layer: the neuron's input
    events (its receptive field for conv), windows (t_{k-1}, t_k], shares c h / sum c h."""
    from eventsnn.engine.conv import dense_equivalent

    lay = net.layers[layer]
    W = result.records[layer].engine.weight
    W = dense_equivalent(W, lay.geometry) if lay.kind == "conv" else W
    reach = (W != 0.0) if lay.kind == "conv" else np.ones_like(W, dtype=bool)
    inp = result.inputs if layer == 0 else result.spikes[layer - 1]
    out = result.spikes[layer]
    p = net.params
    sums = []
    for s in range(out.n_samples):
        si, so = inp.sample(s), out.sample(s)
        for i in np.unique(so.neurons):
            tk_all = so.times[so.neurons == i]
            m = reach[i, si.neurons] & (si.times <= result.t_end)
            t, c = si.times[m], W[i, si.neurons[m]] * si.amplitudes[m]
            prev = -np.inf
            for tk in tk_all:
                win = (t > prev) & (t <= tk)
                prev = tk
                hv = es.h(tk - t[win], kernel, tau_m=p.tau_m, tau_s=p.tau_s, tau_grad=tau_grad)
                sums.append(np.sum(c[win] * hv / np.sum(c[win] * hv)))
    return np.array(sums)


# ----------------------------------------------------------------------------------
# Eq. 8 and Eq. 6 through the network
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
@pytest.mark.parametrize("pool", ["max", "adjusted-avg"])
def test_invariance_holds_through_conv_pool_dense(nets, pool, kernel):
    net, _, result = nets[pool]
    g = output_grad(result)
    rep = verify_invariance(net, result, g, kernel=kernel, max_spikes=None, rng=0)
    # the totals, from the raw backward, layer by layer (Eq. 8)
    grads = net.backward(result, g, kernel=kernel, input_grad=True)
    total = g.sum()
    assert abs(total) > 0.5
    for ev in grads.events:
        assert abs(ev.sum() - total) <= 1e-9 * abs(total)
    assert rep.conserved and rep.matches_theory
    assert rep.total == pytest.approx(total, rel=1e-15)
    assert rep.input_sum == pytest.approx(grads.events[0].sum(), rel=1e-15)
    assert [r.layer for r in rep.layers] == list(range(len(net.layers) - 1, -1, -1))
    for r in rep.layers:
        assert r.rel_error <= 1e-9 and r.expected_loss == 0.0 and r.dropped == 0
        if r.kind == "pool":
            assert r.worst_share_error is None and r.spikes_checked == 0
        else:
            # every spike checked (max_spikes=None), and Eq. 6 holds for each, as written out here
            ref = ref_share_sums(net, result, r.layer, kernel)
            assert r.spikes_checked == ref.size == result.spikes[r.layer].n_events
            assert np.max(np.abs(ref - 1.0)) <= 1e-9
            assert r.worst_share_error <= 1e-9
    assert gradient_sums(grads, g) == pytest.approx([rep.total] + [r.sum_in for r in rep.layers], rel=1e-15)


@pytest.mark.parametrize("kernel", ["exp", "depsilon"])
def test_avg_pooling_loses_exactly_the_silent_share(nets, kernel):
    net, _, result = nets["avg"]
    g = output_grad(result, seed=1)
    rep = verify_invariance(net, result, g, kernel=kernel, rng=0)
    assert not rep.conserved and rep.matches_theory
    per_layer, grads = spike_gradients(net, result, g, kernel=kernel)
    pools = [r for r in rep.layers if r.kind == "pool"]
    assert pools
    for r in pools:
        rec = result.records[r.layer]
        k2 = net.layers[r.layer].k ** 2
        # positions of each pooled event's window that spiked at its time, counted from the
        # forward's map input event -> pooled event (not from the record's own count)
        n_spiking = np.bincount(rec.pool_of[rec.pool_of >= 0], minlength=result.spikes[r.layer].n_events)
        g_out = per_layer[r.layer]
        silent_share = np.sum(g_out * (k2 - n_spiking) / k2)
        lost = g_out.sum() - grads.events[r.layer].sum()
        assert silent_share > 0.3 * abs(g_out.sum())
        assert lost == pytest.approx(silent_share, rel=1e-12)
        assert r.loss == pytest.approx(silent_share, rel=1e-12)
        assert r.expected_loss == pytest.approx(silent_share, rel=1e-12)
        assert not r.conserved and r.rel_error <= 1e-9
    for r in rep.layers:
        if r.kind != "pool":
            assert r.conserved and r.worst_share_error <= 1e-9


def coincident_net(pool):
    """1x1 conv -> 2x2 pooling on an image made of blocks of equal pixels: the positions of a
    block spike at bitwise-equal times, so pooling windows see 1, 2 or 4 coincident spikes."""
    img = np.zeros((6, 6))
    img[0:2, 0:2] = 1.5
    img[0:2, 2:4] = [[1.5, 0], [0, 1.5]]
    img[0:2, 4:6] = [[1.5, 0], [0, 0]]
    img[2:4, 0:2] = [[2.0, 2.0], [1.0, 0]]
    img[2:4, 2:4] = 0.9
    img[4:6, :] = [[1.2, 0.4, 1.2, 0.3, 2.2, 2.2], [0.8, 0.8, 1.7, 0, 0, 0]]
    net = Network.from_arch("2C1-P2-6", n_classes=2, input_shape=(1, 6, 6), seed=0, pool=pool,
                            weight_norm=False)
    net.layers[0].weight = np.array([1.0, 0.7]).reshape(2, 1, 1, 1)
    net.layers[2].weight = np.abs(net.layers[2].weight) * 3 + 0.2
    net.layers[3].weight = np.abs(net.layers[3].weight) * 3 + 0.3
    return net, net.forward(es.encode.current(img.reshape(1, -1), steps=5))


@pytest.mark.parametrize("pool", ["max", "adjusted-avg", "avg"])
def test_invariance_with_coincident_spikes_in_pooling(pool):
    net, result = coincident_net(pool)
    g = np.random.default_rng(0).uniform(0.2, 1.0, result.spikes[-1].n_events)
    rep = verify_invariance(net, result, g, kernel="exp", max_spikes=None)
    assert rep.matches_theory and rep.conserved == (pool != "avg")
    # n coincident spikes per pooled event, by hand from the conv spikes (window, time)
    conv, pooled = result.spikes[0], result.spikes[1]
    c, rem = np.divmod(conv.neurons, 36)
    window = c * 9 + (rem // 6 // 2) * 3 + (rem % 6) // 2
    n_of = {}
    for w, t in zip(window, conv.times):
        n_of[(int(w), float(t))] = n_of.get((int(w), float(t)), 0) + 1
    n = np.array([n_of[(int(w), float(t))] for w, t in zip(pooled.neurons, pooled.times)])
    assert {1, 2, 4} <= set(n.tolist())
    per_layer, _ = spike_gradients(net, result, g)
    silent = float(np.sum(per_layer[1] * (4 - n) / 4))
    row = next(r for r in rep.layers if r.kind == "pool")
    if pool == "avg":
        assert row.loss == pytest.approx(silent, rel=1e-12) and silent > 0.1 * row.sum_out
    else:
        assert abs(row.loss) <= 1e-12 * abs(row.sum_out)


def test_invariance_with_the_supervisory_spike(nets):
    """The count loss with its supervisory spikes: they count as output spikes when their
    window holds an input event, and the total is conserved."""
    from eventsnn.config import TrainConfig
    from eventsnn.inspect import forced_windows, loss_gradient

    net, _, result = nets["max"]
    cfg = TrainConfig(arch=ARCH, pool="max")
    labels = np.arange(result.spikes[-1].n_samples) % 3
    loss = loss_gradient(result, labels, cfg)
    rep = verify_invariance(net, result, loss.grad, forced=loss.forced, rng=0)
    use = forced_windows(net, result, loss.forced)
    assert rep.supervisory == (int(use.sum()), labels.size) and use.any()
    want = loss.grad.sum() + loss.forced.grads[use].sum()
    assert rep.total == pytest.approx(want, rel=1e-14)
    grads = net.backward(result, loss.grad, forced=loss.forced, input_grad=True)
    assert grads.events[0].sum() == pytest.approx(want, rel=1e-9)
    assert rep.conserved and rep.matches_theory


def test_share_sums_sample_spikes(nets):
    net, _, result = nets["max"]
    idx, sums = share_sums(net, result, 0, max_spikes=7, rng=3)
    assert idx.size == 7 and np.all(np.diff(idx) > 0) and np.all(np.abs(sums - 1) < 1e-12)
    with pytest.raises(ValueError, match="pooling"):
        share_sums(net, result, 1)


# ----------------------------------------------------------------------------------
# one spike
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [0, 2, 3, 4])
def test_spike_flow_shares_sum_to_one_and_split_the_gradient(nets, layer):
    net, _, result = nets["adjusted-avg"]
    g = output_grad(result)
    per_layer, _ = spike_gradients(net, result, g, kernel="exp")
    out = result.spikes[layer]
    p = net.params
    for k in np.random.default_rng(layer).choice(out.n_events, size=min(5, out.n_events), replace=False):
        s, i = int(out.samples[k]), int(out.neurons[k])
        mine = np.flatnonzero((out.samples == s) & (out.neurons == i))
        rank = int(np.flatnonzero(mine == k)[0])
        assert spike_index(out, s, i, rank) == k
        flow = spike_flow(net, result, sample=s, layer=layer, neuron=i, spike=rank, grad=per_layer[layer][k])
        assert flow.time == out.times[k] and flow.grad == per_layer[layer][k]
        assert abs(flow.share_sum - 1.0) < 1e-12 and abs(np.sum(flow.shares) - 1.0) < 1e-12
        assert np.sum(flow.gradient_shares()) == pytest.approx(flow.grad, rel=1e-12, abs=1e-15)
        lo = out.times[mine[rank - 1]] if rank else -np.inf
        assert np.all((flow.times > lo) & (flow.times <= flow.time))
        # u'(t_k) and the shares from the definitions
        lags = flow.time - flow.times
        c = flow.weights * flow.amplitudes
        hv = np.exp(-lags / 2.5)
        np.testing.assert_allclose(flow.shares, c * hv / np.sum(c * hv), rtol=1e-12, atol=1e-15)
        assert flow.slope == pytest.approx(np.sum(c * es.deps(lags, p.tau_m, p.tau_s)), rel=1e-12)
        d = flow.to_dict()
        assert len(d["inputs"]) == flow.times.size and d["share_sum"] == pytest.approx(1.0)
        assert d["gradient_sum"] == pytest.approx(flow.grad, abs=1e-12)


def test_spike_flow_bad_requests(nets):
    net, _, result = nets["max"]
    with pytest.raises(ValueError, match="pooling"):
        spike_flow(net, result, sample=0, layer=1, neuron=0)
    with pytest.raises(IndexError):
        spike_flow(net, result, sample=9, layer=0, neuron=0)
    with pytest.raises(IndexError):
        spike_flow(net, result, sample=0, layer=0, neuron=10 ** 6)
    with pytest.raises(IndexError):
        spike_flow(net, result, sample=0, layer=-1, neuron=0, spike=10 ** 6)
    with pytest.raises(IndexError):
        spike_index(result.spikes[0], 0, 0, 10 ** 6)
    assert layer_name(net, -1) == "output (dense 3)"
    assert layer_name(net, 1) == "pool P2 max -> (4, 4, 4)"
    assert layer_name(net, 0).startswith("conv 4C3")


# ----------------------------------------------------------------------------------
# the membrane potential
# ----------------------------------------------------------------------------------
def test_membrane_potential_reaches_threshold_at_every_spike(nets):
    net, _, result = nets["max"]
    p = net.params
    for layer in (0, 2, 4):
        out = result.spikes[layer]
        k = int(np.argmax(np.bincount(out.samples * out.n_neurons + out.neurons)))
        s, i = divmod(k, out.n_neurons)
        flow_events = spike_flow(net, result, sample=s, layer=layer, neuron=i, spike=0)
        tk = out.sample(s).times[out.sample(s).neurons == i]
        u = membrane_potential(net, result, sample=s, layer=layer, neuron=i, times=tk)
        np.testing.assert_allclose(u, p.threshold, rtol=1e-9)
        # just after a spike u restarts from 0; and the definition by hand before the first one
        after = membrane_potential(net, result, sample=s, layer=layer, neuron=i, times=tk + 1e-9)
        assert np.all(np.abs(after) < 1e-6)
        t = np.linspace(0.0, tk[0], 7)
        c = flow_events.weights * flow_events.amplitudes
        want = [np.sum(c * es.eps(np.where(x >= flow_events.times, x - flow_events.times, -1.0),
                                  p.tau_m, p.tau_s)) for x in t]
        np.testing.assert_allclose(membrane_potential(net, result, sample=s, layer=layer, neuron=i, times=t),
                                   want, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------
# the gradient check
# ----------------------------------------------------------------------------------
def small_dense():
    rng = np.random.default_rng(2)
    net = Network.from_arch("30-16", n_classes=4, seed=3)
    inputs = es.encode.current(rng.normal(0.3, 1.0, (6, 30)), steps=5)
    init_gains(net, inputs, avg_spike_init=1.5)
    return net, inputs


@pytest.mark.parametrize("which", ["dense", "conv"])
def test_gradcheck_passes_on_small_random_networks(nets, which):
    if which == "dense":
        net, inputs = small_dense()
    else:
        net, inputs, _ = nets["adjusted-avg"]
    before = [a.copy() for _, a in net.parameters()]
    rep = gradcheck(net, inputs, weights_per_layer=6, rng=1)
    assert all(np.array_equal(a, b) for (_, a), b in zip(net.parameters(), before))  # restored
    assert rep.passed, rep.to_dict()
    assert [l.layer for l in rep.layers] == [l for l, lay in enumerate(net.layers) if lay.kind != "pool"]
    for lay in rep.layers:
        assert len(lay.indices) >= 4 and lay.max_rel_error <= 1e-5
        assert np.count_nonzero(lay.analytic) >= 3
    d = rep.to_dict()
    assert d["passed"] and len(d["layers"]) == len(rep.layers)


def test_gradcheck_catches_a_wrong_gradient(monkeypatch):
    net, inputs = small_dense()
    backward = Network.backward

    def off_by_one_percent(self, *args, **kwargs):
        grads = backward(self, *args, **kwargs)
        grads.weights[0] *= 1.01
        return grads

    monkeypatch.setattr(Network, "backward", off_by_one_percent)
    rep = gradcheck(net, inputs, weights_per_layer=4, rng=1)
    assert not rep.passed
    assert rep.layers[0].max_rel_error > 5e-3 and rep.layers[1].max_rel_error <= 1e-5


def test_gradcheck_refuses_a_silent_output():
    net = Network.from_arch("5-3", n_classes=2, seed=0)
    silent = es.SpikeTrains.empty(2, 5)
    with pytest.raises(ValueError, match="no output spike"):
        gradcheck(net, silent)


def test_event_structure_helpers():
    rng = np.random.default_rng(0)
    ev_unit = np.sort(rng.integers(0, 5, 60))
    ev_time = np.round(rng.uniform(0, 4, 60), 1)
    sp_unit = rng.integers(0, 6, 40)
    sp_time = np.round(rng.uniform(0, 4, 40), 1)
    want = [np.count_nonzero((ev_unit == u) & (ev_time <= t)) for u, t in zip(sp_unit, sp_time)]
    np.testing.assert_array_equal(_before_counts(ev_unit, ev_time, sp_unit, sp_time), want)
    # sample 0: neuron 1 at 0.2, 0.5, neuron 0 at 0.7; sample 1: neuron 1 at 0.1, 0.3
    st = es.SpikeTrains.from_unsorted([0.5, 0.2, 0.7, 0.1, 0.3], [1, 1, 0, 1, 1], np.ones(5),
                                      [0, 0, 0, 1, 1], 2, 2)
    np.testing.assert_array_equal(st.times, [0.2, 0.5, 0.7, 0.1, 0.3])
    np.testing.assert_array_equal(_occurrence(st), [0, 1, 0, 0, 1])


# ----------------------------------------------------------------------------------
# the reverse-gradient problem
# ----------------------------------------------------------------------------------
def test_reverse_gradient_only_with_depsilon_and_only_beyond_the_kernel_peak():
    """Events over (0, 9] and spikes late in the window: many lags beyond the peak of eps."""
    rng = np.random.default_rng(7)
    net = Network.from_arch("20-15", n_classes=4, seed=1, weight_norm=False, t_end=10.0)
    for layer in net.layers:
        layer.weight = layer.weight * 4.0 + 0.3
    n = 4 * 60
    inputs = es.SpikeTrains.from_unsorted(rng.uniform(0, 9, n), rng.integers(0, 20, n),
                                          rng.uniform(-1, 2, n), np.repeat(np.arange(4), 60), 4, 20)
    result = net.forward(inputs)
    g = rng.uniform(-1.0, 1.0, result.spikes[-1].n_events)
    rep = reverse_gradient(net, result, g, max_spikes=None, rng=0)
    assert rep.ok and rep.kernels == ["depsilon", "exp"]
    exp_t, dep_t = rep.totals("exp"), rep.totals("depsilon")
    assert exp_t["reversed"] == 0 and exp_t["contributions"] > 100
    assert dep_t["reversed"] > 0 and 0 < dep_t["fraction"] < 1
    p = net.params
    peak = p.tau_m * p.tau_s / (p.tau_m - p.tau_s) * np.log(p.tau_m / p.tau_s)
    # the same count written out: terms G_k share_km, reversed where sign != sign(G_k) sign(c)
    for kernel in ("depsilon", "exp"):
        per_layer, _ = spike_gradients(net, result, g, kernel=kernel)
        for layer in range(2):
            row = next(r for r in rep.rows if r.kernel == kernel and r.layer == layer)
            n_terms = n_rev = 0
            out = result.spikes[layer]
            for k in np.flatnonzero(per_layer[layer] != 0):
                s, i = int(out.samples[k]), int(out.neurons[k])
                mine = np.flatnonzero((out.samples == s) & (out.neurons == i))
                flow = spike_flow(net, result, sample=s, layer=layer, neuron=i,
                                  spike=int(np.flatnonzero(mine == k)[0]), kernel=kernel)
                c = flow.weights * flow.amplitudes
                if np.sum(c * flow.h) <= 0:
                    continue
                terms = per_layer[layer][k] * flow.shares
                nz = (terms != 0) & (c != 0)
                rev = nz & (np.sign(terms) != np.sign(per_layer[layer][k]) * np.sign(c))
                n_terms += nz.sum()
                n_rev += rev.sum()
                if kernel == "depsilon":  # reversed exactly where d eps/dt < 0
                    lags = flow.time - flow.times
                    np.testing.assert_array_equal(rev[nz], lags[nz] > peak)
            assert (row.contributions, row.reversed) == (n_terms, n_rev)
            assert row.lag_counts.sum() == n_terms and row.lag_reversed.sum() == n_rev
    d = rep.to_dict()
    assert d["ok"] and d["totals"]["exp"]["reversed"] == 0


# ----------------------------------------------------------------------------------
# simulation files
# ----------------------------------------------------------------------------------
def test_simulation_round_trips_through_hdf5(nets, tmp_path):
    net, inputs, _ = nets["max"]
    one = inputs.select([2])
    sim = simulate(net, one, sample=17, label=1, membrane_points=50, membrane_layer=2,
                   membrane_neurons=[0, 5, 9])
    ref = net.forward(one)
    assert all(a.equals(b) for a, b in zip(sim.spikes, ref.spikes)) and sim.inputs.equals(one)
    np.testing.assert_array_equal(sim.membrane[1], membrane_potential(
        net, ref, sample=0, layer=2, neuron=5, times=np.linspace(0, net.t_end, 50)))
    path = tmp_path / "sim.h5"
    save_simulation(path, sim)
    back = load_simulation(path)
    assert back.inputs.equals(sim.inputs)
    assert len(back.spikes) == len(sim.spikes) and all(a.equals(b) for a, b in zip(back.spikes, sim.spikes))
    for key in ("membrane", "membrane_times", "membrane_neurons"):
        np.testing.assert_array_equal(getattr(back, key), getattr(sim, key))
    for key in ("arch", "t_end", "tau_m", "tau_s", "threshold", "sample", "label", "membrane_layer",
                "layer_names", "layer_shapes"):
        assert getattr(back, key) == getattr(sim, key), key
    times, u = back.trace(9)
    assert times.size == 50 and np.array_equal(u, sim.membrane[2])
    with pytest.raises(ValueError, match="not traced"):
        back.trace(1)
    # without traces; a failed write leaves the old file as it was
    plain = simulate(net, one)
    assert plain.membrane is None and plain.sample is None
    before = path.read_bytes()
    import eventsnn.inspect as ins

    def broken(group, trains):
        raise OSError("disk full")

    orig = ins.write_spike_trains
    ins.write_spike_trains = broken
    try:
        with pytest.raises(OSError):
            save_simulation(path, plain)
    finally:
        ins.write_spike_trains = orig
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["sim.h5"]
    save_simulation(path, plain)
    assert load_simulation(path).membrane is None and load_simulation(path).label is None


def test_simulation_file_errors(nets, tmp_path):
    net, inputs, _ = nets["max"]
    with pytest.raises(FileNotFoundError):
        load_simulation(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(FileFormatError):
        load_simulation(tmp_path / "junk.h5")
    save_spike_trains(tmp_path / "spikes.h5", inputs)
    with pytest.raises(FileFormatError, match="simulation"):
        load_simulation(tmp_path / "spikes.h5")
    save_simulation(tmp_path / "cut.h5", simulate(net, inputs.select([0])))
    with h5py.File(tmp_path / "cut.h5", "r+") as f:
        del f["layers"]["1"]
    with pytest.raises(FileFormatError, match="corrupt"):
        load_simulation(tmp_path / "cut.h5")
    with pytest.raises(ValueError, match="one sample"):
        simulate(net, inputs)
    with pytest.raises(ValueError, match="pooling"):
        simulate(net, inputs.select([0]), membrane_points=10, membrane_layer=1)
    with pytest.raises(ValueError, match="must lie"):
        simulate(net, inputs.select([0]), membrane_points=10, membrane_layer=0, membrane_neurons=[10 ** 6])
    with pytest.raises(ValueError, match="membrane_points"):
        simulate(net, inputs.select([0]), membrane_points=1)
