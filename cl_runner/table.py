"""A CSV file as columns of numpy arrays: how a run reads its own logs back at its end.

A run's logs are small and its own (metrics.csv, train_log.csv), and importing pandas takes
a quarter of a second, a tenth of a short run's fixed cost; so the run reads them with the
csv module into a `Table`. `Table` answers the few questions the end of a run asks, with the
same spelling as a pandas DataFrame -- `t["col"]` (a numpy array), `t[mask]`, `len(t)`,
`t.columns`, `t.sort_values("col")`, `for value, rows in t.groupby("col")` -- so the code
that asks them (`metrics`, `diagnose`, `plots`) takes either; cl-report passes DataFrames.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np


class Table:
    def __init__(self, columns: dict[str, np.ndarray]):
        self._columns = columns
        self._length = len(next(iter(columns.values()))) if columns else 0

    @classmethod
    def read_csv(cls, path: str | Path) -> Table:
        """Every column as int64 when all its values are integers, else float64 (an empty field
        is NaN), else text. ValueError when a row has another number of fields than the header."""
        with open(path, newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty")
            rows = list(reader)
        for number, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path} line {number} has {len(row)} fields, the header {len(header)}")
        texts = list(zip(*rows)) if rows else [()] * len(header)
        return cls({name: _column(values) for name, values in zip(header, texts)})

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._columns[key]
        return Table({name: values[key] for name, values in self._columns.items()})  # a mask or an index

    def sort_values(self, column: str) -> Table:
        return self[np.argsort(self._columns[column], kind="stable")]

    def groupby(self, column: str) -> Iterator[tuple[object, Table]]:
        """(value, its rows) for each value of `column`, in increasing order."""
        values = self._columns[column]
        for value in np.unique(values):
            yield value.item(), self[values == value]


def _column(texts: tuple[str, ...]) -> np.ndarray:
    for kind in (np.int64, np.float64):
        try:
            return np.array([float("nan") if kind is np.float64 and t == "" else kind(t) for t in texts], dtype=kind)
        except ValueError:
            continue
    return np.array(texts, dtype=str)
