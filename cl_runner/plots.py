"""A run's own figures, drawn headless with matplotlib when the run ends.

- curves.png: three panels over the whole run's epochs: the training loss of each task
  (and each extra loss term, such as EWC's penalty), every task's validation loss, every
  task's validation accuracy. Epoch 0 is the untrained model; a dotted line marks where each
  task's training starts; a task's curve is dashed before its own training starts; dots are
  the test results at each task's last epoch; the accuracy panel marks chance level.
- accuracy_matrix.png: the test accuracy matrix (row: after training task i, column: task j).

Each task has one colour, the same in every panel. Both figures carry the run's identity and
headline results in their title (`cl_runner.run_info.RunInfo`), so a figure found on its own
says what produced it. They use matplotlib's object API (no pyplot state) and return the
Figure, whose texts tests can read.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .run_info import RunInfo

_LOG_COLUMNS = ("train_task", "epoch", "global_epoch", "loss", "seconds")  # the rest are loss terms
# Each loss term's line style, and its marker where a task lasts one epoch (a point, not a line).
_TERM_STYLES = (("--", "s"), (":", "^"), ("-.", "v"), ((0, (5, 1, 1, 1, 1, 1)), "D"))
_DPI = 100


def task_colours(count: int) -> list:
    """One colour per task: tab10 up to 10 tasks, tab20 up to 20, evenly spaced beyond."""
    if count <= 10:
        return list(colormaps["tab10"].colors[:count])
    if count <= 20:
        return list(colormaps["tab20"].colors[:count])
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, count)]


def _title(info: RunInfo, width_in: float) -> tuple[str, float]:
    """The run's identity and results, wrapped to the width; and the height it takes, in inches."""
    chars = int(width_in * 13)  # about that many characters of a 10 pt title fit per inch
    text = "\n".join([textwrap.fill(line, chars, subsequent_indent="  ") for line in info.identity] + [info.results])
    return text, 0.2 * (text.count("\n") + 1) + 0.15


def _put_title(fig: Figure, text: str) -> None:
    fig.suptitle(text, fontsize=10, y=1 - 0.08 / fig.get_figheight(), va="top")


def _stage_starts(train_log) -> dict[int, int]:
    """The run epoch each stage's training starts after (0 for the first)."""
    return {int(stage): int(np.min(rows["global_epoch"])) - 1 for stage, rows in train_log.groupby("train_task")}


def _task_starts(info: RunInfo, stage_starts: dict[int, int]) -> list[int | None]:
    """The run epoch after which each task is trained (None: not reached)."""
    if info.stage_names == info.task_names:
        return [stage_starts.get(task) for task in range(len(info.task_names))]
    return [stage_starts.get(0)] * len(info.task_names)  # a joint stage trains every task at once


def _draw_training(ax, train_log, info: RunInfo, colours: list) -> list[Line2D]:
    """Each stage's training loss and loss terms; return the legend entries of the line styles."""
    terms = [c for c in train_log.columns if c not in _LOG_COLUMNS]
    if terms == ["ce"]:
        terms = []  # the total is the cross-entropy
    stages = list(train_log.groupby("train_task"))
    points = bool(stages) and min(len(rows) for _, rows in stages) == 1
    styles = {t: dict(linestyle=line, marker=marker if points else None, markersize=4)
              for t, (line, marker) in zip(terms, _TERM_STYLES * len(terms))}
    total = dict(linewidth=3, alpha=0.35) if terms else dict(linewidth=1.6)  # terms stay visible on top of it
    total.update(marker="o" if points else None, markersize=7 if terms else 4)
    losses = np.asarray(train_log["loss"], dtype=float)
    positive = losses[losses > 0]
    # A penalty such as EWC's can start orders of magnitude above the cross-entropy; on a
    # linear axis every other curve would then be a flat line at zero.
    log = bool(len(positive)) and positive.max() > 100 * positive.min()
    sequential = info.stage_names == info.task_names
    for stage, rows in stages:
        colour = colours[stage] if sequential and stage < len(colours) else "black"
        epochs = np.asarray(rows["global_epoch"])
        ax.plot(epochs, np.asarray(rows["loss"], dtype=float), color=colour, gid=f"loss stage {stage}", **total)
        for term in terms:
            values = np.asarray(rows[term], dtype=float)
            if (values == 0).all():
                continue  # a term that is zero for a whole task (EWC's in task 0) is not a curve
            if log:
                values = np.where(values > 0, values, np.nan)  # log(0) is no value
            ax.plot(epochs, values, color=colour, linewidth=1.3, gid=f"{term} stage {stage}", **styles[term])
    # Headroom above the curves for the task labels along the top.
    if log:
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 4)
    else:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    ax.set_ylabel("training loss" + (" (log)" if log else ""))
    what = "coloured by the task being trained" if sequential else "one stage trained on every task"
    # A log axis has no offset text ("1e6") for the title to clear, so its title may sit at a
    # fixed height: matplotlib then skips measuring the axis for one (a fifth of the figure's time).
    fixed = dict(y=1.0) if log else {}
    ax.set_title(f"training loss per epoch, {what}", fontsize=9, loc="left", **fixed)
    if not terms:
        return []
    return [Line2D([], [], color="grey", label="training loss:", linestyle="none"),
            Line2D([], [], color="black", label="total", **total)] + [
            Line2D([], [], color="black", linewidth=1.3, label=t, **styles[t]) for t in terms]


