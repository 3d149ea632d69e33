"""What the report says, as a list of blocks (headings, paragraphs, tables, lists, figures)
that `markdown` and `html` render, so report.md and report.html always show the same.

Text may hold `code spans` in backticks; table cells are plain text (a renderer escapes
them). Numbers are shown to 3 decimals, never as -0.000; the CSVs keep full precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .notes import unchanged
from .runs import Run
from .settings import SUMMARY_METRICS, hashable

METRIC_HEADERS = ["average acc", "forgetting", "BWT", "FWT"]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    code_columns: tuple[int, ...] = ()  # columns shown as code (run folders)
    numbers: bool = False  # a table of numbers: cells are not wrapped


@dataclass
class Items:
    items: list[str]


@dataclass
class Figures:
    names: list[str]  # PNG files beside the report


def fixed(value: float, digits: int = 3) -> str:
    """value to `digits` decimals; one that rounds to zero is 0.000, never -0.000."""
    text = f"{value:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def cell(mean: float, std: float, n: int) -> str:
    """mean ± std for a setting with several seeds; the plain mean for one seed."""
    if n == 0 or pd.isna(mean):
        return "–"
    return fixed(mean) if n == 1 or pd.isna(std) else f"{fixed(mean)} ± {fixed(std)}"


def show(value) -> str:
    """A config value for people: 1e+08 rather than 100000000.0, null rather than None."""
    if value is None:
        return "null"
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


def setting_label(setting: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={show(setting[k])}" for k in keys) or "all runs"


def run_label(run: Run, keys: list[str]) -> str:
    return setting_label({k: hashable(run.config.get(k)) for k in keys}, keys) if run.config else "?"


def document(table: pd.DataFrame, runs: list[Run], keys: list[str], tasks: list[str], sources: list[Path],
             notes: list[str], figures: list[str]) -> list:
    """The whole report; tasks are the names of the task columns (empty: numbered only)."""
    done = [r for r in runs if r.ok]
    bad = [r for r in runs if not r.ok]
    blocks: list = [Heading("cl-report", 1), Paragraph("Sources: " + ", ".join(f"`{s}`" for s in sources)),
                     Paragraph(f"{len(runs)} runs: {len(done)} completed, {len(bad)} failed or incomplete; "
                               f"{len(table)} settings.")]
    about = _strategies(runs, keys) + " "
    flagged = unchanged(runs, keys)
    about += "Swept keys: " + (", ".join(f"`{k}`" + (" (changed nothing: see the notes)" if k in flagged else "")
                                         for k in keys) if keys else "none (one setting)") + "."
    common = [o for o in (runs[0].overrides if runs else []) if all(o in r.overrides for r in runs)]
    if common:
        about += " Fixed on every run's command line: " + " ".join(f"`{o}`" for o in common) + "."
    blocks += [Paragraph(about), Paragraph(_caption(table)), settings_table(table, keys, tasks)]

    blocks.append(Heading("Failed or incomplete runs"))
    if bad:
        blocks += [Paragraph("Not in the means above; rerun them with the overrides shown."), problems_table(bad, keys)]
    else:
        blocks.append(Paragraph("None: every run completed."))
    if notes:
        blocks += [Heading("Notes"), Items(notes)]
    if figures:
        blocks += [Heading("Plots"), Figures(figures)]
    return blocks


def strategy_names(runs: list[Run]) -> list[str]:
    """The runs' strategies, each once, in the order met."""
    return list(dict.fromkeys(str(r.config["strategy"]) for r in runs if "strategy" in r.config))


def _strategies(runs: list[Run], keys: list[str]) -> str:
    """The strategy of the runs, named always (a sweep of a key the strategy ignores must show it)."""
    names = strategy_names(runs)
    if not names:
        return "Strategy: not recorded."
    if len(names) == 1:
        return f"Strategy: `{names[0]}` (every run)."
    return "Strategies: " + ", ".join(f"`{n}`" for n in names) + ("; a column of the table." if "strategy" in keys else ".")


def _caption(table: pd.DataFrame) -> str:
    if not table.empty and (table["n_seeds"] > 1).any():
        return ("Test accuracy after the last task: mean ± sample standard deviation over the seeds of a "
                "setting; a plain value where a setting has one seed:")
    return "Test accuracy after the last task (one seed per setting, so no standard deviation):"


def settings_table(table: pd.DataFrame, keys: list[str], tasks: list[str]) -> Table:
    count = sum(1 for c in table.columns if c.startswith("final_acc_task") and c.endswith("_mean"))
    headers = [*keys, "n seeds", "failed"]
    headers += [f"acc task {j}" + (f" ({tasks[j]})" if tasks else "") for j in range(count)]
    headers += METRIC_HEADERS
    rows = []
    for _, row in table.iterrows():
        n = int(row["n_seeds"])
        cells = [show(row[k]) for k in keys] + [str(n), str(int(row["n_failed"]))]
        cells += [cell(row[f"final_acc_task{j}_mean"], row[f"final_acc_task{j}_std"], n) for j in range(count)]
        cells += [cell(row[f"{m}_mean"], row[f"{m}_std"], n) for m in SUMMARY_METRICS]
        rows.append(cells)
    return Table(headers, rows, numbers=True)


def problems_table(bad: list[Run], keys: list[str]) -> Table:
    rows = [[str(r.path), r.status, run_label(r, keys), str(r.seed), r.problem, " ".join(r.overrides)] for r in bad]
    return Table(["run folder", "status", "setting", "seed", "problem", "overrides"], rows, code_columns=(0,))
