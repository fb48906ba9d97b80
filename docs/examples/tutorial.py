"""From raw arrays to a trained network and one inspected spike (docs/python-api.md).

Run: python docs/examples/tutorial.py [OUT.png]
"""

import sys

import numpy as np

import eventsnn as es
from eventsnn.inspect import spike_flow
from eventsnn.loss import count_loss, readout
from eventsnn.optim import AdamW, clip_grad_norm
from eventsnn.plot import plot_spike_flow
from eventsnn.train import init_gains


def make_data(rng, n):
    """Three classes of noisy 8x8 images: a horizontal bar, a vertical bar, a diagonal."""
    labels = rng.integers(0, 3, n)
    images = rng.random((n, 8, 8)) * 0.3
    for img, c in zip(images, labels):
        k = rng.integers(2, 6)
        if c == 0:
            img[k, :] += 0.7
        elif c == 1:
            img[:, k] += 0.7
        else:
            img[np.arange(8), np.arange(8)] += 0.7
    return images.reshape(n, 64), labels


def main(out="python-api-spike.png", epochs=6):
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(rng, 300)
    x_test, y_test = make_data(rng, 100)

    # 1. Events from raw arrays: one spike of neuron 3 at t = 0.5 and two of neuron 0, in one sample
    st = es.SpikeTrains(times=[0.5, 1.0, 2.0], neurons=[3, 0, 0], amplitudes=[1.0, 1.0, 1.0],
                        offsets=[0, 3], n_neurons=64)
    print("hand-made events:", st)
    # ... or from images: 5 current impulses per pixel at t = 0..4 (the paper's input)
    inputs = es.encode.current(x_train[:50], steps=5)

    # 2. A network: 64 inputs, 40 hidden neurons, 3 output neurons; gains set to ~0.5 spikes/neuron
    net = es.Network.from_arch("64-40", n_classes=3, seed=1, t_end=5.0)
    init_gains(net, inputs, avg_spike_init=0.5)
    opt = AdamW([a for _, a in net.parameters()], lr=5e-3, weight_decay=5e-4)

    # 3. Train: exact forward, count loss with the supervisory spike, event-driven backward
    for epoch in range(epochs):
        order = rng.permutation(len(y_train))
        for a in range(0, len(order), 25):
            idx = order[a:a + 25]
            result = net.forward(es.encode.current(x_train[idx], steps=5))
            loss = count_loss(result.spikes[-1], y_train[idx], steps=5, t_end=5.0)
            grads = net.backward(result, loss.grad, kernel="exp", tau_grad=2.5,
                                 forced=loss.forced, input_grad=False)
            flat = grads.parameter_grads()
            clip_grad_norm(flat, 1.0)
            opt.step(flat)
        test = net.forward(es.encode.current(x_test, steps=5))
        acc = float(np.mean(readout(test.spikes[-1]) == y_test))
        print(f"epoch {epoch + 1}: test accuracy {acc:.3f}")

    # 4. Inspect one spike: the first output spike of the label neuron of test sample 0
    label = int(y_test[0])
    flow = spike_flow(net, test, sample=0, layer=-1, neuron=label, spike=0, kernel="exp")
    print(f"spike at t = {flow.time:.6f}: {flow.times.size} input events in its window "
          f"({flow.window[0]:.3f}, {flow.window[1]:.3f}], shares sum to {flow.share_sum:.15f}")
    plot_spike_flow(flow, out, threshold=net.params.threshold, tau_m=net.params.tau_m,
                    tau_s=net.params.tau_s)
    return acc, flow


if __name__ == "__main__":
    main(*sys.argv[1:2])
