"""The continual-learning metrics on hand-built accuracy matrices with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cl_runner import metrics


def test_perfect_memory_has_no_forgetting():
    R = np.array([[0.9, 0.1, 0.1], [0.9, 0.8, 0.1], [0.9, 0.8, 0.7]])
    out = metrics.summarize(R, initial=np.array([0.1, 0.1, 0.1]))
    assert out["average_accuracy"] == pytest.approx(0.8)
    assert out["forgetting"] == pytest.approx(0.0)
    assert out["backward_transfer"] == pytest.approx(0.0)
    assert out["forward_transfer"] == pytest.approx(0.0)


def test_catastrophic_forgetting_signs():
    R = np.array([[1.0, 0.0], [0.2, 0.9]])
    out = metrics.summarize(R, initial=np.array([0.1, 0.05]))
    assert out["forgetting"] == pytest.approx(0.8)
    assert out["backward_transfer"] == pytest.approx(-0.8)
    assert out["forward_transfer"] == pytest.approx(0.0 - 0.05)
    assert out["average_accuracy"] == pytest.approx(0.55)


def test_forgetting_uses_the_best_earlier_accuracy_and_bwt_the_diagonal():
    # Task 0 peaks after task 1 (0.95), not right after training it (0.9).
    R = np.array([[0.9, 0.3, 0.2], [0.95, 0.8, 0.3], [0.5, 0.6, 0.7]])
    out = metrics.summarize(R, initial=np.array([0.1, 0.2, 0.1]))
    assert out["forgetting"] == pytest.approx(((0.95 - 0.5) + (0.8 - 0.6)) / 2)
    assert out["backward_transfer"] == pytest.approx(((0.5 - 0.9) + (0.6 - 0.8)) / 2)
    assert out["forward_transfer"] == pytest.approx(((0.3 - 0.2) + (0.3 - 0.1)) / 2)


def test_positive_backward_transfer():
    R = np.array([[0.6, 0.0], [0.7, 0.9]])
    assert metrics.summarize(R)["backward_transfer"] == pytest.approx(0.1)
    assert metrics.summarize(R)["forward_transfer"] is None  # no untrained baseline given


def test_joint_training_has_no_sequence_metrics():
    out = metrics.summarize(np.array([[0.97, 0.98]]))
    assert out["average_accuracy"] == pytest.approx(0.975)
    assert out["forgetting"] is None and out["backward_transfer"] is None


def test_matrix_from_metrics_csv_takes_each_tasks_last_epoch(tmp_path):
    rows = []
    for train_task in (-1, 0, 1):
        for epoch in ((0,) if train_task < 0 else (1, 2)):
            for eval_task in (0, 1):
                acc = 0.1 if train_task < 0 else (train_task * 10 + epoch * 3 + eval_task) / 100
                rows.append(dict(train_task=train_task, epoch=epoch, eval_task=eval_task, split="test", loss=1.0, acc=acc))
                rows.append(dict(train_task=train_task, epoch=epoch, eval_task=eval_task, split="val", loss=1.0, acc=0.5))
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.csv", index=False)
    out = metrics.from_csv(tmp_path / "metrics.csv")
    assert np.allclose(out["accuracy_matrix"], [[0.06, 0.07], [0.16, 0.17]])
    assert out["forward_transfer"] == pytest.approx(0.07 - 0.1)
