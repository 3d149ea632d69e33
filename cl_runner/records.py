"""The files a run writes as it goes: CSV logs flushed row by row, and atomic JSON.

Rows are written when an epoch finishes, so an interrupted run keeps every finished
epoch; `summary.json` is replaced atomically (write, then rename) and carries a `status`
(running / completed / failed / interrupted), so a partial result never looks complete.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

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


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def check_writable(folder: Path) -> None:
    """Fail before training if results could not be saved."""
    from .errors import UserError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output folder {folder} is not writable ({err.strerror})") from err
