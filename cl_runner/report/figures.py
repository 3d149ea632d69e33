"""The report's figures (matplotlib, PNG): final accuracy against a numeric swept key, and
each setting's validation curves.

Made to stay readable for a folder of mixed runs: legends sit outside the axes (to the
right, long setting labels wrapped), the epoch axis is linear with integer ticks, a swept
key's axis has its values as ticks where they do not crowd, and many tasks wrap onto rows
of panels instead of one very wide figure.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and clusters
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from .content import run_label, show  # noqa: E402
from .runs import Run  # noqa: E402
from ..records import replaced  # noqa: E402

PANEL = (4.6, 3.4)  # inches per plot
PANELS_PER_ROW = 2
DPI = 100
MARKERS = "o^vDP*X<"
MAX_BANDS = 8  # more settings than this: their ±std bands would hide each other


def _figure(num_panels: int, labels: list[str]):
    """Panels in rows of up to PANELS_PER_ROW, and room on the right for a legend of labels."""
    cols = min(num_panels, PANELS_PER_ROW)
    rows = math.ceil(num_panels / cols)
    legend_cols = 1 if len(labels) <= 14 else 2
    # About 0.17 inch per line of legend text (labels are wrapped) and 0.1 between entries.
    lines = sum(label.count("\n") + 1 for label in labels) / legend_cols
    height = max(PANEL[1] * rows, 0.17 * lines + 0.1 * len(labels) / legend_cols + 0.8)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols + 2.9 * legend_cols, height),
                             layout="constrained", squeeze=False, sharey=True)
    for ax in axes.flat[num_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:num_panels]), legend_cols


def _save(fig, path: Path) -> None:
    """Drawn to a temporary file and renamed: a full disk never leaves half a PNG."""
    try:
        with replaced(path) as tmp:
            fig.savefig(tmp, dpi=DPI)
    finally:
        plt.close(fig)


def _wrap(label: str) -> str:
    return textwrap.fill(label, 40)


def _key_ticks(ax, values: pd.Series, log: bool) -> None:
    """Ticks at the swept values themselves when there are few and they do not crowd each
    other; otherwise the locator's (integers only for an integer key)."""
    points = sorted(set(values))
    spread = [math.log10(v) for v in points] if log else points
    gaps = [b - a for a, b in itertools.pairwise(spread)]
    if len(points) <= 8 and min(gaps) >= (spread[-1] - spread[0]) / 12:
        ax.xaxis.set_major_locator(FixedLocator(points))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: show(float(x))))
        ax.xaxis.set_minor_locator(NullLocator())
    elif not log:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=all(float(v).is_integer() for v in points)))


def _lines(table: pd.DataFrame, keys: list[str], key: str) -> dict[tuple, pd.DataFrame]:
    """The settings with results, by combination of the other swept keys, sorted by key;
    only combinations with results at two or more values of key make a line."""
    others = [k for k in keys if k != key]
    done = table[table["n_seeds"] > 0]
    combos = dict.fromkeys(tuple(row) for row in done[others].itertuples(index=False))
    lines = {}
    for combo in combos:
        rows = done[[tuple(r) == combo for r in done[others].itertuples(index=False)]]
        if rows[key].nunique() > 1:
            lines[combo] = rows.assign(_x=rows[key].astype(float)).sort_values("_x")
    return lines


def worth_plotting(table: pd.DataFrame, keys: list[str], key: str) -> bool:
    """True when some combination of the other swept keys has results at two values of key
    (no line to draw otherwise, e.g. when key changed only together with another)."""
    return bool(_lines(table, keys, key))


