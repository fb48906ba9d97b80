"""``eventsnn`` commands that look inside a network: thin click wrappers over :mod:`eventsnn.inspect`.

* ``inspect`` — the gradient flow of one spike (Fig. 2, Eqs. 6, 12-13);
* ``verify-invariance`` — the gradient sum through every layer (Eqs. 6, 8);
* ``gradcheck`` — backward dL/dw against finite differences (h = d eps/dt);
* ``reverse-gradient`` — sign reversals with h = d eps/dt vs h = exp (Fig. 4, Eq. 11);
* ``simulate`` — every layer's spike trains (and membrane traces) to HDF5;
* ``plot raster`` / ``plot membrane`` — figures from a ``simulate`` file.

The commands take a CHECKPOINT or ``--arch ARCH`` (a fresh network, gains set
by the trainer's binary search on the first 50 training images of
``--dataset``); the samples come from the dataset's test split. Bad input
raises ``click.UsageError`` or a library ``ValueError`` / ``OSError``: the
group prints one line ``Error: ...`` and exits with 2. A check whose result
contradicts the theory exits with 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from eventsnn.engine.conv import POOL_KINDS

KERNELS = ("exp", "depsilon")
#: Datasets whose samples are events (not images): refused here.
EVENT_DATASETS = ("nmnist",)


# ----------------------------------------------------------------------------------
# shared pieces
# ----------------------------------------------------------------------------------
def _subject_options(f):
    """CHECKPOINT | --arch ARCH, --dataset, --pool, --seed, --data-dir."""
    opts = [
        click.argument("checkpoint", required=False, type=click.Path(path_type=Path)),
        click.option("--arch", default=None,
                     help="Instead of a CHECKPOINT: a fresh network of this architecture (gains set by "
                          "binary search on 50 training images of --dataset)."),
        click.option("--dataset", default=None,
                     help="Dataset of the samples (default: the checkpoint's, or mnist with --arch)."),
        click.option("--pool", type=click.Choice(POOL_KINDS), default=None,
                     help="Rule of every pooling layer (default: the checkpoint's, or adjusted-avg)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the fresh network, the drawn samples and the random choices."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Dataset cache (default $EVENTSNN_DATA or ./data)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _json_plot_options(f, plot: bool = True):
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)
    if plot:
        f = click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
                         default=None, help="Also draw the figure to this PNG.")(f)
    return f


def _images(name: str, split: str, data_dir):
    from eventsnn.datasets import load_dataset
    from eventsnn.spikes import SpikeTrains

    if name in EVENT_DATASETS:
        raise click.UsageError(f"{name} holds events, not images: the inspection commands take image datasets")
    x, y = load_dataset(name, split, data_dir)
    if isinstance(x, SpikeTrains):
        raise click.UsageError(f"{name} holds events, not images")
    return x, y


class Subject:
    """The network under inspection, its configuration and the test split of its dataset."""

    def __init__(self, checkpoint, arch, dataset, pool, seed, data_dir):
        from eventsnn.checkpoint import load_checkpoint
        from eventsnn.config import TrainConfig
        from eventsnn.datasets import dataset_info
        from eventsnn.inspect import fresh_network, set_pooling

        if (checkpoint is None) == (arch is None):
            raise click.UsageError("give either a CHECKPOINT or --arch ARCH (exactly one)")
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            if dataset is not None and dataset != ck.config.dataset:
                raise click.UsageError(f"--dataset {dataset} differs from the checkpoint's dataset "
                                       f"({ck.config.dataset})")
            self.config, self.net = ck.config, ck.network
            self.source = f"checkpoint {checkpoint} (epoch {ck.epoch})"
            if pool is not None:
                set_pooling(self.net, pool)
        else:
            dataset = dataset or "mnist"
            config = TrainConfig(dataset=dataset, arch=arch, seed=seed, pool=pool or TrainConfig.pool)
            dataset_info(dataset)  # unknown names fail before any loading
            x_train, _ = _images(dataset, "train", data_dir)
            self.config = config
            self.net = fresh_network(config, x_train, dataset_info(dataset).n_classes)
            self.source = f"fresh network (seed {seed}, gains by binary search)"
        self.x, self.y = _images(self.config.dataset, "test", data_dir)
        pools = sorted({lay.pool_kind for lay in self.net.layers if lay.kind == "pool"})
        self.pool = pools[0] if len(pools) == 1 else ("none" if not pools else ",".join(pools))
        self.seed = seed

    @property
    def description(self) -> str:
        return f"{self.config.arch} on {self.config.dataset}, pooling {self.pool}; {self.source}"

    def sample(self, index: int):
        """(input SpikeTrains, label) of one test sample."""
        from eventsnn.train import encode_images

        n = len(self.y)
        if not 0 <= index < n:
            raise click.UsageError(f"--sample {index} out of range: the {self.config.dataset} test split "
                                   f"has {n} samples")
        return encode_images(self.x[index:index + 1], self.config), int(self.y[index])

    def samples(self, count: int):
        """(indices, input SpikeTrains, labels) of ``count`` test samples drawn with the seed."""
        import numpy as np

        from eventsnn.train import encode_images

        n = len(self.y)
        if count < 1:
            raise click.UsageError(f"--samples must be >= 1, got {count}")
        count = min(count, n)
        idx = np.sort(np.random.default_rng(self.seed).choice(n, size=count, replace=False))
        return idx, encode_images(self.x[idx], self.config), np.asarray(self.y[idx], dtype=np.int64)


def _parse_ints(text, what):
    if text is None:
        return None
    try:
        vals = [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise click.UsageError(f"{what} must be a comma-separated list of integers, got {text!r}") from None
    if not vals:
        raise click.UsageError(f"{what} is empty")
    return vals


def _fmt(v, spec=".6g"):
    return "-" if v is None else format(v, spec)


def _layer_arg(net, layer):
    n = len(net.layers)
    if not -n <= layer < n:
        raise click.UsageError(f"--layer {layer} out of range: the network has {n} layers (0..{n - 1}, "
                               "or -1 for the output layer)")
    return layer % n


# ----------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------
@click.command("inspect", short_help="The gradient flow of one spike (Fig. 2, Eqs. 6, 12-13).")
@_subject_options
@click.option("--sample", "sample", type=int, required=True, help="Index of the test sample.")
@click.option("--layer", type=int, default=-1, show_default=True, help="Layer (-1: output layer).")
@click.option("--neuron", type=int, required=True, help="Neuron of the layer (flat index (C, H, W) for conv).")
@click.option("--spike", type=int, default=0, show_default=True, help="Which spike of the neuron (0: first).")
@click.option("--kernel", type=click.Choice(KERNELS), default=None,
              help="Backward kernel h (default: the checkpoint's grad kernel, or exp).")
@click.option("--top", type=int, default=None, help="List only the N input events with the largest |share|.")
@_json_plot_options
def inspect_cmd(checkpoint, arch, dataset, pool, seed, data_dir, sample, layer, neuron, spike, kernel,
                top, as_json, plot_path):
    """The gradient flow of one spike: its window (t_{k-1}, t_k], every input event in it with its
    share dt_k/dt_m (Eq. 12) and its part G_k x share of the spike's gradient (Eq. 13).

    G_k comes from the count loss of the configuration on the sample's label (supervisory spike
    included), propagated without stabilisers.
    """
    import numpy as np

    from eventsnn.inspect import (loss_gradient, require_continuous, require_neurons, spike_flow,
                                  spike_gradients, spike_index)
    from eventsnn.plot import plot_gradient_flow

    if top is not None and top < 1:
        raise click.UsageError("--top must be >= 1")
    subj = Subject(checkpoint, arch, dataset, pool, seed, data_dir)
    require_continuous(subj.net.time, "inspect (the Eq. 12 shares of a spike window)")
    net, cfg = subj.net, subj.config
    kernel = kernel or cfg.grad_kernel
    inputs, label = subj.sample(sample)
    layer = _layer_arg(net, layer)
    require_neurons(net, layer, "inspect")
    n_out = net.layers[layer].n_out
    if not 0 <= neuron < n_out:
        raise click.UsageError(f"--neuron {neuron} out of range: layer {layer} has {n_out} neurons")
    result = net.forward(inputs)
    try:
        idx = spike_index(result.spikes[layer], 0, neuron, spike)
    except IndexError as exc:
        st = result.spikes[layer]
        fired = int(st.times[st.neurons == neuron].size)
        active = np.unique(st.neurons)
        hint = f"it fired {fired} times" if fired else (
            "it did not fire; neurons that fired: " + (", ".join(map(str, active[:12]))
                                                       + (", ..." if active.size > 12 else "")
                                                       if active.size else "none"))
        raise click.UsageError(f"neuron {neuron} of layer {layer} has no spike {spike} on sample "
                               f"{sample}: {hint}") from exc
    loss = loss_gradient(result, [label], cfg)
    per_layer, _ = spike_gradients(net, result, loss.grad, kernel=kernel, tau_grad=cfg.tau_grad,
                                   forced=loss.forced, input_grad=False)
    flow = spike_flow(net, result, sample=0, layer=layer, neuron=neuron, spike=spike, kernel=kernel,
                      tau_grad=cfg.tau_grad, grad=float(per_layer[layer][idx]) + 0.0)
    if plot_path is not None:
        p = net.params
        plot_gradient_flow(flow, plot_path, threshold=p.threshold, tau_m=p.tau_m, tau_s=p.tau_s,
                           title=f"Gradient flow of spike {spike} of neuron {neuron} in layer {layer} "
                                 f"({_name(net, layer)}), test sample {sample} (Fig. 2, Eqs. 12-13)")
    if as_json:
        out = flow.to_dict()
        out.update({"sample": sample, "label": label, "arch": cfg.arch, "dataset": cfg.dataset,
                    "layer_name": _name(net, layer)})
        if plot_path is not None:
            out["plot"] = str(plot_path)
        click.echo(json.dumps(out))
        return
    t0, tk = flow.window
    open_left = "(" if flow.spike else "["
    click.echo(f"{subj.description}")
    click.echo(f"spike {spike} of neuron {neuron} in layer {layer} ({_name(net, layer)}), test sample "
               f"{sample} (label {label}); h = {kernel}, tau_grad {cfg.tau_grad:g}")
    click.echo(f"  t_k = {tk:.9f} (model units)   window {open_left}{t0:.6f}, {tk:.6f}]   "
               f"u'(t_k) = {flow.slope:.6g}")
    click.echo(f"  G_k = dL/dt_k = {flow.grad:.9g} (count loss, targets {cfg.desired:g}/{cfg.undesired:g}, "
               f"supervision '{cfg.supervision}'; positive: move earlier)")
    if flow.grad == 0.0:
        click.echo("  (G_k = 0: no gradient reaches this spike on this sample -- e.g. its neuron met its "
                   "target count; the shares still say how a gradient would be split)")
    order = np.arange(flow.times.size)
    if top is not None:
        order = np.sort(np.argsort(-np.abs(flow.shares), kind="stable")[:top])
    click.echo(f"  {flow.times.size} input events in the window"
               + (f" (the {order.size} with the largest |share| listed)" if order.size < flow.times.size else "")
               + ":")
    click.echo(f"  {'source':>8} {'time':>12} {'amplitude':>10} {'weight':>11} {'h(t_k-t_m)':>11} "
               f"{'share dt_k/dt_m':>16} {'G_k x share':>13}")
    grads = flow.gradient_shares()
    for i in order:
        click.echo(f"  {flow.sources[i]:>8d} {flow.times[i]:>12.6f} {flow.amplitudes[i]:>10.4g} "
                   f"{flow.weights[i]:>11.4g} {flow.h[i]:>11.4g} {flow.shares[i]:>16.9g} {grads[i]:>13.6g}")
    click.echo(f"  sum of shares = {flow.share_sum:.15f} (Eq. 6: 1)   sum of G_k x share = "
               f"{float(np.sum(grads)):.9g} (= G_k)")
    if plot_path is not None:
        click.echo(f"wrote {plot_path}")


def _name(net, layer):
    from eventsnn.inspect import layer_name

    return layer_name(net, layer)


@click.command("verify-invariance", short_help="The gradient sum through every layer (Eqs. 6 and 8).")
@_subject_options
@click.option("--kernel", type=click.Choice(KERNELS), default=None,
              help="Backward kernel h (default: the checkpoint's grad kernel, or exp).")
@click.option("--samples", type=int, default=8, show_default=True, help="Test samples to run.")
@click.option("--max-spikes", type=int, default=500, show_default=True,
              help="Spikes per layer whose shares are summed (Eq. 6), drawn at random.")
@_json_plot_options
def verify_invariance_cmd(checkpoint, arch, dataset, pool, seed, data_dir, kernel, samples, max_spikes,
                          as_json, plot_path):
    """Propagate the count loss gradient of the configuration (supervisory spike included; no
    stabilisers) through the network and report, per layer, the total gradient carried by its
    spikes (Eq. 8) and the worst per-spike |sum of shares - 1| (Eq. 6).

    Exit code 0 when the result matches the theory: the total is conserved (1e-9 relative)
    through dense, conv, max and adjusted-avg pooling layers, and plain avg pooling loses
    exactly the share of the silent positions of its windows; 1 otherwise.
    """
    from eventsnn.inspect import loss_gradient, verify_invariance
    from eventsnn.plot import plot_invariance

    if max_spikes < 1:
        raise click.UsageError("--max-spikes must be >= 1")
    subj = Subject(checkpoint, arch, dataset, pool, seed, data_dir)
    net, cfg = subj.net, subj.config
    kernel = kernel or cfg.grad_kernel
    idx, inputs, labels = subj.samples(samples)
    result = net.forward(inputs)
    loss = loss_gradient(result, labels, cfg)
    rep = verify_invariance(net, result, loss.grad, kernel=kernel, tau_grad=cfg.tau_grad,
                            forced=loss.forced, max_spikes=max_spikes, rng=seed)
    if rep.total == 0.0 and all(r.sum_out == 0.0 for r in rep.layers):
        raise ValueError("the loss gradient is 0 on these samples: nothing to propagate (use more --samples)")
    if plot_path is not None:
        plot_invariance({f"pooling {subj.pool}, h = {kernel}": rep}, plot_path,
                        title=f"Gradient-sum invariance: {cfg.arch}, {len(idx)} samples")
    avg_layers = [r for r in rep.layers if r.kind == "pool" and r.expected_loss != 0.0]
    if as_json:
        out = rep.to_dict()
        out.update({"arch": cfg.arch, "dataset": cfg.dataset, "pool": subj.pool, "samples": idx.tolist(),
                    "source": subj.source,
                    "expected": "loss at avg pooling" if avg_layers else "conserved"})
        if plot_path is not None:
            out["plot"] = str(plot_path)
        click.echo(json.dumps(out))
    else:
        click.echo(subj.description)
        click.echo(f"h = {kernel}, {len(idx)} test samples, count loss (targets {cfg.desired:g}/"
                   f"{cfg.undesired:g}, supervisory spikes used {rep.supervisory[0]}/{rep.supervisory[1]}), "
                   "no stabilisers")
        w = max(len(r.name) for r in rep.layers) + 2
        click.echo(f"{'layer':<{w}}{'events':>8} {'sum of dL/dt (Eq. 8)':>22} {'passed on':>22} "
                   f"{'rel. error':>11} {'worst |sum shares - 1| (Eq. 6)':>32}")
        for r in rep.layers:
            eq6 = "-" if r.worst_share_error is None else f"{r.worst_share_error:.2g} ({r.spikes_checked} spikes)"
            click.echo(f"{r.name:<{w}}{r.n_out:>8d} {r.sum_out:>22.15g} {r.sum_in:>22.15g} "
                       f"{r.rel_error:>11.2g} {eq6:>32}")
        click.echo(f"{'network input':<{w}}{rep.layers[-1].n_in:>8d} {rep.input_sum:>22.15g}")
        for r in avg_layers:
            click.echo(f"{r.name}: lost {r.loss:.15g} of {r.sum_out:.15g}; the silent positions' share "
                       f"sum g (k^2 - n)/k^2 = {r.expected_loss:.15g}: expected for plain avg pooling")
        if rep.conserved:
            click.echo(f"conserved: yes, every layer keeps the total within {rep.rtol:g} relative (Eq. 8)")
        else:
            click.echo("conserved: no" + (" (plain avg pooling: as theory says)" if rep.matches_theory else ""))
        click.echo("matches theory: " + ("yes" if rep.matches_theory else "NO"))
        if plot_path is not None:
            click.echo(f"wrote {plot_path}")
    if not rep.matches_theory:
        click.get_current_context().exit(1)


@click.command("gradcheck", short_help="Backward dL/dw against finite differences of the forward.")
@_subject_options
@click.option("--samples", type=int, default=4, show_default=True, help="Test samples to run.")
@click.option("--weights", "weights", type=int, default=8, show_default=True,
              help="Weights checked per layer (three quarters among those with a non-zero gradient).")
@click.option("--step", type=float, default=1e-5, show_default=True,
              help="Relative step of the central differences (x RMS weight of the layer).")
@click.option("--tol", type=float, default=1e-5, show_default=True, help="Largest relative error that passes.")
@_json_plot_options
def gradcheck_cmd(checkpoint, arch, dataset, pool, seed, data_dir, samples, weights, step, tol, as_json,
                  plot_path):
    """Compare the backward's dL/dw (h = d eps/dt, no stabilisers, no supervisory spike) with
    central finite differences of the exact forward, for sampled weights of every layer;
    L = sum_k g_k t_k with fixed random g. Perturbations that change a spike count, or move a
    spike across an input event of its layer (the spike times are not differentiable there),
    are skipped and counted. Exit code 1 when a relative error exceeds --tol (or a layer has
    no comparable perturbation).
    """
    from eventsnn.inspect import gradcheck
    from eventsnn.plot import plot_gradcheck

    if weights < 1:
        raise click.UsageError("--weights must be >= 1")
    if not step > 0 or not tol > 0:
        raise click.UsageError("--step and --tol must be > 0")
    subj = Subject(checkpoint, arch, dataset, pool, seed, data_dir)
    idx, inputs, _ = subj.samples(samples)
    rep = gradcheck(subj.net, inputs, weights_per_layer=weights, step=step, rtol=tol, rng=seed)
    if plot_path is not None:
        plot_gradcheck(rep, plot_path, title=f"Gradient check of {subj.config.arch}: backward vs finite "
                       f"differences ({'passed' if rep.passed else 'FAILED'})")
    if as_json:
        out = rep.to_dict()
        out.update({"arch": subj.config.arch, "dataset": subj.config.dataset, "samples": idx.tolist(),
                    "source": subj.source})
        if plot_path is not None:
            out["plot"] = str(plot_path)
        click.echo(json.dumps(out))
    else:
        click.echo(subj.description)
        click.echo(f"h = d eps/dt, {len(idx)} test samples, L = sum_k g_k t_k (fixed random g), central "
                   f"differences with step {step:g} x RMS weight")
        w = max(len(l.name) for l in rep.layers) + 2
        click.echo(f"{'layer':<{w}}{'checked':>8} {'skipped: count':>15} {'order':>6} {'max rel. error':>15}")
        for l in rep.layers:
            click.echo(f"{l.name:<{w}}{len(l.indices):>8d} {l.skipped:>15d} {l.skipped_order:>6d} "
                       f"{_fmt(l.max_rel_error, '.2e'):>15}")
        click.echo(("passed" if rep.passed else "FAILED") + f": tolerance {tol:g}; skipped {rep.skipped} "
                   f"perturbations that changed a spike count and {rep.skipped_order} that moved a spike "
                   "across an input event")
        if plot_path is not None:
            click.echo(f"wrote {plot_path}")
    if not rep.passed:
        click.get_current_context().exit(1)


@click.command("reverse-gradient", short_help="Reversed gradient signs: h = d eps/dt vs h = exp (Fig. 4).")
@_subject_options
@click.option("--samples", type=int, default=8, show_default=True, help="Test samples to run.")
@click.option("--max-spikes", type=int, default=2000, show_default=True,
              help="Spikes examined per layer and kernel, drawn at random.")
@_json_plot_options
def reverse_gradient_cmd(checkpoint, arch, dataset, pool, seed, data_dir, samples, max_spikes, as_json,
                         plot_path):
    """The reverse-gradient problem (Fig. 4, Eq. 11): the share of input-event gradients
    G_k x dt_k/dt_m whose sign is opposite to sign(G_k) sign(w a_m), with h = d eps/dt and with
    h = exp. The count loss of the configuration (supervisory spike included) gives G.

    Exit code 0 when h = exp reverses nothing (as it must: h > 0), 1 otherwise.
    """
    from eventsnn.inspect import loss_gradient, reverse_gradient
    from eventsnn.plot import plot_reverse_gradient

    if max_spikes < 1:
        raise click.UsageError("--max-spikes must be >= 1")
    subj = Subject(checkpoint, arch, dataset, pool, seed, data_dir)
    net, cfg = subj.net, subj.config
    idx, inputs, labels = subj.samples(samples)
    result = net.forward(inputs)
    loss = loss_gradient(result, labels, cfg)
    rep = reverse_gradient(net, result, loss.grad, tau_grad=cfg.tau_grad, forced=loss.forced,
                           max_spikes=max_spikes, rng=seed)
    if plot_path is not None:
        plot_reverse_gradient(rep, plot_path, title=f"The reverse-gradient problem (Fig. 4) in {cfg.arch}, "
                              f"{len(idx)} samples: h = d eps/dt vs h = exp")
    if as_json:
        out = rep.to_dict()
        out.update({"arch": cfg.arch, "dataset": cfg.dataset, "samples": idx.tolist(), "source": subj.source})
        if plot_path is not None:
            out["plot"] = str(plot_path)
        click.echo(json.dumps(out))
    else:
        click.echo(subj.description)
        click.echo(f"{len(idx)} test samples, count loss (supervisory spike '{cfg.supervision}'); a term "
                   "G_k x dt_k/dt_m is reversed when its sign is opposite to sign(G_k) sign(w a_m)")
        layers = list(dict.fromkeys((r.layer, r.name) for r in rep.rows))
        w = max(len(n) for _, n in layers) + 2
        click.echo(f"{'layer':<{w}}{'h = d eps/dt: reversed / terms':>40} {'h = exp: reversed / terms':>40}")
        for l, name in layers:
            cells = []
            for kern in ("depsilon", "exp"):
                r = next(r for r in rep.rows if r.layer == l and r.kernel == kern)
                cells.append(f"{r.reversed}/{r.contributions} = {100 * r.fraction:.2f}% "
                             f"(|G| {100 * r.mass_fraction:.2f}%)")
            click.echo(f"{name:<{w}}{cells[0]:>40} {cells[1]:>40}")
        for kern in ("depsilon", "exp"):
            t = rep.totals(kern)
            click.echo(f"total, h = {kern}: {t['reversed']}/{t['contributions']} terms reversed = "
                       f"{100 * t['fraction']:.3f}% (of the gradient magnitude {100 * t['mass_fraction']:.3f}%); "
                       f"windows with a non-positive Eq. 12 denominator left out: {t['nonpositive_windows']}")
        click.echo("h = exp reverses no gradient (h > 0), as the paper says" if rep.ok
                   else "h = exp REVERSED some gradients: this contradicts the theory")
        if plot_path is not None:
            click.echo(f"wrote {plot_path}")
    if not rep.ok:
        click.get_current_context().exit(1)


@click.command("simulate", short_help="Record every layer's spike trains (and membranes) to HDF5.")
@_subject_options
@click.option("--sample", "sample", type=int, required=True, help="Index of the test sample.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output HDF5 file (written atomically).")
@click.option("--membrane", type=int, default=0, show_default=True,
              help="Also record u(t) on N equally spaced points in [0, t_end] per traced neuron (0: off).")
@click.option("--layer", type=int, default=-1, show_default=True, help="Layer of the traced neurons.")
@click.option("--neurons", default=None, help="Traced neurons, e.g. 0,3,7 (default: all of --layer).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def simulate_cmd(checkpoint, arch, dataset, pool, seed, data_dir, sample, out, membrane, layer, neurons,
                 as_json):
    """Run one test sample and record every layer's spike trains (and membrane traces) to HDF5;
    draw them with 'eventsnn plot raster|membrane'."""
    from eventsnn.inspect import save_simulation, simulate

    subj = Subject(checkpoint, arch, dataset, pool, seed, data_dir)
    inputs, label = subj.sample(sample)
    nrn = _parse_ints(neurons, "--neurons")
    if membrane < 0 or membrane == 1:
        raise click.UsageError("--membrane must be 0 (off) or >= 2 points")
    if membrane == 0 and (nrn is not None):
        raise click.UsageError("--neurons needs --membrane N (points per trace)")
    lay = _layer_arg(subj.net, layer)
    sim = simulate(subj.net, inputs, sample=sample, label=label, membrane_points=membrane,
                   membrane_layer=lay, membrane_neurons=nrn)
    save_simulation(out, sim)
    counts = sim.counts()
    if as_json:
        res = {"file": str(out), "sample": sample, "label": label, "arch": sim.arch,
               "layers": sim.layer_names, "events": counts, "t_end": sim.t_end}
        if sim.membrane is not None:
            res["membrane"] = {"layer": sim.membrane_layer, "neurons": sim.membrane_neurons.tolist(),
                               "points": int(sim.membrane_times.size)}
        click.echo(json.dumps(res))
        return
    click.echo(f"{subj.description}")
    click.echo(f"test sample {sample} (label {label}): input {counts[0]} events; "
               + "; ".join(f"layer {l} {n}: {c} events" for l, (n, c) in
                           enumerate(zip(sim.layer_names, counts[1:]))))
    if sim.membrane is not None:
        click.echo(f"membrane: {sim.membrane_neurons.size} neurons of layer {sim.membrane_layer}, "
                   f"{sim.membrane_times.size} points each")
    click.echo(f"wrote {out}")


@click.command("raster", short_help="Spike rasters of every layer (from a simulate file).")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output PNG.")
@click.option("--layers", default=None, help="Layers to draw, e.g. 0,2 (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plot_raster_cmd(file, out, layers, as_json):
    """Spike rasters of every layer from a FILE written by 'eventsnn simulate'."""
    from eventsnn.inspect import load_simulation
    from eventsnn.plot import plot_raster

    sim = load_simulation(file)
    chosen = _parse_ints(layers, "--layers")
    path = plot_raster(sim, out, layers=chosen)
    if as_json:
        click.echo(json.dumps({"plot": str(path), "layers": chosen if chosen else list(range(len(sim.spikes))),
                               "events": sim.counts()}))
    else:
        click.echo(f"wrote {path}")


@click.command("membrane", short_help="Membrane potentials with the exact crossings (from a simulate file).")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output PNG.")
@click.option("--neuron", "neurons", type=int, multiple=True,
              help="Traced neuron to draw (repeatable; default: up to 4, those that fired first).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plot_membrane_cmd(file, out, neurons, as_json):
    """Membrane potentials with the exact threshold crossings, from a FILE written by
    'eventsnn simulate --membrane N'."""
    import numpy as np

    from eventsnn.inspect import load_simulation
    from eventsnn.plot import plot_membrane

    sim = load_simulation(file)
    if sim.membrane is None:
        raise click.UsageError(f"{file} holds no membrane traces: record them with "
                               "'eventsnn simulate ... --membrane N'")
    if not neurons:
        traced = [int(n) for n in sim.membrane_neurons]
        fired = [n for n in traced if sim.spike_times(sim.membrane_layer, n).size]
        neurons = (fired + [n for n in traced if n not in fired])[:4]
    else:
        missing = [n for n in neurons if n not in set(np.asarray(sim.membrane_neurons).tolist())]
        if missing:
            raise click.UsageError(f"neuron {missing[0]} was not traced in {file} (traced: "
                                   f"{', '.join(map(str, sim.membrane_neurons[:10]))}"
                                   f"{', ...' if sim.membrane_neurons.size > 10 else ''})")
    path = plot_membrane(sim, list(neurons), out)
    if as_json:
        click.echo(json.dumps({"plot": str(path), "layer": sim.membrane_layer, "neurons": list(neurons),
                               "spike_times": [sim.spike_times(sim.membrane_layer, n).tolist()
                                               for n in neurons]}))
    else:
        click.echo(f"wrote {path}")


def register(main: click.Group) -> None:
    """Add the inspection commands to the ``eventsnn`` group (and ``raster`` / ``membrane`` to
    its ``plot`` group)."""
    for cmd in (inspect_cmd, verify_invariance_cmd, gradcheck_cmd, reverse_gradient_cmd, simulate_cmd):
        main.add_command(cmd)
    plot = main.commands.get("plot")
    if plot is not None:
        plot.add_command(plot_raster_cmd)
        plot.add_command(plot_membrane_cmd)
        plot.help = "Figures: training curves, augmentation, errors, spike rasters, membrane potentials."
