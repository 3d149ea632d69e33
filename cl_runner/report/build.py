"""`report(paths, out)`: read every run below paths and write the report files into out."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..records import replaced
from . import html, markdown
from .content import document, setting_label
from .figures import plot_final_vs_key, plot_val_curves, worth_plotting
from .notes import sweep_notes, task_notes, unchanged_notes
from .runs import Run, find_runs, load_run
from .settings import aggregate, fold_pairs, runs_table, swept_keys, task_names


def report(paths: list[Path], out: Path) -> tuple[pd.DataFrame, list[Run]]:
    """Read the runs under paths and write report.csv, runs.csv, the figures, report.md and
    report.html into out; return the table (one row per setting) and the runs."""
    folders = {}  # overlapping PATHs (a sweep and one of its runs) must not count a run twice
    for root in paths:
        for folder in find_runs(root):
            folders.setdefault(folder.resolve(), folder)
    runs = [load_run(folder) for folder in folders.values()]
    fold_pairs(runs)
    keys = swept_keys(runs)
    table = aggregate(runs, keys)
    out.mkdir(parents=True, exist_ok=True)
    # Every file written to a temporary name and renamed (records.replaced): a full disk or a
    # folder made read-only raises WriteError and leaves no half-written file.
    with replaced(out / "report.csv") as tmp:
        table.to_csv(tmp, index=False)
    with replaced(out / "runs.csv") as tmp:
        runs_table(runs, keys).to_csv(tmp, index=False)

    tasks = task_names(runs)
    figures = _draw(table, runs, keys, tasks, out)
    notes = sweep_notes(paths, runs) + task_notes(runs) + unchanged_notes(runs, keys)
    blocks = document(table, runs, keys, tasks, paths, notes, figures)
    for name, text in (("report.md", markdown.render(blocks)), ("report.html", html.render(blocks, out))):
        with replaced(out / name) as tmp:
            tmp.write_text(text)
    return table, runs


def _draw(table: pd.DataFrame, runs: list[Run], keys: list[str], tasks: list[str], out: Path) -> list[str]:
    """The figures there is something to draw for; their file names. Figures an earlier
    report left in out are removed first, so none is mistaken for this one's."""
    for old in [*out.glob("final_acc_vs_*.png"), out / "val_curves.png"]:
        old.unlink(missing_ok=True)
    if table.empty or not (table["n_seeds"] > 0).any():
        return []
    names = []
    done = table[table["n_seeds"] > 0]
    for key in keys:
        if all(_is_number(v) for v in done[key]) and worth_plotting(table, keys, key):
            name = f"final_acc_vs_{_file_safe(key)}.png"
            plot_final_vs_key(table, keys, key, out / name)
            names.append(name)
    settings = [setting_label(dict(row), keys) for _, row in table[keys].iterrows()] if keys else ["all runs"]
    if plot_val_curves(runs, keys, settings, tasks, out / "val_curves.png"):
        names.append("val_curves.png")
    return names


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _file_safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)
