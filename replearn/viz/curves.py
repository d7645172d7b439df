"""Training-curve figure from the per-epoch metrics."""

from __future__ import annotations

from matplotlib.figure import Figure


def plot_training_curves(metrics: list[dict], title: str = "", ax=None) -> Figure:
    """Loss and accuracy per epoch (train vs validation). With ``ax``, draws accuracy only into it."""
    epochs = [m["epoch"] for m in metrics]
    if ax is not None:
        ax.plot(epochs, [m["train_acc"] for m in metrics], "o-", label="train")
        ax.plot(epochs, [m["val_acc"] for m in metrics], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.legend()
        return ax.figure
    fig = Figure(figsize=(9, 3.6), dpi=110, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [m["train_loss"] for m in metrics], "o-", label="train")
    loss_ax.plot(epochs, [m["val_loss"] for m in metrics], "s-", label="validation")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * m["train_acc"] for m in metrics], "o-", label="train")
    acc_ax.plot(epochs, [100 * m["val_acc"] for m in metrics], "s-", label="validation")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.legend()
    for a in (loss_ax, acc_ax):
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig
