"""Figures (matplotlib, imported lazily, Agg backend: no display needed).

* :func:`plot_training_curves` — loss and accuracy per epoch of one or more
  runs (from their ``metrics.json`` histories).
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