def plot_final_vs_key(table: pd.DataFrame, keys: list[str], key: str, path: Path) -> None:
    """Final test accuracy of each task (a marker each; the average dashed) against one
    numeric swept key. Colour: each combination of the other swept keys, or each task when
    this is the only swept key. Combinations with one value of key are left to the table."""
    others = [k for k in keys if k != key]
    num_tasks = sum(1 for c in table.columns if c.startswith("final_acc_task") and c.endswith("_mean"))
    lines = _lines(table, keys, key)
    curves = [(f"final_acc_task{j}", f"task {j}", "-", MARKERS[j % len(MARKERS)]) for j in range(num_tasks)]
    curves.append(("average_accuracy", "average", "--", "s"))
    # Tasks only some runs have (mixed data sets) may have no value on any line drawn.
    curves = [c for c in curves if any(rows[f"{c[0]}_mean"].notna().any() for rows in lines.values())]
    combo_labels = [_wrap(", ".join(f"{k}={show(v)}" for k, v in zip(others, combo))) for combo in lines]
    fig, (ax,), legend_cols = _figure(1, combo_labels if others else [label for _, label, _, _ in curves])
    for i, rows in enumerate(lines.values()):
        for n, (name, _, style, marker) in enumerate(curves):
            ax.errorbar(rows["_x"], rows[f"{name}_mean"], yerr=rows[f"{name}_std"].fillna(0), capsize=3,
                        color=f"C{(i if others else n) % 10}", linestyle=style, marker=marker, alpha=0.85)
    values = pd.concat([rows["_x"] for rows in lines.values()])
    # Sweeps over orders of magnitude (replay shares, EWC strengths) read best on a log axis.
    log = bool((values > 0).all() and values.max() / values.min() >= 20)
    if log:
        ax.set_xscale("log")
    _key_ticks(ax, values, log)
    ax.set_xlabel(key)
    ax.set_ylabel("test accuracy after the last task")
    several = any((rows["n_seeds"] > 1).any() for rows in lines.values())
    ax.set_title("final test accuracy" + (", mean ± std over seeds" if several else ""), fontsize=10)
    ax.set_ylim(-0.02, 1.02)  # points at 0 stay visible
    ax.grid(True, alpha=0.4)
    # Tasks as markers; with other swept keys the colours are their combinations, in a
    # second legend (the markers' one then sits below the plot, in one row).
    markers = [Line2D([], [], color="C7" if others else f"C{n % 10}", linestyle=style, marker=marker, label=label)
               for n, (_, label, style, marker) in enumerate(curves)]
    if others:
        fig.legend(handles=markers, loc="outside lower center", ncols=min(len(markers), 6), fontsize=8,
                   frameon=False)
        fig.legend(handles=[Line2D([], [], color=f"C{i % 10}", linewidth=3, label=label)
                            for i, label in enumerate(combo_labels)],
                   loc="outside right upper", ncols=legend_cols, fontsize=8, frameon=False)
    else:
        fig.legend(handles=markers, loc="outside right upper", fontsize=8, frameon=False)
    _save(fig, path)


def plot_val_curves(runs: list[Run], keys: list[str], settings: list[str], tasks: list[str], path: Path) -> bool:
    """Per task: each setting's mean validation accuracy per epoch, band = ±1 std over seeds
    (up to MAX_BANDS settings; epoch 0 is the untrained model); settings are the labels in legend order, tasks the
    task names (empty: numbered only). False (and no file) when no completed run has
    validation rows."""
    frames = [r.val.assign(setting=run_label(r, keys)) for r in runs if r.ok and r.val is not None and len(r.val)]
    if not frames:
        return False
    data = pd.concat(frames)
    stats = data.groupby(["setting", "eval_task", "global_epoch"])["acc"].agg(["mean", "std"]).reset_index()
    settings = [s for s in settings if s in set(stats["setting"])]
    num_tasks = int(data["eval_task"].max()) + 1
    # Bands (std is NaN where a setting has one seed) only while they can be told apart.
    bands = bool(stats["std"].notna().any()) and len(settings) <= MAX_BANDS
    labels = [_wrap(setting) for setting in settings]
    fig, axes, legend_cols = _figure(num_tasks, labels)
    for task, ax in enumerate(axes):
        for i, setting in enumerate(settings):
            rows = stats[(stats["setting"] == setting) & (stats["eval_task"] == task)]
            color, style = f"C{i % 10}", ["-", "--", ":", "-."][i // 10 % 4]  # 10 colours, then dashes
            ax.plot(rows["global_epoch"], rows["mean"], color=color, linestyle=style, label=labels[i])
            if bands:
                std = rows["std"].fillna(0)  # one seed: no band
                ax.fill_between(rows["global_epoch"], rows["mean"] - std, rows["mean"] + std, color=color,
                                alpha=0.15, linewidth=0)
        ax.set_title(f"task {task}" + (f" ({tasks[task]})" if task < len(tasks) else ""), fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.set_xlabel("epoch (over all tasks)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.4)
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("validation accuracy")
    fig.suptitle("validation accuracy per epoch, mean" + (" ± std (band)" if bands else "") + " over seeds",
                 fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", ncols=legend_cols, fontsize=8,
               frameon=False)
    _save(fig, path)
    return True
