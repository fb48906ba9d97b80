"""Figures (matplotlib, imported lazily, Agg backend: no display needed).

* :func:`plot_training_curves` — loss and accuracy per epoch of one or more
  runs (from their ``metrics.json`` histories).
* :func:`plot_spike_flow` — one spike's input events with their gradient
  shares, the membrane potential with the exact crossing.
* :func:`plot_gradient_flow` — the paper's Fig. 2 for one neuron: input
  spikes with their gradient arrows, the membrane potential with the exact
  crossing, the output spike with its gradient.
* :func:`plot_invariance` — the gradient carried by each layer's spikes
  (Eq. 8) and the per-spike Eq. 6 errors.
* :func:`plot_gradcheck` — backward dL/dw against finite differences.
* :func:`plot_reverse_gradient` — the reverse-gradient problem (Fig. 4, Eq. 11).
* :func:`plot_raster` — spike rasters of every layer of a simulation.
* :func:`plot_membrane` — membrane potentials with the exact crossings and resets.
* :func:`plot_engine_scaling` — cost of the continuous and discrete engines against
  the number of clock steps and of spikes (``eventsnn bench --plot``).
* :func:`plot_dt_convergence` — the discrete clock against exact time at
  decreasing dt (``eventsnn dt-convergence --plot``).
* :func:`plot_augmentation` — images next to their augmented versions
  (``eventsnn plot augment``).
* :func:`plot_errors` — the confusion matrix and the misclassified test images
  (``eventsnn plot errors``).

Time is in model units (one unit = one step of the official code); potentials
in threshold units.
"""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (PNG) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_training_curves(runs: dict, path, *, title: str = "Training curves") -> Path:
    """Plot train loss, train and test accuracy per epoch.

    Parameters
    ----------
    runs : dict of str -> list of dict
        Label -> metrics history (entries with ``epoch``, ``train_loss``,
        ``train_accuracy``, ``test_accuracy``, optionally ``validation_accuracy``),
        e.g. ``metrics.json["history"]``.
    path : str or os.PathLike
        Output PNG.
    title : str

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if not runs or not any(runs.values()):
        raise ValueError("no training history to plot")
    plt = _pyplot()
    fig, (ax_l, ax_a, ax_z) = plt.subplots(1, 3, figsize=(16, 4.2))
    for label, hist in runs.items():
        ep = [h["epoch"] for h in hist]
        ax_l.plot(ep, [h["train_loss"] for h in hist], marker="o", ms=3, label=label)
        line, = ax_a.plot(ep, [100 * h["test_accuracy"] for h in hist], marker="o", ms=3,
                          label=f"{label}: test")
        ax_a.plot(ep, [100 * h["train_accuracy"] for h in hist], ls="--", color=line.get_color(),
                  label=f"{label}: train")
        val = [(h["epoch"], 100 * h["validation_accuracy"]) for h in hist if "validation_accuracy" in h]
        if val:
            ax_a.plot(*zip(*val), ls=":", color=line.get_color(), label=f"{label}: validation")
        late = [h for h in hist if h["epoch"] > ep[-1] / 2] or hist  # the second half of the run
        ax_z.plot([h["epoch"] for h in late], [100 * h["test_accuracy"] for h in late], marker="o", ms=3,
                  color=line.get_color(), label=label)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("count loss per sample")
    ax_l.set_title("training loss")
    ax_l.set_yscale("log")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("accuracy (%)")
    ax_a.set_title("accuracy")
    ax_z.set_xlabel("epoch")
    ax_z.set_ylabel("test accuracy (%)")
    ax_z.set_title("test accuracy, second half of each run")
    for ax in (ax_l, ax_a, ax_z):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


def plot_training_cost(history: list, path, *, layer_names=None, target_seconds: float | None = None,
                       title: str = "Cost per epoch") -> Path:
    """Plot what each epoch of one run cost: its training-pass time and every layer's
    spikes per neuron (the cost of the exact engine follows the spike counts).

    Parameters
    ----------
    history : list of dict
        ``metrics.json["history"]``: entries with ``epoch``, ``epoch_seconds`` (s) and
        ``spikes_per_neuron`` (one float per layer, training samples).
    path : str or os.PathLike
        Output PNG.
    layer_names : sequence of str, optional
        One per layer (default "layer 1", ...).
    target_seconds : float, optional
        Draw this epoch time as a horizontal line (s).
    title : str

    Returns
    -------
    pathlib.Path
        The written file.
    """
    rows = [h for h in history if "epoch_seconds" in h and "spikes_per_neuron" in h]
    if not rows:
        raise ValueError("no epoch with epoch_seconds and spikes_per_neuron to plot")
    n_layers = len(rows[0]["spikes_per_neuron"])
    if any(len(h["spikes_per_neuron"]) != n_layers for h in rows):
        raise ValueError("spikes_per_neuron has a different number of layers in different epochs")
    names = list(layer_names) if layer_names is not None else [f"layer {i + 1}" for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    ep = [h["epoch"] for h in rows]
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax_t.plot(ep, [h["epoch_seconds"] / 60 for h in rows], marker="o", ms=3, color="k", label="training pass")
    if target_seconds is not None:
        ax_t.axhline(target_seconds / 60, color="tab:red", ls="--", lw=1,
                     label=f"target {target_seconds / 60:g} min")
    ax_t.set_xlabel("epoch")
    ax_t.set_ylabel("minutes")
    ax_t.set_title("training pass per epoch")
    ax_t.set_ylim(bottom=0)
    for i, name in enumerate(names):
        ax_s.plot(ep, [h["spikes_per_neuron"][i] for h in rows], marker="o", ms=3, label=f"{i + 1}: {name}")
    ax_s.set_xlabel("epoch")
    ax_s.set_ylabel("spikes per neuron and sample")
    ax_s.set_yscale("log")
    ax_s.set_title("firing per layer (training samples)")
    for ax in (ax_t, ax_s):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


def plot_spike_flow(flow, path, *, threshold: float = 1.0, tau_m: float = 5.0,
                    tau_s: float = 3.0) -> Path:
    """Figure of one spike's gradient flow (see :func:`eventsnn.inspect.spike_flow`).

    Top: the input events of the window at their times, bar height = share
    d t_k / d t_m of Eq. 12 (they sum to 1, Eq. 6). Bottom: the membrane
    potential over the window, the threshold and the exact crossing t_k.

    Parameters
    ----------
    flow : SpikeFlow
    path : str or os.PathLike
        Output PNG.
    threshold, tau_m, tau_s : float
        Neuron parameters (to draw the potential).
    """
    import numpy as np

    from .kernels import eps

    plt = _pyplot()
    fig, (ax_s, ax_u) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                     gridspec_kw={"height_ratios": [1, 1.3]})
    t0, tk = flow.window
    colors = np.where(flow.shares >= 0, "tab:blue", "tab:red")
    ax_s.bar(flow.times, flow.shares, width=max((tk - t0) / 150, 1e-3), color=colors)
    ax_s.axhline(0, color="k", lw=0.5)
    ax_s.set_ylabel("share dt_k/dt_m (Eq. 12)")
    ax_s.set_title(f"layer {flow.layer}, neuron {flow.neuron}, spike {flow.spike} of sample {flow.sample}: "
                   f"t_k = {flow.time:.4f}, {flow.times.size} inputs, shares sum to {flow.share_sum:.12f} "
                   f"(h = {flow.kernel})", fontsize=9)
    grid = np.linspace(t0, tk, 600)
    eff = flow.weights * flow.amplitudes
    u = np.array([np.sum(eff * eps(np.where(t >= flow.times, t - flow.times, -1.0), tau_m, tau_s))
                  for t in grid])
    ax_u.plot(grid, u, color="k", lw=1.2, label="membrane potential u(t)")
    ax_u.axhline(threshold, color="tab:gray", ls="--", label="threshold")
    ax_u.plot([tk], [threshold], marker="o", color="tab:orange", label="exact crossing t_k")
    ax_u.axvline(tk, color="tab:orange", lw=0.8)
    ax_u.set_xlabel("time (model units)")
    ax_u.set_ylabel("u (threshold units)")
    ax_u.legend(fontsize=8, loc="upper left")
    for ax in (ax_s, ax_u):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


# ----------------------------------------------------------------------------------
# inspection figures
# ----------------------------------------------------------------------------------
def plot_gradient_flow(flow, path, *, threshold: float = 1.0, tau_m: float = 5.0, tau_s: float = 3.0,
                       max_sources: int = 24, title: str | None = None) -> Path:
    """The paper's Fig. 2 for one spike (see :func:`eventsnn.inspect.spike_flow`).

    Top: the input events of the window (t_{k-1}, t_k], one row per source
    neuron, each with an arrow G_k x d t_k / d t_m (Eq. 13): the direction the
    gradient asks the event to move (G > 0: earlier, arrow to the left), its
    length proportional to the gradient. Middle: the membrane potential with
    the threshold and the exact crossing t_k. Bottom: the output spike with the
    arrow of its own gradient G_k, on the same scale (the arrows above sum to it).

    Parameters
    ----------
    flow : SpikeFlow
        With ``flow.grad`` = G_k (if NaN, G_k = 1 is drawn: the shares themselves).
    path : str or os.PathLike
        Output PNG.
    threshold, tau_m, tau_s : float
        Neuron parameters (to draw the potential).
    max_sources : int
        Rows drawn at most: the sources with the largest total |share|.
    title : str, optional
        Figure title (default: which spike, with ``flow.sample`` as the sample).
    """
    import math

    import numpy as np

    from .kernels import eps

    plt = _pyplot()
    given = math.isfinite(flow.grad) and flow.grad != 0.0
    G = flow.grad if given else 1.0
    terms = G * flow.shares
    t0, tk = flow.window
    span = max(tk - t0, 1e-6)
    big = max(float(np.max(np.abs(terms))) if terms.size else 0.0, abs(G), 1e-300)
    scale = 0.3 * span / big  # time units per unit of gradient
    src = np.unique(flow.sources)
    weight_of = {s: np.sum(np.abs(flow.shares[flow.sources == s])) for s in src}
    shown = sorted(src, key=lambda s: -weight_of[s])[:max_sources]
    shown = sorted(shown)
    row = {s: r for r, s in enumerate(shown)}
    sel = np.array([s in row for s in flow.sources], dtype=bool)
    y = np.array([row.get(s, -1) for s in flow.sources], dtype=float)
    eff = flow.weights * flow.amplitudes

    fig, (ax_in, ax_u, ax_out) = plt.subplots(
        3, 1, figsize=(9, 8.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1.6, 0.7]})
    for positive, color, label in ((True, "tab:blue", "input event, w a > 0"),
                                   (False, "tab:red", "input event, w a < 0")):
        m = sel & ((eff > 0) == positive)
        if m.any():
            ax_in.scatter(flow.times[m], y[m], marker="|", s=160, color=color, label=label, zorder=3)
    m = sel & (terms != 0)
    if m.any():
        ax_in.quiver(flow.times[m], y[m], -terms[m] * scale, np.zeros(m.sum()), angles="xy",
                     scale_units="xy", scale=1, color="tab:green", width=0.004, zorder=2,
                     label="gradient G_k x dt_k/dt_m (arrow: direction to move)")
    ax_in.set_yticks(range(len(shown)))
    ax_in.set_yticklabels([str(s) for s in shown], fontsize=7 if len(shown) > 12 else 9)
    ax_in.set_ylim(-0.8, len(shown) - 0.2)
    ax_in.set_ylabel(f"source neuron (layer {flow.layer - 1 if flow.layer else 'input'})")
    hidden = len(src) - len(shown)
    rest = 1 - np.sum(np.abs(flow.shares[sel])) / max(np.sum(np.abs(flow.shares)), 1e-300)
    note = (f" ({hidden} sources with {100 * rest:.1f}% of the |shares| not drawn)" if hidden > 0 else "")
    bracket = "(" if flow.spike else "["
    ax_in.set_title(f"{flow.times.size} input events from {len(src)} sources in the window {bracket}{t0:.3f}, "
                    f"{tk:.3f}]{note}\nshares dt_k/dt_m sum to {flow.share_sum:.12f} (Eq. 6); "
                    f"h = {flow.kernel}" + ("" if given else "; arrows drawn for G_k = 1 (G_k = "
                                            + ("0" if math.isfinite(flow.grad) else "not given") + ")"),
                    fontsize=9)
    ax_in.legend(fontsize=7, loc="upper left")

    # the first window starts at 0: show it from its first input event
    lo = t0 if flow.spike or not flow.times.size else max(t0, float(flow.times.min()) - 0.05 * span)
    grid = np.linspace(lo, tk, 600)
    u = np.array([np.sum(eff * eps(np.where(t >= flow.times, t - flow.times, -1.0), tau_m, tau_s))
                  for t in grid])
    ax_u.plot(grid, u, color="k", lw=1.3, label="membrane potential u(t)")
    ax_u.plot([tk, tk], [u[-1], 0.0], color="k", lw=0.8, ls=":", label="reset after the spike")
    ax_u.axhline(threshold, color="tab:gray", ls="--", label="threshold")
    ax_u.plot([tk], [threshold], marker="o", color="tab:orange", ms=7, label=f"exact crossing t_k = {tk:.6f}")
    ax_u.set_ylabel("u (threshold units)")
    ax_u.legend(fontsize=7, loc="upper left")
    ax_u.set_title(f"u'(t_k) = {flow.slope:.4g}", fontsize=9)

    ax_out.vlines([tk], 0, 1, color="tab:orange", lw=2.5, label="output spike t_k")
    if flow.spike:
        ax_out.vlines([t0], 0, 1, color="tab:gray", lw=1.5, label="previous spike t_{k-1} (reset)")
        ax_u.axvline(t0, color="tab:gray", lw=0.8)
    ax_out.quiver([tk], [0.5], [-G * scale], [0.0], angles="xy", scale_units="xy", scale=1,
                  color="tab:green", width=0.006, label=f"its gradient G_k = dL/dt_k = {G:.4g}"
                  + ("" if given else " (drawn for 1)") + "; the arrows above sum to it")
    ax_out.set_ylim(-0.1, 1.3)
    ax_out.set_yticks([])
    ax_out.set_ylabel(f"neuron {flow.neuron}")
    ax_out.set_xlabel("time (model units)")
    ax_out.legend(fontsize=7, loc="upper left")
    left = min(lo, float(np.min(flow.times - np.maximum(terms, 0) * scale)) if flow.times.size else lo,
               tk - max(G, 0) * scale)
    right = max(tk, float(np.max(flow.times - np.minimum(terms, 0) * scale)) if flow.times.size else tk,
                tk - min(G, 0) * scale)
    pad = 0.04 * (right - left + 1e-9)
    ax_out.set_xlim(left - pad, right + pad)
    for ax in (ax_in, ax_u, ax_out):
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"Gradient flow of spike {flow.spike} of neuron {flow.neuron} (layer {flow.layer}), "
                 f"sample {flow.sample} (Fig. 2, Eqs. 12-13)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _levels(report):
    """(labels, sums) from the output spikes down to the network's input events."""
    import re

    labels = [r.name + "\nspikes" if r.kind != "pool"
              else re.sub(r"^(pool P[0-9]+) [a-z-]+", r"\1", r.name) + "\nevents" for r in report.layers]
    sums = [r.sum_out for r in report.layers]
    labels.append("network input\nevents")
    sums.append(report.input_sum)
    return labels, sums


