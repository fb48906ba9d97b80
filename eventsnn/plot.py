"""Figures (matplotlib, imported lazily, Agg backend: no display needed).

* :func:`plot_training_curves` — loss and accuracy per epoch of one or more
  runs (from their ``metrics.json`` histories).
* :func:`plot_spike_flow` — the paper's Fig. 2 for one spike: its input events
  with their gradient shares, the membrane potential with the exact crossing.
"""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(runs: dict, path, *, title: str = "Training curves") -> Path:
    """Plot train loss, train and test accuracy per epoch.

    Parameters
    ----------
    runs : dict of str -> list of dict
        Label -> metrics history (entries with ``epoch``, ``train_loss``,
        ``train_accuracy``, ``test_accuracy``), e.g. ``metrics.json["history"]``.
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
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for label, hist in runs.items():
        ep = [h["epoch"] for h in hist]
        ax_l.plot(ep, [h["train_loss"] for h in hist], marker="o", ms=3, label=label)
        line, = ax_a.plot(ep, [100 * h["test_accuracy"] for h in hist], marker="o", ms=3,
                          label=f"{label}: test")
        ax_a.plot(ep, [100 * h["train_accuracy"] for h in hist], ls="--", color=line.get_color(),
                  label=f"{label}: train")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("count loss per sample")
    ax_l.set_title("training loss")
    ax_l.set_yscale("log")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("accuracy (%)")
    ax_a.set_title("accuracy")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
