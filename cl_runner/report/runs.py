"""Finding run folders and reading each into a `Run`: its config, status and results.

A run counts only when everything agrees: summary.json says completed, metrics.csv is
whole (see `metrics_csv`), it has a final test accuracy for every task, and the accuracy
matrix computed from it with `cl_runner.metrics` (the code a run uses for its own
summary.json) matches the one in summary.json. Anything else is recorded in `Run.problem`
and the run is listed in the report instead of averaged in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from .. import metrics
from .metrics_csv import MalformedMetrics, read_metrics

# summary.json rounds its accuracies to 6 decimals.
SUMMARY_TOLERANCE = 1e-6


def is_run_dir(path: Path) -> bool:
    """A folder cl-run wrote a run into, or Hydra made for a job that then never started.
    (config.yaml alone is not enough: a Hydra conf/ folder has one too.)"""
    return any((path / name).is_file() for name in ("summary.json", "metrics.csv", ".hydra/config.yaml"))


def find_runs(root: Path, _seen: set | None = None) -> list[Path]:
    """Run folders at or below root; a run folder is not searched further (its .hydra/ and
    checkpoints are not runs), and hidden folders (.submitit/ logs) are skipped. Symbolic
    links are followed (a folder of links to chosen runs works), each folder once."""
    seen = set() if _seen is None else _seen
    real = root.resolve()
    if real in seen:
        return []
    seen.add(real)
    if is_run_dir(root):
        return [root]
    try:
        children = sorted(root.iterdir(), key=_natural)
    except OSError:  # unreadable folder: nothing of ours in it
        return []
    found = []
    for child in children:
        if child.is_dir() and not child.name.startswith("."):
            found.extend(find_runs(child, seen))
    return found


def _natural(path: Path):
    # Job folders are 0, 1, ..., 10: sort them as numbers, not as text.
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def flatten(node, prefix: str = "") -> dict:
    """{"replay": {"share": 0.1}} -> {"replay.share": 0.1}; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def read_yaml(path: Path):
    # OmegaConf's loader, not plain PyYAML: it reads 1e-05 as a number, as cl-run wrote it;
    # interpolations (in Hydra's unresolved copies) stay as text.
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


@dataclass
class Run:
    path: Path
    # summary.json's status; "missing" / "unreadable" when it cannot say, "incomplete" when
    # its files are not whole, "inconsistent" when metrics.csv and summary.json disagree.
    status: str
    problem: str = ""  # why the run is not usable; empty for a usable completed run
    config: dict = field(default_factory=dict)  # flattened config
    overrides: list[str] = field(default_factory=list)  # the run's own command-line overrides
    tasks: list[str] = field(default_factory=list)  # task names from summary.json
    final_acc: list[float] = field(default_factory=list)  # last row of the accuracy matrix
    summary: dict = field(default_factory=dict)  # metrics.summarize of the matrix
    val: pd.DataFrame | None = None  # validation rows (global_epoch, eval_task, acc), for the curves
    unused: dict = field(default_factory=dict)  # summary.json's unused_overrides: keys set that the run did not read

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def seed(self):
        return self.config.get("seed")


def load_run(path: Path) -> Run:
    """Everything the report needs from one run folder; problems are recorded, not raised,
    so one broken run never hides the others."""
    run = Run(path=path, status="missing")
    # config.yaml is written (resolved) once the run starts; before that only Hydra's own
    # copy exists, which is enough to place the run in its setting.
    for name in ("config.yaml", ".hydra/config.yaml"):
        try:
            run.config = flatten(read_yaml(path / name) or {})
            break
        except Exception:  # noqa: BLE001 - missing or not YAML: try the next
            continue
    try:
        run.overrides = [str(o) for o in read_yaml(path / ".hydra" / "overrides.yaml") or []]
    except Exception:  # noqa: BLE001 - only shown in the report; runs given by hand have none
        pass

    try:
        summary = json.loads((path / "summary.json").read_text())
        run.status = str(summary.get("status", "unknown"))
        run.tasks = _task_names(summary.get("tasks"))
        unused = summary.get("unused_overrides")
        run.unused = unused if isinstance(unused, dict) else {}
    except FileNotFoundError:
        run.problem = "no summary.json (the run never started, or was killed before writing it)"
        return run
    except (OSError, ValueError, AttributeError) as err:  # AttributeError: JSON, but not an object
        run.status, run.problem = "unreadable", f"summary.json unreadable ({err})"
        return run
    if run.status != "completed":
        error = summary.get("error")
        run.problem = (error if isinstance(error, str) else json.dumps(error)[:300]) if error else f"status {run.status}"
        return run
    if not run.config:  # results without the settings they came from cannot be compared
        run.status, run.problem = "incomplete", "no config.yaml"
        return run
    _read_results(run, summary)
    return run


def _task_names(tasks) -> list[str]:
    """summary.json's task names; ValueError for anything else (`"tasks": 5`)."""
    if tasks is None:
        return []
    if not isinstance(tasks, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in tasks):
        raise ValueError(f"its tasks are {json.dumps(tasks)[:100]}, not a list of task names")
    return [str(t) for t in tasks]


def _read_results(run: Run, summary: dict) -> None:
    try:
        table = read_metrics(run.path / "metrics.csv")
        matrix = metrics.accuracy_matrix(table)
    except MalformedMetrics as err:
        run.status, run.problem = "incomplete", str(err)
        return
    except (OSError, UnicodeDecodeError) as err:
        run.status, run.problem = "incomplete", f"metrics.csv unreadable ({type(err).__name__}: {err})"
        return
    if matrix.size == 0 or np.isnan(matrix[-1]).any():
        run.status, run.problem = "incomplete", "metrics.csv has no final test accuracy for every task"
        return
    disagreement = summary_disagreement(summary, matrix)
    if disagreement:
        run.status, run.problem = "inconsistent", disagreement
        return
    run.final_acc = [float(a) for a in matrix[-1]]
    run.summary = metrics.summarize(matrix, metrics.initial_accuracy(table))
    if "global_epoch" in table:  # the x axis of the validation curves
        run.val = table[table["split"] == "val"][["global_epoch", "eval_task", "acc"]]


def summary_disagreement(summary: dict, matrix: np.ndarray) -> str:
    """Why the run's own summary.json contradicts the accuracy matrix of its metrics.csv
    (e.g. rows appended by a second process after it finished); empty when they agree.
    Keys a summary lacks (older cl-run versions) are not checked."""
    for key, own, ours in (("final_test_acc", summary.get("final_test_acc"), matrix[-1]),
                           ("accuracy_matrix", summary.get("accuracy_matrix"), matrix)):
        if own is None:
            continue
        try:
            own = np.asarray(own, dtype=float)
        except (TypeError, ValueError):
            return f"summary.json {key} is not a table of numbers"
        if own.shape != ours.shape or not np.allclose(own, ours, rtol=0, atol=SUMMARY_TOLERANCE, equal_nan=True):
            return (f"summary.json {key} {_short(own)} disagrees with metrics.csv {_short(ours)} "
                    "(metrics.csv changed after the run finished?)")
    return ""


def _short(values: np.ndarray) -> str:
    return json.dumps(np.round(values, 6).tolist())  # as summary.json rounds
