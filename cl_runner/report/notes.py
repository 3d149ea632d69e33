"""Notes under the report's tables: things about the set of runs a reader should know.

A sweep whose folder holds fewer (or more) job folders than its multirun.yaml asks for,
and completed runs on different tasks (then the task columns are numbered, not named).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from .runs import Run, read_yaml


def expected_jobs(multirun_yaml: Path) -> int | None:
    """How many jobs the sweep in multirun.yaml asked for (None when it cannot be told,
    e.g. an interval of a sweeper other than the basic one or Optuna)."""
    try:
        cfg = read_yaml(multirun_yaml)
        sweeper = cfg["hydra"]["sweeper"]
        target = str(sweeper.get("_target_", ""))
        if "optuna" in target.lower():
            return int(sweeper["n_trials"])
        if not target.endswith("BasicSweeper"):
            return None
        texts = list(cfg["hydra"]["overrides"]["task"])
        texts += [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        count = 1
        for override in OverridesParser.create().parse_overrides(texts):
            if override.is_sweep_override():
                count *= len(list(override.sweep_string_iterator()))
        return count
    except Exception:  # noqa: BLE001 - a note in the report is optional; never fail on it
        return None


def sweep_notes(roots: list[Path], runs: list[Run]) -> list[str]:
    notes = []
    for root in roots:
        for multirun_yaml in sorted(root.rglob("multirun.yaml")):
            sweep = multirun_yaml.parent
            found = sum(1 for r in runs if sweep in r.path.parents)
            expected = expected_jobs(multirun_yaml)
            if expected is None or expected == found:
                continue
            if found < expected:
                notes.append(f"{sweep}: the sweep asks for {expected} jobs but {found} run folders exist "
                             f"({expected - found} never started, or the sweep was stopped)")
            else:
                notes.append(f"{sweep}: {found} run folders but the sweep asks for {expected} jobs "
                             "(folders left over from an earlier sweep into the same folder?)")
    return notes


def task_notes(runs: list[Run]) -> list[str]:
    """One note when the completed runs were trained on different tasks."""
    counts: dict[tuple, int] = {}
    for run in runs:
        if run.ok:
            counts[tuple(run.tasks)] = counts.get(tuple(run.tasks), 0) + 1
    if len(counts) < 2:
        return []
    kinds = "; ".join(f"{' / '.join(tasks) or 'no task names'} ({n} run{'s' if n > 1 else ''})"
                      for tasks, n in counts.items())
    note = (f"the completed runs were trained on different tasks ({kinds}): task columns are numbered, "
            "and column j means each run's own task j")
    return [note]
