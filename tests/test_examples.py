"""The documentation's examples run, and they do what the docs say."""

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tutorial_trains_and_inspects_a_spike(tmp_path):
    out = tmp_path / "spike.png"
    acc, flow = _load("tutorial").main(out=str(out))
    assert acc >= 0.8  # three easy classes; chance is 1/3
    assert out.stat().st_size > 10_000
    # Eq. 6 for the inspected spike, checked independently of SpikeFlow.share_sum
    assert abs(np.sum(flow.shares) - 1.0) < 1e-9
    assert np.all((flow.times > flow.window[0]) & (flow.times <= flow.window[1]))


def test_gradient_sums_conserved_through_a_network():
    import eventsnn as es
    from eventsnn.inspect import gradient_sums

    rng = np.random.default_rng(3)
    net = es.Network.from_arch("30-20-10", n_classes=4, seed=2, weight_norm=False)
    for layer in net.layers:
        layer.weight = layer.weight * 3.0 + 0.15
    result = net.forward(es.encode.current(rng.random((3, 30)), steps=5))
    assert result.spikes[-1].n_events > 0
    g = rng.normal(size=result.spikes[-1].n_events)
    sums = gradient_sums(net.backward(result, g, kernel="exp"), g)
    assert len(sums) == 4
    assert np.allclose(sums, np.sum(g), rtol=1e-9, atol=1e-12)
    scaled = gradient_sums(net.backward(result, g, kernel="exp", input_grad_scale=0.85), g)
    assert np.allclose(scaled, np.sum(g) * 0.85 ** np.arange(4), rtol=1e-9, atol=1e-12)


def test_conv_network_from_arch_trains_one_step_and_inspects(tmp_path):
    """A conv architecture string builds, runs forward/backward, conserves Eq. 8 and is inspectable."""
    import eventsnn as es
    from eventsnn.inspect import gradient_sums, spike_flow
    from eventsnn.train import init_gains

    rng = np.random.default_rng(4)
    net = es.Network.from_arch("4C3-P2-6C3-12", n_classes=3, input_shape=(10, 10), seed=1, pool="max")
    assert [layer.kind for layer in net.layers] == ["conv", "pool", "conv", "dense", "dense"]
    inputs = es.encode.current(rng.random((4, 100)), steps=5)
    init_gains(net, inputs, avg_spike_init=0.5)
    result = net.forward(inputs)
    assert all(s.n_events > 0 for s in result.spikes)
    g = rng.normal(size=result.spikes[-1].n_events)
    grads = net.backward(result, g, kernel="exp")
    sums = gradient_sums(grads, g)
    assert np.allclose(sums, np.sum(g), rtol=1e-9, atol=1e-12)
    assert len(grads.parameter_grads()) == len(net.parameters())
    conv = result.spikes[0]
    n0 = int(conv.neurons[0])
    flow = spike_flow(net, result, sample=int(conv.samples[0]), layer=0, neuron=n0, spike=0)
    assert abs(np.sum(flow.shares) - 1.0) < 1e-9
    assert np.unique(flow.sources).size <= 9  # a 3x3 receptive field, one input channel
