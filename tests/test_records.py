"""The metrics writer: rows flushed as written, kept on resume, JSON replaced atomically."""

from __future__ import annotations

import csv
import json

from cl_runner.records import METRIC_COLUMNS, CsvLog, write_json

from .leftovers import temporary_files


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_are_on_disk_as_soon_as_written(tmp_path):
    log = CsvLog(tmp_path / "m.csv", METRIC_COLUMNS)
    row = {"train_task": 0, "epoch": 1, "eval_task": 1, "split": "val", "loss": 0.5, "acc": 0.25, "global_epoch": 1, "examples": 8}
    log.write([row])
    on_disk = _rows(tmp_path / "m.csv")  # read before close: a crash now keeps it
    assert list(on_disk[0]) == METRIC_COLUMNS
    assert on_disk[0]["acc"] == "0.25" and len(on_disk) == 1
    log.close()


def test_resume_keeps_only_matching_rows(tmp_path):
    log = CsvLog(tmp_path / "t.csv", ["train_task", "epoch"])
    log.write([{"train_task": t, "epoch": e} for t in range(3) for e in (1, 2)])
    log.close()
    log = CsvLog(tmp_path / "t.csv", ["train_task", "epoch"], keep=lambda row: int(row["train_task"]) < 2)
    log.write([{"train_task": 2, "epoch": 1}])
    log.close()
    assert [(r["train_task"], r["epoch"]) for r in _rows(tmp_path / "t.csv")] == [
        ("0", "1"), ("0", "2"), ("1", "1"), ("1", "2"), ("2", "1")
    ]


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"status": "running", "long": "x" * 1000})
    write_json(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert not temporary_files(tmp_path)


def test_a_left_temporary_file_is_seen(tmp_path):
    """The check above can fail: the name write_json writes to first is one it finds."""
    from cl_runner.records import temporary

    temporary(tmp_path / "summary.json").write_text("{")
    assert temporary_files(tmp_path) == [".summary.tmp.json"]
