"""Settings: which config keys a set of runs sweeps, and each setting's mean and spread.

Runs are grouped into settings by the *swept keys*: the config keys whose values differ
among the runs, leaving out the seed and keys that do not change results (output and
data paths, progress bars). Each setting is aggregated over its seeds: mean and sample
standard deviation over the runs that completed; the others are counted, never averaged.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from .runs import Run

# Keys that differ between runs without making them different experiments: the seed is
# what a setting is aggregated over; the rest are paths and cosmetics.
NOT_A_SETTING = {"seed", "resume", "data.root", "data.download", "data.verify", "train.progress",
                 "train.eval_batch_size", "checkpoint.every_task"}
SUMMARY_METRICS = ["average_accuracy", "forgetting", "backward_transfer", "forward_transfer"]


def hashable(value):
    """Lists (train.epochs: [50, 100], dataset.tasks) are compared and grouped as JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


# Config groups a preset sets as a pair (`strategy=ewc_replay` sets strategy.name and
# strategy.plugins, `dataset=split_mnist5` dataset.name and dataset.tasks): each pair is
# one key, named after the group, so a sweep does not show one choice as two columns.
PAIRS = {"strategy": "plugins", "dataset": "tasks"}


def fold_pairs(runs: list[Run]) -> None:
    """Replace each pair of PAIRS in every run's config by one key, the group's name.

    Its value is the name (e.g. ewc_replay), or "name (partner)" for every run when one
    name comes with different partners among the runs (strategy.plugins overridden).
    """
    for group, partner in PAIRS.items():
        name_key, partner_key = f"{group}.name", f"{group}.{partner}"
        named = [r for r in runs if name_key in r.config]
        partners: dict[str, set] = {}
        for run in named:
            partners.setdefault(str(run.config[name_key]), set()).add(hashable(run.config.get(partner_key)))
        ambiguous = any(len(values) > 1 for values in partners.values())
        for run in named:
            value = str(run.config[name_key])
            if ambiguous:
                value += f" ({_describe(run.config.get(partner_key))})"
            # Rebuilt, so that the group keeps its name's place in config order.
            run.config = {(group if key == name_key else key): (value if key == name_key else old)
                          for key, old in run.config.items() if key != partner_key}


def _describe(value) -> str:
    """[ewc, replay] -> ewc+replay; [] -> none; nested lists (tasks) as JSON."""
    if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value):
        return "+".join(map(str, value)) or "none"
    return "null" if value is None else str(hashable(value))


def swept_keys(runs: list[Run]) -> list[str]:
    """Config keys whose values differ among the runs (in config order), minus NOT_A_SETTING.
    Only keys every run has count: a key some runs lack comes from a newer config schema
    (a strategy added since), not from the sweep."""
    configured = [r for r in runs if r.config]
    if not configured:
        return []
    shared = [k for k in configured[0].config if all(k in r.config for r in configured)]
    return [
        key for key in shared
        if key not in NOT_A_SETTING and not key.startswith(("hydra.", "defaults"))
        and len({hashable(r.config[key]) for r in configured}) > 1
    ]


def setting_of(run: Run, keys: list[str]) -> tuple:
    return tuple(hashable(run.config.get(k)) for k in keys)


def _order(value):
    # Sort settings by their values: numbers numerically before text, None last.
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def num_tasks(runs: list[Run]) -> int:
    return max((len(r.final_acc) for r in runs), default=0)


def task_names(runs: list[Run]) -> list[str]:
    """The task names to label columns with: those of the completed runs when they all
    agree (and name every column); otherwise none, and columns are just numbered."""
    names = {tuple(r.tasks) for r in runs if r.ok}
    if len(names) != 1:
        return []
    (only,) = names
    return list(only) if len(only) == num_tasks(runs) else []


def aggregate(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    """One row per setting: mean and std over its completed runs; failed runs counted."""
    settings = sorted({setting_of(r, keys) for r in runs if r.config}, key=lambda s: [_order(v) for v in s])
    rows = []
    for setting in settings:
        members = [r for r in runs if r.config and setting_of(r, keys) == setting]
        done = [r for r in members if r.ok]
        row = dict(zip(keys, setting))
        row["n_seeds"] = len(done)
        row["seeds"] = " ".join(str(r.seed) for r in sorted(done, key=lambda r: _order(r.seed)))
        row["n_failed"] = len(members) - len(done)
        values = {f"final_acc_task{j}": [r.final_acc[j] if j < len(r.final_acc) else math.nan for r in done]
                  for j in range(num_tasks(runs))}
        for name in SUMMARY_METRICS:
            values[name] = [math.nan if r.summary.get(name) is None else r.summary[name] for r in done]
        for name, column in values.items():
            series = pd.Series(column, dtype=float)
            row[f"{name}_mean"] = series.mean()  # NaN when no run completed
            row[f"{name}_std"] = series.std(ddof=1)  # sample std over seeds; NaN for one seed
        rows.append(row)
    table = pd.DataFrame(rows)
    for key in keys:  # as given: 64 stays 64 (not 64.0) even next to a null
        table[key] = pd.Series([row[key] for row in rows], dtype=object)
    return table


def runs_table(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    """One row per run, completed or not, with its status, problem and own numbers."""
    rows = []
    for r in runs:
        row = {"path": str(r.path), "status": r.status, "ok": r.ok, "problem": r.problem}
        row.update({k: hashable(r.config.get(k)) for k in keys})
        row["seed"] = r.seed
        row.update({f"final_acc_task{j}": a for j, a in enumerate(r.final_acc)})
        row.update({name: r.summary.get(name) for name in SUMMARY_METRICS})
        rows.append(row)
    return pd.DataFrame(rows)
