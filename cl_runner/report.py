"""`cl-report`: compare the runs of a sweep in one table and a few plots.

    cl-report PATH [PATH ...] [--out DIR]

PATH is a multirun folder (what `cl-run -m ...` writes: multirun.yaml and one folder per
job), a single run folder, or any folder holding run folders (searched recursively, so
`cl-report outputs/` works too). For every run it reads config.yaml (the resolved config
the run used), summary.json (its status) and metrics.csv, and computes the accuracy
matrix and its summary with `cl_runner.metrics` -- the same code a run uses for its own
summary.json, so the report and the runs cannot disagree.

Runs are grouped into settings by the *swept keys*: the config keys whose values differ
among the runs, leaving out the seed and keys that do not change results (output and
data paths, progress bars). Each setting is aggregated over its seeds (mean and sample
standard deviation). Written into the folder given (or the common parent of several
PATHs, or --out DIR):

- report.csv    one row per setting: swept keys, n_seeds, seeds, n_failed, and mean/std of
                the final test accuracy per task, average accuracy, forgetting, backward
                and forward transfer
- runs.csv      one row per run (completed or not) with its own numbers and status
- report.md     the table, the runs that failed or are incomplete (never silently
                dropped), and notes such as jobs missing from a sweep
- final_acc_vs_<key>.png  final test accuracy per task against each numeric swept key
- val_curves.png          mean validation accuracy per epoch of each setting, band = ±1 std
                          over seeds

Exit codes: 0 report written (even when some runs failed: they are in the report),
2 a bad PATH or --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and clusters
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from . import metrics  # noqa: E402

EXIT_BAD_PATH = 2

# Keys that differ between runs without making them different experiments: the seed is
# what a setting is aggregated over; the rest are paths and cosmetics.
NOT_A_SETTING = {"seed", "resume", "data.root", "data.download", "data.verify", "train.progress",
                 "train.eval_batch_size", "checkpoint.every_task"}
SUMMARY_METRICS = ["average_accuracy", "forgetting", "backward_transfer", "forward_transfer"]


class ReportError(Exception):
    """A bad command line (PATH or --out): one line, exit 2."""


# --- finding and reading runs ------------------------------------------------


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


def _hashable(value):
    # Lists (train.epochs: [50, 100], dataset.tasks) are compared and grouped as JSON text.
    return json.dumps(value) if isinstance(value, (list, dict)) else value


@dataclass
class Run:
    path: Path
    status: str  # summary.json's status, or "missing" / "unreadable" when it cannot say
    problem: str = ""  # why the run is not usable; empty for a usable completed run
    config: dict = field(default_factory=dict)  # flattened config
    overrides: list[str] = field(default_factory=list)  # the run's own command-line overrides
    tasks: list[str] = field(default_factory=list)
    final_acc: list[float] = field(default_factory=list)  # last row of the accuracy matrix
    summary: dict = field(default_factory=dict)  # metrics.summarize of the matrix
    val: pd.DataFrame | None = None  # validation rows, for the curves

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def seed(self):
        return self.config.get("seed")


def _read_yaml(path: Path):
    # OmegaConf's loader, not plain PyYAML: it reads 1e-05 as a number, as cl-run wrote it;
    # interpolations (in Hydra's unresolved copies) stay as text.
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def load_run(path: Path) -> Run:
    """Everything the report needs from one run folder; problems are recorded, not raised,
    so one broken run never hides the others."""
    run = Run(path=path, status="missing")
    # config.yaml is written (resolved) once the run starts; before that only Hydra's own
    # copy exists, which is enough to place the run in its setting.
    for name in ("config.yaml", ".hydra/config.yaml"):
        try:
            run.config = flatten(_read_yaml(path / name) or {})
            break
        except Exception:  # noqa: BLE001 - missing or not YAML: try the next
            continue
    try:
        run.overrides = [str(o) for o in _read_yaml(path / ".hydra" / "overrides.yaml") or []]
    except Exception:  # noqa: BLE001 - only shown in the report; runs given by hand have none
        pass

    try:
        summary = json.loads((path / "summary.json").read_text())
        run.status = str(summary.get("status", "unknown"))
        run.tasks = [str(t) for t in summary.get("tasks", [])]
    except FileNotFoundError:
        run.problem = "no summary.json (the run never started, or was killed before writing it)"
        return run
    except (OSError, ValueError) as err:
        run.status, run.problem = "unreadable", f"summary.json unreadable ({err})"
        return run
    if run.status != "completed":
        run.problem = summary.get("error") or f"status {run.status}"
        return run
    if not run.config:  # results without the settings they came from cannot be compared
        run.status, run.problem = "incomplete", "no config.yaml"
        return run

    try:
        table = pd.read_csv(path / "metrics.csv")
        matrix = metrics.accuracy_matrix(table)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
        run.status, run.problem = "incomplete", f"metrics.csv unreadable ({type(err).__name__}: {err})"
        return run
    if matrix.size == 0 or np.isnan(matrix[-1]).any():
        run.status, run.problem = "incomplete", "metrics.csv has no final test accuracy for every task"
        return run
    run.final_acc = [float(a) for a in matrix[-1]]
    run.summary = metrics.summarize(matrix, metrics.initial_accuracy(table))
    run.val = table[table["split"] == "val"][["global_epoch", "eval_task", "acc"]]
    return run


# --- settings ----------------------------------------------------------------


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
        and len({_hashable(r.config[key]) for r in configured}) > 1
    ]


def setting_of(run: Run, keys: list[str]) -> tuple:
    return tuple(_hashable(run.config.get(k)) for k in keys)


def _order(value):
    # Sort settings by their values: numbers numerically before text, None last.
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def aggregate(runs: list[Run], keys: list[str]) -> pd.DataFrame:
    """One row per setting: mean and std over its completed runs; failed runs counted."""
    settings = sorted({setting_of(r, keys) for r in runs if r.config}, key=lambda s: [_order(v) for v in s])
    num_tasks = max((len(r.final_acc) for r in runs), default=0)
    rows = []
    for setting in settings:
        members = [r for r in runs if r.config and setting_of(r, keys) == setting]
        done = [r for r in members if r.ok]
        row = dict(zip(keys, setting))
        row["n_seeds"] = len(done)
        row["seeds"] = " ".join(str(r.seed) for r in sorted(done, key=lambda r: _order(r.seed)))
        row["n_failed"] = len(members) - len(done)
        values = {f"final_acc_task{j}": [r.final_acc[j] if j < len(r.final_acc) else math.nan for r in done]
                  for j in range(num_tasks)}
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
    rows = []
    for r in runs:
        row = {"path": str(r.path), "status": r.status, "ok": r.ok, "problem": r.problem}
        row.update({k: _hashable(r.config.get(k)) for k in keys})
        row["seed"] = r.seed
        row.update({f"final_acc_task{j}": a for j, a in enumerate(r.final_acc)})
        row.update({name: r.summary.get(name) for name in SUMMARY_METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


# --- sweeps: were all jobs there? ----------------------------------------------


def expected_jobs(multirun_yaml: Path) -> int | None:
    """How many jobs the sweep in multirun.yaml asked for (None when it cannot be told,
    e.g. an interval of a sweeper other than the basic one or Optuna)."""
    try:
        cfg = _read_yaml(multirun_yaml)
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


# --- writing -------------------------------------------------------------------


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0 or pd.isna(mean):
        return "–"
    return f"{mean:.3f}" if n == 1 or pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def _show(value) -> str:
    """A config value for people: 1e+08 rather than 100000000.0, null rather than None."""
    if value is None:
        return "null"
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


def _setting_label(setting: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={_show(setting[k])}" for k in keys) or "all runs"


def markdown(table: pd.DataFrame, runs: list[Run], keys: list[str], sources: list[Path],
             notes: list[str], plots: list[str]) -> str:
    done = [r for r in runs if r.ok]
    bad = [r for r in runs if not r.ok]
    num_tasks = sum(1 for c in table.columns if c.startswith("final_acc_task") and c.endswith("_mean"))
    tasks = next((r.tasks for r in done if len(r.tasks) == num_tasks), [])
    lines = ["# cl-report", "", "Sources: " + ", ".join(f"`{s}`" for s in sources), "",
             f"{len(runs)} runs: {len(done)} completed, {len(bad)} failed or incomplete; "
             f"{len(table)} settings.", ""]
    lines.append("Swept keys: " + (", ".join(f"`{k}`" for k in keys) if keys else "none (one setting)") + ".")
    common = [o for o in (runs[0].overrides if runs else []) if all(o in r.overrides for r in runs)]
    if common:
        lines.append("Fixed on every run's command line: " + " ".join(f"`{o}`" for o in common) + ".")
    lines += ["", "Test accuracy after the last task, mean ± standard deviation over seeds "
              "(sample std; one value when one seed):", ""]

    headers = [*keys, "n seeds", "failed"]
    headers += [f"acc task {j}" + (f" ({tasks[j]})" if tasks else "") for j in range(num_tasks)]
    headers += ["average acc", "forgetting", "BWT", "FWT"]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in table.iterrows():
        n = int(row["n_seeds"])
        cells = [_show(row[k]) for k in keys] + [str(n), str(int(row["n_failed"]))]
        cells += [_cell(row[f"final_acc_task{j}_mean"], row[f"final_acc_task{j}_std"], n) for j in range(num_tasks)]
        cells += [_cell(row[f"{m}_mean"], row[f"{m}_std"], n) for m in SUMMARY_METRICS]
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "## Failed or incomplete runs", ""]
    if bad:
        lines += ["Not in the means above; rerun them with the overrides shown.", "",
                  "| run folder | status | setting | seed | problem | overrides |", "|---|---|---|---|---|---|"]
        for r in bad:
            setting = _setting_label({k: _hashable(r.config.get(k)) for k in keys}, keys) if r.config else "?"
            problem = r.problem.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{r.path}` | {r.status} | {setting} | {r.seed} | {problem} | "
                         f"{' '.join(r.overrides)} |")
    else:
        lines.append("None: every run completed.")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figure(num_axes: int, num_labels: int, width: float = 5.5):
    """A row of plots with the legend in its own panel below them, so a sweep with many
    settings gets a taller figure instead of a legend drawn over the curves."""
    rows = num_labels if num_labels <= 8 else math.ceil(num_labels / 2)
    fig = plt.figure(figsize=(max(width * num_axes, 8), 4 + 0.2 * rows))
    grid = fig.add_gridspec(2, num_axes, height_ratios=[4, 0.2 * rows + 0.3], hspace=0.3)
    axes = [fig.add_subplot(grid[0, i]) for i in range(num_axes)]
    legend = fig.add_subplot(grid[1, :])
    legend.axis("off")
    return fig, axes, legend, (1 if num_labels <= 8 else 2)


def plot_final_vs_key(table: pd.DataFrame, keys: list[str], key: str, path: Path) -> None:
    """Final test accuracy of each task (and their mean) against one numeric swept key.
    One marker per task; one colour per combination of the other swept keys, or per task
    when this is the only swept key."""
    others = [k for k in keys if k != key]
    num_tasks = sum(1 for c in table.columns if c.startswith("final_acc_task") and c.endswith("_mean"))
    done = table[table["n_seeds"] > 0]
    combos = list(dict.fromkeys(tuple(row) for row in done[others].itertuples(index=False)))
    lines = [(f"final_acc_task{j}", f"task {j}", "-", "o^vDP*X<"[j % 8]) for j in range(num_tasks)]
    lines.append(("average_accuracy", "average", "--", "s"))
    fig, (ax,), legend, ncol = _figure(1, len(combos) * len(lines), width=7)
    for i, combo in enumerate(combos):
        rows = done[[tuple(r) == combo for r in done[others].itertuples(index=False)]]
        rows = rows.assign(_x=rows[key].astype(float)).sort_values("_x")
        suffix = " (" + ", ".join(f"{k}={_show(v)}" for k, v in zip(others, combo)) + ")" if others else ""
        for n, (name, label, style, marker) in enumerate(lines):
            color = f"C{(i if others else n) % 10}"
            ax.errorbar(rows["_x"], rows[f"{name}_mean"], yerr=rows[f"{name}_std"].fillna(0), color=color,
                        linestyle=style, marker=marker, capsize=3, label=label + suffix)
    values = done[key].astype(float)
    # Sweeps over orders of magnitude (replay shares, EWC strengths) read best on a log axis.
    if (values > 0).all() and values.max() / values.min() >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("test accuracy after the last task")
    ax.set_title("final test accuracy, mean ± std over seeds")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.4)
    legend.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=ncol, fontsize=8, frameon=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_val_curves(runs: list[Run], keys: list[str], settings: list[str], path: Path) -> None:
    """Per task: each setting's mean validation accuracy per epoch, band = ±1 std over seeds
    (epoch 0 is the untrained model)."""
    frames = []
    for r in runs:
        if r.ok and r.val is not None:
            frame = r.val.copy()
            frame["setting"] = _setting_label({k: _hashable(r.config.get(k)) for k in keys}, keys)
            frames.append(frame)
    data = pd.concat(frames)
    stats = data.groupby(["setting", "eval_task", "global_epoch"])["acc"].agg(["mean", "std"]).reset_index()
    settings = [s for s in settings if s in set(stats["setting"])]
    num_tasks = int(data["eval_task"].max()) + 1
    fig, axes, legend, ncol = _figure(num_tasks, len(settings), width=5)
    for task, ax in enumerate(axes):
        for i, setting in enumerate(settings):
            rows = stats[(stats["setting"] == setting) & (stats["eval_task"] == task)]
            color, style = f"C{i % 10}", ["-", "--", ":", "-."][i // 10 % 4]  # 10 colours, then dashes
            ax.plot(rows["global_epoch"], rows["mean"], color=color, linestyle=style, label=setting)
            std = rows["std"].fillna(0)  # one seed: no band
            ax.fill_between(rows["global_epoch"], rows["mean"] - std, rows["mean"] + std, color=color, alpha=0.2)
        ax.set_title(f"validation accuracy, task {task}")
        ax.set_xlabel("epoch (over all tasks)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.4)
    axes[0].set_ylabel("accuracy (mean ± std over seeds)")
    legend.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=ncol, fontsize=8, frameon=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _file_safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def report(paths: list[Path], out: Path) -> tuple[pd.DataFrame, list[Run]]:
    """Read the runs under paths and write the report into out; return the table and runs."""
    folders = {}  # overlapping PATHs (a sweep and one of its runs) must not count a run twice
    for root in paths:
        for folder in find_runs(root):
            folders.setdefault(folder.resolve(), folder)
    runs = [load_run(folder) for folder in folders.values()]
    keys = swept_keys(runs)
    table = aggregate(runs, keys)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "report.csv", index=False)
    runs_table(runs, keys).to_csv(out / "runs.csv", index=False)

    plots = []
    if not table.empty and (table["n_seeds"] > 0).any():
        done = table[table["n_seeds"] > 0]
        for key in keys:
            # A numeric key with at least two values among the settings that have results.
            if all(_is_number(v) for v in done[key]) and done[key].nunique() > 1:
                name = f"final_acc_vs_{_file_safe(key)}.png"
                plot_final_vs_key(table, keys, key, out / name)
                plots.append(name)
        settings = [_setting_label(dict(row), keys) for _, row in table[keys].iterrows()] if keys else ["all runs"]
        plot_val_curves(runs, keys, settings, out / "val_curves.png")
        plots.append("val_curves.png")
    (out / "report.md").write_text(markdown(table, runs, keys, paths, sweep_notes(paths, runs), plots))
    return table, runs


def _default_out(paths: list[Path]) -> Path:
    if len(paths) == 1:
        return paths[0]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    if common == Path(common.anchor):
        raise ReportError("the PATHs share no folder to write the report into: give --out DIR")
    return common


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cl-report",
        description="Compare cl-run runs: group them by the swept config keys, aggregate over seeds, "
        "write report.csv, report.md, runs.csv and plots.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path,
                        help="a multirun folder, a run folder, or a folder holding run folders")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: the PATH, or the common parent of several)")
    args = parser.parse_args(argv)
    try:
        paths = [p.resolve() for p in args.paths]
        for given, path in zip(args.paths, paths):
            if not path.is_dir():
                raise ReportError(f"{given}: {'not a folder' if path.exists() else 'no such folder'}")
            if not find_runs(path):
                raise ReportError(f"{given}: no cl-run output folders in it (none has summary.json, "
                                  "metrics.csv or .hydra/config.yaml)")
        out = args.out.resolve() if args.out else _default_out(paths)
        try:
            table, runs = report(paths, out)
        except OSError as err:
            raise ReportError(f"cannot write the report into {out} ({err.strerror or err})") from None
    except ReportError as err:
        print(f"cl-report: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_PATH)
    bad = sum(1 for r in runs if not r.ok)
    print(f"cl-report: {len(runs)} runs ({len(runs) - bad} completed, {bad} failed or incomplete) "
          f"in {len(table)} settings; report in {out / 'report.md'}")


if __name__ == "__main__":
    main()