def plot_invariance(reports, path, *, title: str | None = None) -> Path:
    """Gradient carried by the spikes of every layer (Eq. 8) and the per-spike Eq. 6 error.

    Parameters
    ----------
    reports : InvarianceReport or dict of str -> InvarianceReport
        One or more results of :func:`eventsnn.inspect.verify_invariance` on the same
        network (e.g. one per pooling rule), labelled.
    path : str or os.PathLike
        Output PNG.
    title : str, optional
    """
    import numpy as np

    if not isinstance(reports, dict):
        reports = {f"h = {reports.kernel}": reports}
    if not reports:
        raise ValueError("no report to plot")
    plt = _pyplot()
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.4, 1]})
    floor = 1e-17
    first = next(iter(reports.values()))
    labels, _ = _levels(first)
    x = np.arange(len(labels))
    for j, (name, rep) in enumerate(reports.items()):
        _, sums = _levels(rep)
        frac = np.array(sums) / rep.total if rep.total else np.full(len(sums), np.nan)
        ax_s.plot(x[:len(sums)], frac, marker="os^Dv"[j % 5], ms=9 - 2 * (j % 3), lw=2.2 - 0.6 * (j % 3),
                  label=f"{name} (output total {rep.total:.4g})")
    ax_s.axhline(1.0, color="k", lw=0.6, ls=":")
    ax_s.set_xticks(x)
    ax_s.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax_s.set_ylabel("gradient carried / output total")
    ax_s.set_ylim(bottom=min(0.0, ax_s.get_ylim()[0]))
    ax_s.set_title("Eq. 8: total dL/dt of each layer's events, output (left) to input (right)", fontsize=9)
    ax_s.legend(fontsize=8)
    width = 0.8 / (2 * len(reports))
    xl = np.arange(len(first.layers))
    for j, (name, rep) in enumerate(reports.items()):
        rel = np.array([max(r.rel_error, floor) for r in rep.layers])
        share = np.array([max(r.worst_share_error, floor) if r.worst_share_error is not None else np.nan
                          for r in rep.layers])
        off = (2 * j - len(reports) + 0.5) * width
        ax_e.bar(xl[:rel.size] + off, rel, width, label=f"{name}: |sum_in - theory| / |sum_out| (Eq. 8)")
        ax_e.bar(xl[:share.size] + off + width, share, width, hatch="//", alpha=0.6,
                 label=f"{name}: worst |sum of shares - 1| (Eq. 6)")
    ax_e.axhline(first.rtol, color="k", ls="--", lw=0.8, label=f"tolerance {first.rtol:g}")
    ax_e.set_yscale("log")
    ax_e.set_ylim(floor / 2, 1.0)
    ax_e.set_xticks(xl)
    ax_e.set_xticklabels([lab.split("\n")[0] for lab in labels[:-1]], fontsize=7, rotation=30, ha="right")
    ax_e.set_ylabel(f"error (0 drawn at {floor:g})")
    ax_e.set_title("errors per layer (pooling: no neurons, no Eq. 6)", fontsize=9)
    ax_e.legend(fontsize=6, loc="upper left")
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Gradient-sum invariance (Eqs. 6 and 8)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_gradcheck(report, path, *, title: str | None = None) -> Path:
    """Backward dL/dw against central finite differences (see :func:`eventsnn.inspect.gradcheck`).

    Left: finite difference against backward for every checked weight (on the
    diagonal when they agree). Right: relative error per check and layer, with
    the tolerance.
    """
    import numpy as np

    plt = _pyplot()
    fig, (ax_a, ax_e) = plt.subplots(1, 2, figsize=(11, 4.6))
    floor = 1e-17
    lo, hi, agree, total = np.inf, 0.0, 0, 0
    for j, lay in enumerate(report.layers):
        if not lay.rel_error.size:
            continue
        a, nu = np.abs(lay.analytic), np.abs(lay.numeric)
        pos = lay.analytic >= 0
        color = f"C{j % 10}"
        ax_a.scatter(a[pos], nu[pos], s=26, color=color, label=lay.name, zorder=3)
        ax_a.scatter(a[~pos], nu[~pos], s=26, facecolors="none", edgecolors=color, zorder=3)
        nz = a[a > 0]
        if nz.size:
            lo, hi = min(lo, float(nz.min())), max(hi, float(a.max()), float(nu.max()))
        agree += int(np.sum(np.sign(lay.analytic) == np.sign(lay.numeric)))
        total += lay.analytic.size
        xs = j + np.linspace(-0.2, 0.2, lay.rel_error.size)
        ax_e.scatter(xs, np.maximum(lay.rel_error, floor), s=22, color=color, zorder=3)
    if hi > 0:
        ax_a.plot([lo / 2, hi * 2], [lo / 2, hi * 2], color="k", lw=0.8, ls="--", label="numeric = analytic")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    ax_a.set_xlabel("|dL/dw| from the backward (h = d eps/dt)")
    ax_a.set_ylabel("|dL/dw| by central finite differences")
    ax_a.set_title(f"L = sum_k g_k t_k, fixed random g; filled: dL/dw > 0, hollow: < 0; "
                   f"signs agree {agree}/{total}", fontsize=8)
    ax_a.legend(fontsize=7)
    ax_e.axhline(report.rtol, color="tab:red", ls="--", label=f"tolerance {report.rtol:g}")
    ax_e.set_yscale("log")
    ax_e.set_xticks(range(len(report.layers)))
    ax_e.set_xticklabels([f"{l.name}\n({len(l.indices)} checked, {l.skipped + l.skipped_order} skipped)"
                          for l in report.layers], fontsize=7, rotation=20, ha="right")
    ax_e.set_ylabel(f"relative error (0 drawn at {floor:g})")
    ax_e.set_title("per checked weight", fontsize=9)
    ax_e.legend(fontsize=7)
    for ax in (ax_a, ax_e):
        ax.grid(alpha=0.3)
    verdict = "passed" if report.passed else "FAILED"
    fig.suptitle(title or f"Gradient check: backward vs finite differences ({verdict})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_reverse_gradient(report, path, *, title: str | None = None) -> Path:
    """The reverse-gradient problem (Fig. 4, Eq. 11; see :func:`eventsnn.inspect.reverse_gradient`).

    Left: the spike response kernel eps(s), its derivative d eps/ds (negative
    beyond the peak: there h = d eps/dt reverses the gradient of an input
    event) and h = exp(-s/tau_grad) (always positive), over the histogram of
    the lags s = t_k - t_m of the gradient terms, the reversed ones in red.
    Right: share of reversed terms per layer for both kernels.
    """
    import numpy as np

    from .kernels import deps, eps

    plt = _pyplot()
    fig, (ax_k, ax_b) = plt.subplots(1, 2, figsize=(12, 5.6), gridspec_kw={"width_ratios": [1.2, 1]})
    s_max = max(report.t_end, 1e-3)
    s = np.linspace(0.0, s_max, 400)
    e = eps(s, report.tau_m, report.tau_s)
    d = deps(s, report.tau_m, report.tau_s)
    peak = float(s[np.argmax(e)])
    ax_h = ax_k.twinx()
    dep = [r for r in report.rows if r.kernel == "depsilon"]
    if dep:
        edges = dep[0].lag_edges
        counts = np.sum([r.lag_counts for r in dep], axis=0)
        rev = np.sum([r.lag_reversed for r in dep], axis=0)
        width = np.diff(edges)
        ax_h.bar(edges[:-1], counts, width, align="edge", color="tab:gray", alpha=0.3,
                 label="gradient terms G_k x dt_k/dt_m by lag (h = d eps/dt)")
        ax_h.bar(edges[:-1], rev, width, align="edge", color="tab:red", alpha=0.55, label="of which reversed")
        ax_h.set_ylabel("number of terms (examined spikes; log scale)")
        ax_h.set_yscale("log")
        ax_h.set_ylim(0.8, 3.0 * max(int(counts.max()), 1))
    ax_k.axvspan(peak, s_max, color="tab:red", alpha=0.06)
    ax_k.plot(s, e / e.max(), color="k", lw=1.5, label="eps(s), the spike response kernel (peak 1)")
    ax_k.plot(s, d / np.abs(d).max(), color="tab:purple", lw=1.2,
              label="h = d eps/ds (scaled): < 0 beyond the peak")
    ax_k.plot(s, np.exp(-s / report.tau_grad), color="tab:green", lw=1.2,
              label=f"h = exp(-s/{report.tau_grad:g}): always > 0")
    ax_k.axhline(0, color="k", lw=0.5)
    ax_k.axvline(peak, color="tab:red", ls=":", lw=1)
    ax_k.text(peak, -0.55, f" kernel peak s* = {peak:.2f}\n falling part: reversed", color="tab:red", fontsize=8)
    ax_k.set_xlabel("lag s = t_k - t_m (model units)")
    ax_k.set_ylabel("kernel value (scaled)")
    ax_k.set_ylim(-1.05, 1.15)
    ax_k.set_zorder(ax_h.get_zorder() + 1)
    ax_k.patch.set_visible(False)
    handles = ax_k.get_legend_handles_labels()
    hh = ax_h.get_legend_handles_labels()
    ax_k.legend(handles[0] + hh[0], handles[1] + hh[1], fontsize=7, loc="upper center",
                bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax_k.set_title("Eq. 11: sign(dL/dt_m) = sign(G_k) sign(w) sign(h(t_k - t_m))", fontsize=9)
    kernels = list(dict.fromkeys(r.kernel for r in report.rows))
    layers = list(dict.fromkeys((r.layer, r.name) for r in report.rows))
    width = 0.8 / max(len(kernels), 1)
    colors = {"depsilon": "tab:purple", "exp": "tab:green"}
    for j, kern in enumerate(kernels):
        vals = [next((100 * r.fraction for r in report.rows if r.kernel == kern and r.layer == l), 0.0)
                for l, _ in layers]
        xs = np.arange(len(layers)) + (j - (len(kernels) - 1) / 2) * width
        bars = ax_b.bar(xs, vals, width, color=colors.get(kern), label=f"h = {kern}: "
                        f"{100 * report.totals(kern)['fraction']:.2f}% of all terms")
        for b, v in zip(bars, vals):
            ax_b.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.2f}", ha="center",
                      va="bottom", fontsize=7)
    ax_b.set_xticks(range(len(layers)))
    ax_b.set_xticklabels([n for _, n in layers], fontsize=7, rotation=20, ha="right")
    ax_b.set_ylabel("reversed gradient terms (%)")
    ax_b.set_title("terms G_k x dt_k/dt_m with sign opposite to sign(G_k) sign(w a_m)", fontsize=9)
    ax_b.legend(fontsize=8)
    for ax in (ax_k, ax_b):
        ax.grid(alpha=0.3)
    fig.suptitle(title or "The reverse-gradient problem (Fig. 4): h = d eps/dt vs h = exp", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_raster(sim, path, *, layers=None, title: str | None = None) -> Path:
    """Spike rasters of a simulation (see :func:`eventsnn.inspect.simulate`): one panel for
    the input events and one per layer; neuron index against time.

    Parameters
    ----------
    sim : Simulation
    path : str or os.PathLike
        Output PNG.
    layers : sequence of int, optional
        Layers to draw (default all); the input panel is always drawn.
    """
    import numpy as np

    plt = _pyplot()
    n = len(sim.spikes)
    chosen = list(range(n)) if layers is None else [int(l) % n if -n <= int(l) < n else None for l in layers]
    if any(c is None for c in chosen):
        raise ValueError(f"layers must lie in [-{n}, {n})")
    panels = [("input events", sim.inputs, None)] + [
        (f"layer {l}: {sim.layer_names[l]}", sim.spikes[l], l) for l in chosen]
    heights = [1.6 if sim.inputs.n_neurons > 50 else 1.0] + [
        1.6 if sim.spikes[l].n_neurons > 50 else 1.0 for l in chosen]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.8 + 1.35 * sum(heights)), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    bar = 0.012 * sim.t_end  # width of an input impulse drawn as a short bar
    for ax, (name, st, l) in zip(axes[:, 0], panels):
        few = st.n_neurons <= 20
        if l is None and st.n_events and np.any(st.amplitudes != 1.0):
            lim = float(np.max(np.abs(st.amplitudes))) or 1.0
            cmap = plt.get_cmap("coolwarm")
            colors = cmap((st.amplitudes / lim + 1.0) / 2.0)
            ax.hlines(st.neurons, st.times, st.times + bar, colors=colors, lw=1.2 if few else 0.8,
                      rasterized=True)
            sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(-lim, lim))
            cax = ax.inset_axes([0.955, 0.1, 0.012, 0.8])  # inside: the time axes stay aligned
            fig.colorbar(sm, cax=cax)
            cax.set_title("amplitude", fontsize=7)
            cax.tick_params(labelsize=6)
        else:
            ax.scatter(st.times, st.neurons, marker="|", s=90 if few else 14, color="k",
                       linewidths=1.5 if few else 0.7, rasterized=True)
        if few:
            ax.set_yticks(range(st.n_neurons))
            ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(-0.5, max(st.n_neurons, 1) - 0.5)
        ax.set_ylabel("neuron")
        ax.set_title(f"{name}: {st.n_events} events from {st.n_neurons} neurons", fontsize=8, loc="left")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (model units)")
    axes[-1, 0].set_xlim(-0.02 * sim.t_end, sim.t_end * 1.02)
    what = f"sample {sim.sample}" if sim.sample is not None else "one sample"
    if sim.label is not None:
        what += f" (label {sim.label})"
    fig.suptitle(title or f"Spike trains of {what} in {sim.arch}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return _save(fig, path, dpi=80)


def plot_membrane(sim, neurons, path, *, title: str | None = None) -> Path:
    """Membrane potentials of traced neurons with the exact threshold crossings.

    The recorded grid values are joined with the exact spike times: at each
    spike the curve reaches the threshold exactly at t_k and drops to 0 (the
    inputs before t_k are forgotten).

    Parameters
    ----------
    sim : Simulation
        With membrane traces (``membrane_points`` > 0).
    neurons : int or sequence of int
        Traced neurons of ``sim.membrane_layer`` to draw, one panel each.
    path : str or os.PathLike
    """
    import numpy as np

    neurons = [int(n) for n in np.atleast_1d(neurons)]
    if not neurons:
        raise ValueError("no neuron to plot")
    traces = [sim.trace(n) for n in neurons]  # ValueError if not recorded
    plt = _pyplot()
    l = sim.membrane_layer
    fig, axes = plt.subplots(len(neurons), 1, figsize=(9, 1.2 + 2.2 * len(neurons)), sharex=True,
                             squeeze=False)
    theta = sim.threshold
    for ax, n, (grid, u) in zip(axes[:, 0], neurons, traces):
        tk = sim.spike_times(l, n)
        times = np.concatenate([grid, tk, tk])
        vals = np.concatenate([u, np.full(tk.size, theta), np.zeros(tk.size)])
        order_key = np.concatenate([np.ones(grid.size), np.zeros(tk.size), np.full(tk.size, 2.0)])
        order = np.lexsort((order_key, times))
        ax.plot(times[order], vals[order], color="k", lw=1.1, label="membrane potential u(t)")
        ax.axhline(theta, color="tab:gray", ls="--", lw=1, label="threshold")
        if tk.size:
            ax.plot(tk, np.full(tk.size, theta), "o", color="tab:orange", ms=6,
                    label="exact crossings t_k (then reset to 0)")
            for t in tk:
                ax.axvline(t, color="tab:orange", lw=0.6, alpha=0.6)
        ax.set_ylabel("u (threshold units)")
        times_txt = ", ".join(f"{t:.4f}" for t in tk[:6]) + (" ..." if tk.size > 6 else "")
        ax.set_title(f"layer {l} ({sim.layer_names[l]}), neuron {n}: {tk.size} spike{'' if tk.size == 1 else 's'}"
                     + (f" at t = {times_txt}" if tk.size else ""), fontsize=8, loc="left")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (model units)")
    what = f"sample {sim.sample}" if sim.sample is not None else "one sample"
    if sim.label is not None:
        what += f" (label {sim.label})"
    fig.suptitle(title or f"Membrane potential, {what} ({len(traces[0][0])} points per trace + exact crossings)",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------
# continuous vs discrete time
# ----------------------------------------------------------------------------------
def plot_engine_scaling(data: dict, path, *, title: str | None = None) -> Path:
    """Cost of a training step per sample of both engines, against the number of clock
    steps T and against the number of spikes (from :func:`eventsnn.bench.engine_scaling`).

    Parameters
    ----------
    data : dict
        ``by_steps`` and ``by_spikes`` rows (seconds per sample, spikes per sample).
    path : str or os.PathLike
    """
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    st = data["by_steps"]
    T = [r["steps"] for r in st]
    a1.loglog(T, [1e3 * r["continuous_s_per_sample"] for r in st], "o-", color="tab:blue",
              label="continuous (exact; does not see T)")
    a1.loglog(T, [1e3 * r["discrete_s_per_sample"] for r in st], "s-", color="tab:red",
              label="discrete (official clock, dt = t_end/T)")
    if st and "discrete_every_step_s_per_sample" in st[0]:
        a1.loglog(T, [1e3 * r["discrete_every_step_s_per_sample"] for r in st], "^--", color="tab:orange",
                  label="discrete, every step through BLAS (official computation)")
    a1.set_xlabel("clock steps T over the same window")
    a1.set_ylabel("ms per training sample (forward + backward)")
    a1.set_title("cost vs number of time steps", fontsize=10)
    sp = data["by_spikes"]
    a2.loglog([r["continuous_spikes_per_sample"] for r in sp], [1e3 * r["continuous_s_per_sample"] for r in sp],
              "o-", color="tab:blue", label="continuous")
    a2.loglog([r["discrete_spikes_per_sample"] for r in sp], [1e3 * r["discrete_s_per_sample"] for r in sp],
              "s-", color="tab:red", label=f"discrete, T = {sp[0]['steps'] if sp else '-'}")
    a2.set_xlabel("spikes per sample (all layers; hidden gains scaled)")
    a2.set_ylabel("ms per training sample")
    a2.set_title("cost vs number of spikes", fontsize=10)
    for ax in (a1, a2):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title or f"{data.get('arch', '')}: cost of each engine (batch {data.get('batch', '-')})",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_dt_convergence(report, path, *, title: str | None = None) -> Path:
    """The discrete clock against exact continuous time at decreasing dt
    (from :func:`eventsnn.convergence.dt_convergence`): count mismatch and spike-time
    error per layer, and the agreement of the predicted classes.

    Parameters
    ----------
    report : ConvergenceReport or its ``to_dict()``
    path : str or os.PathLike
    """
    d = report.to_dict() if hasattr(report, "to_dict") else report
    rows = d["rows"]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    dt = [r["dt"] for r in rows]
    for l, name in enumerate(d["layers"]):
        mism = [100 * r["layers"][l]["pairs_mismatched"] for r in rows]
        axes[0].plot(dt, mism, "o-", label=f"layer {l} ({name})")
        te = [r["layers"][l]["time_error"] for r in rows]
        pts = [(x, y) for x, y in zip(dt, te) if y]
        if pts:
            axes[1].loglog(*zip(*pts), "o-", label=f"layer {l} ({name})")
    if dt:
        axes[1].loglog(dt, [x / 2 for x in dt], "k--", lw=0.8, label="dt / 2")
    axes[0].set_xscale("log")
    axes[0].set_ylabel("(sample, neuron) pairs with another count (%)")
    axes[0].set_title("spike-count mismatch", fontsize=10)
    axes[1].set_ylabel("mean |t_discrete - t_exact| (model units)")
    axes[1].set_title("spike-time error (pairs with equal counts)", fontsize=10)
    axes[2].plot(dt, [100 * (1 - r["agreement"]) for r in rows], "o-", color="k",
                 label="samples with another predicted class")
    if rows and rows[0].get("accuracy_diff") is not None:
        axes[2].plot(dt, [100 * r["accuracy_diff"] for r in rows], "s-", color="tab:red",
                     label="accuracy difference (discrete - exact)")
    axes[2].axhline(0.0, color="tab:gray", lw=0.8)
    axes[2].set_xscale("log")
    axes[2].set_ylabel("percentage points")
    axes[2].set_title("outputs (count readout for both)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("clock step dt (model units)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title or f"Discrete clock vs exact continuous time ({d['n_samples']} samples, "
                 f"window (0, {d['t_end']:g}])", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_augmentation(images, augmented, path, *, title: str = "Augmentation", labels=None) -> Path:
    """Each image above the versions a training run would see.

    Parameters
    ----------
    images : ndarray (n, H, W) or (n, C, H, W)
        The images as stored (pixel values in [0, 1]).
    augmented : ndarray (k, n, H, W) or (k, n, C, H, W)
        ``k`` augmented versions of each image (e.g. ``k`` epochs' draws).
    path : str or os.PathLike
        Output PNG.
    title : str
    labels : sequence of int, optional
        Class of each image, shown above its column.

    Returns
    -------
    pathlib.Path
    """
    import numpy as np

    images, augmented = np.asarray(images), np.asarray(augmented)
    if images.ndim not in (3, 4) or augmented.shape[1:] != images.shape:
        raise ValueError(f"augmented versions of shape (k, {images.shape}) expected, got {augmented.shape}")

    def show(ax, img):
        img = np.moveaxis(img, 0, -1) if img.ndim == 3 else img  # (C, H, W) -> (H, W, C)
        ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    plt = _pyplot()
    k, n = augmented.shape[:2]
    fig, axes = plt.subplots(k + 1, n, figsize=(1.2 * n, 1.25 * (k + 1)), squeeze=False)
    for j in range(n):
        show(axes[0, j], images[j])
        if labels is not None:
            axes[0, j].set_title(str(labels[j]), fontsize=8)
        for i in range(k):
            show(axes[i + 1, j], augmented[i, j])
    axes[0, 0].set_ylabel("stored", fontsize=8)
    for i in range(k):
        axes[i + 1, 0].set_ylabel(f"draw {i + 1}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def plot_errors(images, labels, predicted, counts, path, *, max_images: int = 48,
                indices=None, title: str = "Errors") -> Path:
    """The confusion matrix of a test set next to the images the network got wrong.

    Parameters
    ----------
    images : ndarray (n, H, W) or (n, C, H, W)
        The samples as pictures: pixel values in [0, 1] (C = 3: RGB); other
        channel counts (e.g. N-MNIST's two polarities of event counts) are summed
        and scaled to [0, 1] per image.
    labels, predicted : array_like of int (n,)
        True and predicted classes.
    counts : ndarray int (n, n_classes)
        Output spike counts, shown under each wrong image (the true class's count,
        then the predicted class's).
    path : str or os.PathLike
        Output PNG.
    max_images : int
        Show at most this many wrong images (the first in test-set order).
    indices : array_like of int (n,), optional
        Test-set index of every sample (default 0..n-1), shown above each image.
    title : str

    Returns
    -------
    pathlib.Path
    """
    import numpy as np

    from .loss import confusion_matrix

    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    counts = np.asarray(counts)
    n = len(labels)
    if images.ndim not in (3, 4) or len(images) != n or predicted.shape != (n,) or counts.shape[0] != n:
        raise ValueError(f"{n} labels need {n} images (n, H, W) or (n, C, H, W), {n} predictions and "
                         f"counts (n, n_classes); got {images.shape}, {predicted.shape}, {counts.shape}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    indices = np.arange(n) if indices is None else np.asarray(indices)
    k = counts.shape[1]
    conf = confusion_matrix(labels, predicted, k)
    wrong = np.flatnonzero(predicted != labels)
    shown = wrong[:max_images]

    def picture(img):
        if img.ndim == 3 and img.shape[0] == 3:
            return np.clip(np.moveaxis(img, 0, -1), 0, 1)
        if img.ndim == 3:
            img = img.sum(axis=0)
            return img / img.max() if img.max() > 0 else img
        return img

    plt = _pyplot()
    cols = min(max(len(shown), 1), 8)
    rows = max(-(-len(shown) // cols), 1)
    fig = plt.figure(figsize=(4.6 + 1.15 * cols, max(3.8, 1.45 * rows + 0.9)))
    grid = fig.add_gridspec(rows, cols + 4, wspace=0.35, hspace=0.6)
    ax = fig.add_subplot(grid[:min(rows, 4), :4])
    off = conf.astype(np.float64)
    np.fill_diagonal(off, np.nan)
    top = max(np.nanmax(off) if wrong.size else 1, 1)
    ax.imshow(off, cmap="Reds", vmin=0, vmax=top)
    for i in range(k):
        for j in range(k):
            if conf[i, j] and k <= 20:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=6 if k > 10 else 7,
                        color="0.4" if i == j else ("white" if conf[i, j] > top / 2 else "black"))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(k) if k <= 20 else [])
    ax.set_yticks(range(k) if k <= 20 else [])
    ax.tick_params(labelsize=7)
    ax.set_title(f"{wrong.size} errors of {n} (diagonal grey: correct)", fontsize=8)
    for m, s in enumerate(shown):
        a = fig.add_subplot(grid[m // cols, 4 + m % cols])
        a.imshow(picture(images[s]), cmap="gray", vmin=0, vmax=1)
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"#{indices[s]}: {labels[s]}\u2192{predicted[s]}", fontsize=7)
        a.set_xlabel(f"spikes {labels[s]}: {counts[s, labels[s]]}, {predicted[s]}: {counts[s, predicted[s]]}",
                     fontsize=6)
    if wrong.size > len(shown):
        fig.text(0.99, 0.01, f"first {len(shown)} of {wrong.size} errors shown", ha="right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=110)
