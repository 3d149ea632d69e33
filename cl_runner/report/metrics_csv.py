"""A strict reader of a run's metrics.csv: every row whole, every number a number.

pandas reads a last line cut short by a crash or a full disk (`1,3,1,test,0.3,0.`) without
a word ("0." is 0.0), fills missing fields with NaN and keeps two processes' copies of the
same row; a report built on that averages garbage in. So the file is checked first, and
the first problem found is raised as `MalformedMetrics` with a reason a person can act on.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

# One row per (trained task, epoch, evaluated task, split): a second one means two
# processes wrote into one run folder.
ROW_KEY = ["train_task", "epoch", "eval_task", "split"]
INTEGER_COLUMNS = ["train_task", "epoch", "eval_task", "global_epoch", "examples"]
REQUIRED_COLUMNS = [*ROW_KEY, "acc"]


class MalformedMetrics(ValueError):
    """metrics.csv cannot be trusted; the message says where and why."""


def read_metrics(path: Path) -> pd.DataFrame:
    """The rows of metrics.csv with numeric columns as numbers, or MalformedMetrics."""
    text = path.read_text()
    lines = text.splitlines()
    if not lines:
        raise MalformedMetrics("metrics.csv is empty")
    if not text.endswith("\n"):
        raise MalformedMetrics(f"metrics.csv line {len(lines)} is cut short (the file does not end with a newline)")
    header, *rows = list(csv.reader(lines))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise MalformedMetrics(f"metrics.csv has no column {', '.join(missing)} (header: {','.join(header)})")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise MalformedMetrics(f"metrics.csv line {number} has {len(row)} fields, the header {len(header)} "
                                   "(a row cut short or run together)")
    table = pd.DataFrame(rows, columns=header)
    for column in header:
        if column != "split":
            table[column] = _numbers(table[column], column)
    _check_unique(table)
    return table


def _numbers(texts: pd.Series, column: str) -> pd.Series:
    values = pd.to_numeric(texts, errors="coerce")
    if column in INTEGER_COLUMNS:
        bad = values.isna() | (values != values.round())
    elif column == "acc":
        bad = ~values.between(0, 1)  # also NaN
    else:  # a loss may be inf or nan (a confident wrong answer), but is always written out
        bad = values.isna() & (texts.str.strip().str.lower() != "nan")
    if bad.any():
        index = int(bad.to_numpy().argmax())
        allowed = "an integer" if column in INTEGER_COLUMNS else "a number in [0, 1]" if column == "acc" else "a number"
        raise MalformedMetrics(f"metrics.csv line {index + 2}: {column} {texts.iloc[index]!r} is not {allowed}")
    return values.astype("int64") if column in INTEGER_COLUMNS else values


def _check_unique(table: pd.DataFrame) -> None:
    repeated = table[table.duplicated(ROW_KEY, keep=False)]
    if repeated.empty:
        return
    first = repeated.iloc[0]
    lines = [int(i) + 2 for i in repeated.index[(repeated[ROW_KEY] == first[ROW_KEY]).all(axis=1)]]
    where = ", ".join(f"{k}={first[k]}" for k in ROW_KEY)
    raise MalformedMetrics(f"metrics.csv has {len(lines)} rows for {where} (lines "
                           f"{', '.join(map(str, lines))}: two processes wrote into this folder?)")
