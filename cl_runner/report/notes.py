"""Notes under the report's tables: things about the set of runs a reader should know.

A sweep whose folder holds fewer (or more) job folders than its multirun.yaml asks for,
completed runs on different tasks (then the task columns are numbered, not named), and a
swept key that changed nothing: runs that differ only in its value (same seed, same other
settings) wrote byte-identical metrics.csv files -- most likely a key the strategy does not
read, which the jobs' summary.json names (`unused_overrides`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from .runs import Run, read_yaml
from .settings import hashable, setting_of


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


def unchanged(runs: list[Run], keys: list[str]) -> dict[str, tuple[list[tuple], int]]:
    """{swept key: (the places -- other settings and seed -- where its values gave
    byte-identical metrics.csv, how many places compare two values of it)}; a key is left
    out when no runs differ only in it, or they never agree."""
    done = [r for r in runs if r.ok]
    digests = {}
    for run in done:
        try:
            digests[run.path] = hashlib.sha256((run.path / "metrics.csv").read_bytes()).hexdigest()
        except OSError:  # read a moment ago; gone now: it is compared with nothing
            digests[run.path] = str(run.path)
    found = {}
    for key in keys:
        others = [k for k in keys if k != key]
        groups: dict[tuple, list[Run]] = {}
        for run in done:
            groups.setdefault((setting_of(run, others), hashable(run.seed)), []).append(run)
        compared = {place: members for place, members in groups.items()
                    if len({hashable(r.config.get(key)) for r in members}) > 1}
        same = [place for place, members in compared.items() if len({digests[r.path] for r in members}) == 1]
        if same:
            found[key] = (same, len(compared))
    return found


def unchanged_notes(runs: list[Run], keys: list[str]) -> list[str]:
    """One note per swept key whose values changed nothing, with why where the runs say."""
    notes = []
    for key, (places, compared) in unchanged(runs, keys).items():
        others = [k for k in keys if k != key]
        members = [r for r in runs if r.ok and (setting_of(r, others), hashable(r.seed)) in places]
        values = ", ".join(str(v) for v in dict.fromkeys(hashable(r.config.get(key)) for r in members))
        settings = sorted({", ".join(f"{k}={v}" for k, v in zip(others, place[0])) for place in places})
        where = ("on every seed and setting" if len(places) == compared or not others
                 else "where " + "; ".join(settings[:3]) + ("; ..." if len(settings) > 3 else ""))
        why = next((r.unused[key] for r in members if key in r.unused), None)
        notes.append(f"`{key}` changed nothing {where}: its values {values} gave byte-identical metrics.csv"
                     + (f"; those runs did not read it ({key} is {why})" if why else
                        " (same seed, same other settings): check that the strategy reads it"))
    return notes

