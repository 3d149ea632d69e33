"""The standard continual-learning metrics, computed from a run's `metrics.csv`.

R[i][j] is the test accuracy on task j after training task i (all j, so forward transfer
can be read too). With T tasks and b_j the accuracy of the untrained model (rows with
train_task = -1):

- average accuracy  = mean_j R[T-1][j]
- forgetting        = mean_{j<T-1} ( max_{i<T-1} R[i][j] - R[T-1][j] )   (Chaudhry et al. 2018)
- backward transfer = mean_{j<T-1} ( R[T-1][j] - R[j][j] )               (Lopez-Paz & Ranzato 2017)
- forward transfer  = mean_{j>0}   ( R[j-1][j] - b_j )

`summarize` works on any matrix, so the sweep report reuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def accuracy_matrix(metrics: pd.DataFrame, split: str = "test") -> np.ndarray:
    """Rows: each trained task (its last evaluated epoch); columns: every task."""
    rows = metrics[(metrics["split"] == split) & (metrics["train_task"] >= 0)]
    last = rows.groupby("train_task")["epoch"].transform("max") == rows["epoch"]
    table = rows[last].pivot_table(index="train_task", columns="eval_task", values="acc")
    return table.sort_index().sort_index(axis=1).to_numpy()


def initial_accuracy(metrics: pd.DataFrame, split: str = "test") -> np.ndarray | None:
    rows = metrics[(metrics["split"] == split) & (metrics["train_task"] == -1)].sort_values("eval_task")
    return rows["acc"].to_numpy() if len(rows) else None


def summarize(matrix: np.ndarray, initial: np.ndarray | None = None) -> dict[str, float | None]:
    """Average accuracy, forgetting, BWT and FWT of an accuracy matrix (None where undefined)."""
    matrix = np.asarray(matrix, dtype=float)
    trained, tasks = matrix.shape
    out: dict[str, float | None] = {
        "average_accuracy": float(matrix[-1].mean()),
        "forgetting": None,
        "backward_transfer": None,
        "forward_transfer": None,
    }
    if trained != tasks or tasks < 2:  # e.g. joint training: one row, no sequence
        return out
    last = matrix[-1]
    out["forgetting"] = float(np.mean([matrix[: tasks - 1, j].max() - last[j] for j in range(tasks - 1)]))
    out["backward_transfer"] = float(np.mean([last[j] - matrix[j, j] for j in range(tasks - 1)]))
    if initial is not None and len(initial) == tasks:
        out["forward_transfer"] = float(np.mean([matrix[j - 1, j] - initial[j] for j in range(1, tasks)]))
    return out


def from_csv(path: str | Path) -> dict:
    """The accuracy matrix and its summary for a run's metrics.csv."""
    metrics = pd.read_csv(path)
    matrix = accuracy_matrix(metrics)
    return {"accuracy_matrix": matrix.tolist(), **summarize(matrix, initial_accuracy(metrics))}
