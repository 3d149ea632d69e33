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

from .table import Table


def accuracy_matrix(metrics, split: str = "test") -> np.ndarray:
    """Rows: each trained task (its last evaluated epoch); columns: every task evaluated then.
    `metrics`: the rows of metrics.csv, as a `cl_runner.table.Table` or a pandas DataFrame."""
    train, evaluated, epoch, acc = (np.asarray(metrics[c]) for c in ("train_task", "eval_task", "epoch", "acc"))
    rows = (np.asarray(metrics["split"]) == split) & (train >= 0)
    last = np.zeros_like(rows)
    for task in np.unique(train[rows]):
        of_task = rows & (train == task)
        last |= of_task & (epoch == epoch[of_task].max())
    tasks, columns = np.unique(train[last]), np.unique(evaluated[last])
    sums, counts = np.zeros((len(tasks), len(columns))), np.zeros((len(tasks), len(columns)))
    i, j = np.searchsorted(tasks, train[last]), np.searchsorted(columns, evaluated[last])
    np.add.at(sums, (i, j), acc[last])
    np.add.at(counts, (i, j), 1)
    with np.errstate(invalid="ignore"):  # a task not evaluated then: NaN
        return sums / counts  # the mean where a row repeats, as a pivot table takes it


def initial_accuracy(metrics, split: str = "test") -> np.ndarray | None:
    """The untrained model's accuracy on every task (train_task -1), or None."""
    rows = metrics[(np.asarray(metrics["split"]) == split) & (np.asarray(metrics["train_task"]) == -1)]
    return np.asarray(rows.sort_values("eval_task")["acc"]) if len(rows) else None


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
    metrics = Table.read_csv(path)
    matrix = accuracy_matrix(metrics)
    return {"accuracy_matrix": matrix.tolist(), **summarize(matrix, initial_accuracy(metrics))}
