"""The files a run writes as it goes: CSV logs flushed row by row, and files replaced whole.

Rows are written when an epoch finishes, so an interrupted run keeps every finished
epoch; `summary.json`, `config.yaml`, the checkpoint and the figures are written to a
temporary name beside their own and renamed (`replaced`), so a reader never sees half a
file and a failed write leaves no temporary file behind. `summary.json` carries a `status`
(running / completed / failed / interrupted), so a partial result never looks complete.
Every failed write (a full disk, a folder made read-only or removed) raises `WriteError`,
naming the file. `RunLogs` is a run's pair of logs: metrics.csv (evaluation rows) and
train_log.csv (one row per epoch with each loss term); the run's experiment trackers, once
started, are told of each epoch's rows after they are on disk.
"""

from __future__ import annotations

import csv
import json
import os
from contextlib import contextmanager
from pathlib import Path

from . import timing
from .errors import WriteError

METRIC_COLUMNS = ["train_task", "epoch", "eval_task", "split", "loss", "acc", "global_epoch", "examples"]


def temporary(path: Path) -> Path:
    """Where `path` is written before it is renamed: hidden, same suffix (matplotlib reads it)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


@contextmanager
def replaced(path: Path):
    """Yield a temporary path to write; on success it replaces `path`, on failure it is removed."""
    tmp = temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        if not path.parent.is_dir():  # the run folder was removed under the run
            raise WriteError(path.parent, FileNotFoundError(2, "the folder no longer exists")) from None
        raise WriteError(path, err) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # never made, or the folder is gone
        pass


class CsvLog:
    """Append-only CSV with a fixed header; each `write` is flushed to disk."""

    def __init__(self, path: Path, columns: list[str], keep=None):
        """`keep(row) -> bool` (on resume) keeps the matching rows of an existing file; a row
        cut short by a failed write is never kept. The kept rows are written to a new file that
        replaces the old one, so a failure here loses nothing."""
        self.path, self.columns = path, columns
        kept = []
        if keep is not None and path.exists():
            with open(path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if None not in row.values() and keep(row)]
        with replaced(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
        try:
            self._file = open(path, "a", newline="")
        except OSError as err:
            raise WriteError(path, err) from None
        self._writer = csv.DictWriter(self._file, fieldnames=columns)

    def write(self, rows: list[dict]) -> None:
        try:
            self._writer.writerows(rows)
            self._file.flush()
        except OSError as err:
            raise WriteError(self.path, err) from None

    def close(self) -> None:
        """Close; a failed flush of the last rows is reported (the file is closed regardless)."""
        try:
            self._file.close()
        except OSError as err:
            raise WriteError(self.path, err) from None


class RunLogs:
    """metrics.csv and train_log.csv of a run folder. On resume (`done_tasks` given) the rows
    of the tasks before `done_tasks` are kept and the rest dropped."""

    def __init__(self, out: Path, term_names: list[str], done_tasks: int | None = None):
        keep = (lambda row: int(row["train_task"]) < done_tasks) if done_tasks is not None else None
        self.metrics = CsvLog(out / "metrics.csv", METRIC_COLUMNS, keep)
        self.train = CsvLog(out / "train_log.csv", ["train_task", "epoch", "global_epoch", "loss", *term_names, "seconds"], keep)
        self.trackers = None  # cl_runner.trackers.Trackers, once the run has started them

    @timing.phase("outputs")
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
        """Close both logs, even when the first cannot be flushed."""
        try:
            self.metrics.close()
        finally:
            self.train.close()


def write_json(path: Path, data: dict, in_place_if_full: bool = False) -> None:
    """Replace `path` with `data` as JSON. `in_place_if_full`: if the replacement cannot be
    written (a full disk has no room for a second copy), overwrite the file in place; a run's
    last status is worth that risk, since the file it replaces would say `running`."""
    text = json.dumps(data, indent=2) + "\n"
    try:
        with replaced(path) as tmp:
            tmp.write_text(text)
    except WriteError:
        if not (in_place_if_full and path.exists()):
            raise
        try:
            with open(path, "r+") as f:  # r+: a folder made read-only still lets a file be rewritten
                f.truncate()
                f.write(text)
        except OSError as err:
            raise WriteError(path, err) from None


def write_matrix(matrix, path: Path) -> None:
    """accuracy_matrix.csv: a header `after_task,task_0,...`, then one row per trained task
    (a task not evaluated then: an empty field)."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["after_task", *(f"task_{j}" for j in range(len(matrix[0])))])
        for i, row in enumerate(matrix):
            writer.writerow([i, *("" if value != value else repr(float(value)) for value in row)])  # NaN != NaN


def check_writable(folder: Path) -> None:
    """Fail before training if results could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise WriteError(folder, err) from None