def _draw_evaluation(axes, metrics, starts: list[int | None], colours: list) -> None:
    """Validation curves (dashed before the task's own training) and test points, per task."""
    split = np.asarray(metrics["split"])
    val = metrics[split == "val"].sort_values("global_epoch")
    test = metrics[split == "test"]
    tests = dict(list(test.groupby("eval_task")))
    for task, rows in val.groupby("eval_task"):
        colour, start = colours[task], starts[task]
        epochs = np.asarray(rows["global_epoch"])
        before = rows if start is None else rows[epochs <= start]
        after = rows[np.zeros(len(rows), dtype=bool) if start is None else epochs >= start]
        points = tests.get(task, test[np.zeros(len(test), dtype=bool)])
        for ax, column in zip(axes, ("loss", "acc")):
            if len(before) > 1:
                ax.plot(np.asarray(before["global_epoch"]), np.asarray(before[column]), color=colour, linestyle="--",
                        linewidth=1, alpha=0.7, gid=f"val before task {task}")
            ax.plot(np.asarray(after["global_epoch"]), np.asarray(after[column]), color=colour, linewidth=1.6,
                    gid=f"val task {task}")
            ax.plot(np.asarray(points["global_epoch"]), np.asarray(points[column]), linestyle="none", marker="o",
                    markersize=4, gid=f"test task {task}", color=colour, markeredgecolor="black", markeredgewidth=0.5)


def _mark_stages(axes, stage_starts: dict[int, int], info: RunInfo) -> None:
    for stage, start in stage_starts.items():
        for ax in axes:
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
        if info.stage_names != info.task_names:  # a joint stage: its own name
            label = info.stage_names[stage] if stage < len(info.stage_names) else str(stage)
        else:
            label = f"task {stage}" if len(stage_starts) <= 10 else str(stage)
        axes[0].annotate(label, (start, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                         textcoords="offset points", fontsize=8, va="top")


def _legend(fig: Figure, info: RunInfo, colours: list, extra: list[Line2D], anchor: tuple[float, float]) -> None:
    handles = [Line2D([], [], color=c, linewidth=1.6, label=f"task {t} ({n})")
               for t, (c, n) in enumerate(zip(colours, info.task_names))]
    chance = sorted(set(info.chance_classes))
    handles += [
        Line2D([], [], color="grey", linewidth=1.6, label="validation"),
        Line2D([], [], color="grey", linestyle="--", linewidth=1, label="validation, before\nthe task's training"),
        Line2D([], [], color="grey", linestyle="none", marker="o", markersize=4, markeredgecolor="black",
               label="test, at each task's\nlast epoch"),
        Line2D([], [], color="grey", linestyle=(0, (4, 3)), linewidth=1,
               label="chance: " + ", ".join(f"1/{c}" for c in chance)),
        *extra,
    ]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=anchor, fontsize=8, frameon=False)


