"""The files a run writes as it goes: CSV logs flushed row by row, and atomic JSON.

Rows are written when an epoch finishes, so an interrupted run keeps every finished
epoch; `summary.json` is replaced atomically (write, then rename) and carries a `status`
(running / completed / failed / interrupted), so a partial result never looks complete.
`RunLogs` is a run's pair of logs: metrics.csv (evaluation rows) and train_log.csv (one row
per epoch with each loss term); the run's experiment trackers, once started, are told of each
epoch's rows after they are on disk.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .errors import UserError

METRIC_COLUMNS = ["train_task", "epoch", "eval_task", "split", "loss", "acc", "global_epoch", "examples"]


class CsvLog:
    """Append-only CSV with a fixed header; each `write` is flushed to disk."""

    def __init__(self, path: Path, columns: list[str], keep=None):
        """`keep(row) -> bool` (on resume) keeps the matching rows of an existing file."""
        self.path, self.columns = path, columns
        kept = []
        if keep is not None and path.exists():
            with open(path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if keep(row)]
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns)
        self._writer.writeheader()
        self._writer.writerows(kept)
        self._file.flush()

    def write(self, rows: list[dict]) -> None:
        self._writer.writerows(rows)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RunLogs:
    """metrics.csv and train_log.csv of a run folder. On resume (`done_tasks` given) the rows
    of the tasks before `done_tasks` are kept and the rest dropped."""

    def __init__(self, out: Path, term_names: list[str], done_tasks: int | None = None):
        keep = (lambda row: int(row["train_task"]) < done_tasks) if done_tasks is not None else None
        self.metrics = CsvLog(out / "metrics.csv", METRIC_COLUMNS, keep)
        self.train = CsvLog(out / "train_log.csv", ["train_task", "epoch", "global_epoch", "loss", *term_names, "seconds"], keep)
        self.trackers = None  # cl_runner.trackers.Trackers, once the run has started them

    def epoch(self, train_row: dict | None, eval_rows: list[dict]) -> None:
        """An epoch's rows, back to back, after its evaluation: a Ctrl-C during training or
        evaluation leaves the epoch out of both files, never in one only. `train_row` is None
        for the evaluation of the untrained model."""
        if train_row is not None:
            self.train.write([train_row])
        self.metrics.write(eval_rows)
        if self.trackers is not None:
            self.trackers.epoch(train_row, eval_rows)

    def close(self) -> None:
        self.metrics.close()
        self.train.close()


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def check_writable(folder: Path) -> None:
    """Fail before training if results could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output folder {folder} is not writable ({err.strerror})") from err
