"""The notebook's figures, for any number of tasks, drawn headless with matplotlib.

- curves.png: training loss (and each extra loss term) and every task's validation loss
  over the whole run (top), every task's validation accuracy (bottom); a dotted line
  where each task's training starts.
- accuracy_matrix.png: the test accuracy matrix as a heatmap.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_curves(metrics: pd.DataFrame, train_log: pd.DataFrame, task_names: list[str], path: Path) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    val = metrics[(metrics["split"] == "val") & (metrics["train_task"] >= 0)]
    ax_loss.plot(train_log["global_epoch"], train_log["loss"], color="black", label="train loss")
    for term in [c for c in train_log.columns if c not in ("train_task", "epoch", "global_epoch", "loss", "seconds")]:
        if term != "ce" or len(train_log.columns) > 6:  # 'ce' equals 'loss' when it is the only term
            ax_loss.plot(train_log["global_epoch"], train_log[term], linestyle=":", label=f"train {term}")
    for task, name in enumerate(task_names):
        rows = val[val["eval_task"] == task]
        ax_loss.plot(rows["global_epoch"], rows["loss"], label=f"val loss task {task} ({name})")
        ax_acc.plot(rows["global_epoch"], rows["acc"], label=f"val acc task {task} ({name})")
    starts = train_log.groupby("train_task")["global_epoch"].min() - 1
    for ax in (ax_loss, ax_acc):
        for task, start in starts.items():
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"task {task}", (start, 1), xycoords=("data", "axes fraction"), fontsize=8, va="top")
        ax.grid(True)
        ax.legend(fontsize=8)
    # A penalty such as EWC's can start orders of magnitude above the cross-entropy; on a
    # linear axis every other curve would then be a flat line at zero.
    positive = train_log["loss"][train_log["loss"] > 0]
    if len(positive) and positive.max() > 100 * positive.min():
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("loss (log scale)")
    else:
        ax_loss.set_ylim(bottom=0)
        ax_loss.set_ylabel("loss")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_xlabel("epoch (whole run)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy_matrix(matrix: np.ndarray, task_names: list[str], path: Path) -> None:
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * matrix.shape[1] + 2, 1.0 * matrix.shape[0] + 1.5))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="white" if matrix[i, j] < 0.6 else "black")
    ax.set_xticks(range(matrix.shape[1]), [f"{j}\n{n}" for j, n in enumerate(task_names)])
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in range(matrix.shape[0])])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training task")
    ax.set_title("test accuracy")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