def plot_curves(metrics, train_log, info: RunInfo, path: Path) -> Figure:
    """curves.png from a run's metrics.csv and train_log.csv tables (`cl_runner.table.Table`s
    or pandas DataFrames)."""
    # A fixed layout, computed here: matplotlib's automatic layouts double the drawing time.
    width, height, legend_width = 12.0, 10.0, 2.0
    fig = Figure(figsize=(width, height))
    title, title_height = _title(info, width - legend_width)
    _put_title(fig, title)
    top = 1 - (title_height + 0.3) / height
    right = 1 - (legend_width + 0.1) / width
    ax_train, ax_loss, ax_acc = fig.subplots(3, 1, sharex=True, gridspec_kw=dict(
        left=0.8 / width, right=right, top=top, bottom=0.6 / height, hspace=0.22))
    colours = task_colours(len(info.task_names))
    stage_starts = _stage_starts(train_log)
    term_handles = _draw_training(ax_train, train_log, info, colours)
    _draw_evaluation((ax_loss, ax_acc), metrics, _task_starts(info, stage_starts), colours)
    for classes in set(info.chance_classes):
        ax_acc.axhline(1 / classes, color="grey", linestyle=(0, (4, 3)), linewidth=1, gid="chance")
    _mark_stages((ax_train, ax_loss, ax_acc), stage_starts, info)
    ax_loss.set_ylim(bottom=0)
    ax_loss.set_ylabel("validation loss")
    ax_loss.set_title("validation loss of every task (dots: test)", fontsize=9, loc="left")
    ax_acc.set_ylim(-0.03, 1.03)  # so that curves at 0 or 1 stay visible
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("validation accuracy of every task (dots: test)", fontsize=9, loc="left")
    ax_acc.set_xlabel("epoch of the run (0: the untrained model)")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_train, ax_loss, ax_acc):
        ax.grid(True, alpha=0.4)
    _legend(fig, info, colours, term_handles, (right + 0.01, top))
    fig.savefig(path, dpi=_DPI)
    return fig


def plot_accuracy_matrix(matrix: np.ndarray, info: RunInfo, path: Path) -> Figure:
    """accuracy_matrix.png: a heatmap of R[i][j], the test accuracy on task j after task i."""
    matrix = np.asarray(matrix, dtype=float)
    rows, cols = matrix.shape
    cell = min(1.2, max(0.45, 6.0 / cols))  # inches: 2 tasks get large cells, 20 tasks still fit
    left, bottom, bar = 1.1, 0.8, 1.0  # inches: tick labels and axis label; colour bar
    width = max(7.5, left + cell * cols + bar + 0.3)
    title, title_height = _title(info, width - 0.3)
    height = bottom + cell * rows + 0.35 + title_height
    fig = Figure(figsize=(width, height))
    _put_title(fig, title)
    x0 = (width - cell * cols - bar + left) / 2  # centred under the title
    ax = fig.add_axes((x0 / width, bottom / height, cell * cols / width, cell * rows / height))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    percent = cols > 12  # two digits fit a small cell, "0.97" does not
    fontsize = 9 if cell >= 0.7 else 7
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{100 * value:.0f}" if percent else f"{value:.2f}", ha="center", va="center",
                fontsize=fontsize, color="white" if value < 0.6 else "black")
    named = cols <= 10 and all(len(n) <= 12 * cell for n in info.task_names)  # 8 pt: ~12 characters an inch
    ax.set_xticks(range(cols), [f"{j}\n{n}" if named else str(j) for j, n in enumerate(info.task_names)], fontsize=8)
    sequential = info.stage_names == info.task_names
    ax.set_yticks(range(rows), [str(i) for i in range(rows)] if sequential else info.stage_names[:rows], fontsize=8)
    ax.set_xlabel("evaluated task" + ("" if named else " (names in curves.png)"))
    ax.set_ylabel("after training task" if sequential else "after training stage")
    ax.set_title("test accuracy" + (" (%)" if percent else ""), fontsize=9, loc="left")
    cax = fig.add_axes(((x0 + cell * cols + 0.25) / width, bottom / height, 0.2 / width, cell * rows / height))
    fig.colorbar(image, cax=cax)
    fig.savefig(path, dpi=_DPI)
    return fig
