"""Run folders written file by file (config.yaml, summary.json, metrics.csv) as cl-run
writes them, and the report made of them: the report tests' fixtures, fast to build."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cl_runner import report

COLUMNS = ["train_task", "epoch", "eval_task", "split", "loss", "acc", "global_epoch", "examples"]
SPLIT_MNIST = ["0-1-2-3-4", "5-6-7-8-9"]
GOOD = [[0.95, 0.1], [0.88, 0.848]]  # accuracy matrix: row i = after training task i


def write_run(folder: Path, matrix=GOOD, seed: int = 0, dataset=("split_mnist", SPLIT_MNIST), strategy=("naive", []),
              share: float = 0.1, summary: dict | None = None) -> Path:
    """A completed run as cl-run writes it: two epochs per task (test rows at the last),
    the untrained model's rows first, summary.json computed from the same matrix.
    dataset: (name, task names); strategy: (name, plugins)."""
    matrix = np.asarray(matrix, dtype=float)
    num_tasks = matrix.shape[1]
    folder.mkdir(parents=True)
    tasks = dataset[1]
    config = {"seed": seed, "dataset": {"name": dataset[0], "tasks": [name.split("-") for name in tasks]},
              "strategy": {"name": strategy[0], "plugins": list(strategy[1])}, "replay": {"share": share},
              "data": {"root": f"/data/{seed}"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rows = []
    for split in ("val", "test"):
        rows += [[-1, 0, j, split, 2.3, 0.1, 0, 100] for j in range(num_tasks)]
    for i in range(matrix.shape[0]):
        for epoch in (1, 2):
            splits = ("val", "test") if epoch == 2 else ("val",)
            for split in splits:
                rows += [[i, epoch, j, split, 0.5, float(matrix[i, j]), 2 * i + epoch, 100] for j in range(num_tasks)]
    with open(folder / "metrics.csv", "w", newline="") as f:  # csv's \r\n line ends, as cl-run
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    own = {"status": "completed", "tasks": list(tasks), "final_test_acc": matrix[-1].round(6).tolist(),
           "accuracy_matrix": matrix.round(6).tolist()}
    (folder / "summary.json").write_text(json.dumps({**own, **(summary or {})}))
    return folder


def make_report(tmp_path: Path, out_name: str = "out") -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    """report.csv, runs.csv (by folder name), report.md and report.html of tmp_path/runs."""
    out = tmp_path / out_name
    report.report([tmp_path / "runs"], out)
    runs = pd.read_csv(out / "runs.csv")
    runs.index = [Path(p).name for p in runs["path"]]
    return pd.read_csv(out / "report.csv"), runs, (out / "report.md").read_text(), (out / "report.html").read_text()


def settings_rows(md: str) -> list[list[str]]:
    """The cells of report.md's settings table (header first)."""
    block = "| " + md.split("\n\n| ", 1)[1].split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in block.splitlines()
            if not line.startswith("|---")]
