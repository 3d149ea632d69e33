"""The end of a run: what is added to summary.json, accuracy_matrix.csv and the figures.

`complete(ctx, summary)` ends a run that trained every stage: its logs closed and read back,
the final accuracies, the accuracy matrix and its metrics, the end-of-run checks'
warnings (`cl_runner.diagnose`) into the summary, accuracy_matrix.csv, then the figures,
each drawn to a temporary file and renamed (never half a PNG); a file that cannot be written
raises WriteError. `close(ctx, summary)` adds the fields every run has at its end (seconds
per task, peak memory, the plugins' own facts) and closes the logs, however the run ended;
`unfinished(ctx, summary)` draws the curves of what an interrupted or failed run logged, as
far as they can be drawn. `cl_runner.status` calls them in that order around its record.
"""

from __future__ import annotations

import logging
import resource

import torch

from . import diagnose, metrics, plots, run_info, timing
from .context import RunContext
from .errors import WriteError
from .records import replaced, write_matrix
from .table import Table

log = logging.getLogger(__name__)


def _peak_memory(device: torch.device) -> dict:
    # ru_maxrss is in KiB on Linux.
    out = {"host_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["device_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _last_fields(ctx: RunContext, summary: dict) -> None:
    summary.update(_peak_memory(ctx.device))
    for plugin in ctx.plugins:
        summary.update(plugin.summary())


@timing.phase("outputs")
def complete(ctx: RunContext, summary: dict) -> None:
    """The results and files of a run that trained every stage (see the module docstring)."""
    out = ctx.out
    _last_fields(ctx, summary)
    try:
        ctx.logs.close()
        tables = Table.read_csv(out / "metrics.csv"), Table.read_csv(out / "train_log.csv")
    except OSError as err:  # the folder removed under the run
        raise WriteError(out, err) from None
    except ValueError as err:  # a log cut short
        raise WriteError(out, OSError(str(err))) from None
    matrix = _add_results(ctx, summary, *tables)
    _draw_figures(ctx, {**summary, "status": "completed"}, tables, matrix)  # the status they are drawn for


@timing.phase("outputs")
def close(ctx: RunContext, summary: dict) -> None:
    """Every run's last fields; its logs closed (a log that cannot be flushed is left as it is:
    the status says why the run ended)."""
    _last_fields(ctx, summary)
    if ctx.logs is not None:
        try:
            ctx.logs.close()
        except WriteError:
            if summary["status"] == "completed":
                raise


@timing.phase("outputs")
def unfinished(ctx: RunContext, summary: dict) -> None:
    """The curves of an interrupted or failed run, from the rows it logged; nothing when the
    logs cannot be read or the figure cannot be written (summary.json says what happened)."""
    if summary["status"] == "completed" or ctx.logs is None:
        return
    try:
        tables = Table.read_csv(ctx.out / "metrics.csv"), Table.read_csv(ctx.out / "train_log.csv")
        _draw_figures(ctx, summary, tables, None)
    except (OSError, ValueError, WriteError):  # the folder removed, a log cut short, no room for the figure
        pass


def _add_results(ctx: RunContext, summary: dict, table: Table, train_table: Table):
    """The final accuracies, the accuracy matrix and its metrics, and the end-of-run checks;
    returns the matrix (None when no task finished)."""
    if not ((table["train_task"] >= 0).any() and (table["split"] == "test").any()):
        return None
    matrix = metrics.accuracy_matrix(table)
    last = table[table["train_task"] == table["train_task"].max()]
    last = last[last["epoch"] == last["epoch"].max()]
    for split in ("val", "test"):
        summary[f"final_{split}_acc"] = last[last["split"] == split].sort_values("eval_task")["acc"].round(6).tolist()
    summary["accuracy_matrix"] = matrix.round(6).tolist()
    summary.update(metrics.summarize(matrix, metrics.initial_accuracy(table)))
    tasks = ctx.benchmark.tasks
    chances = [1 / n for n in run_info.chance_classes(ctx.benchmark)]  # as the figures mark it
    summary["warnings"] = diagnose.warnings(matrix, train_table, [t.name for t in tasks], chances, cfg=ctx.cfg)
    for line in summary["warnings"]:
        log.warning(line)
    with replaced(ctx.out / "accuracy_matrix.csv") as tmp:
        write_matrix(matrix, tmp)
    return matrix


def _draw_figures(ctx: RunContext, summary: dict, tables: tuple[Table, Table], matrix) -> None:
    """The figures, titled with the run's identity and results, each drawn to a temporary file
    and renamed: never half a PNG."""
    table, train_table = tables
    info = run_info.describe(ctx.cfg, summary, ctx.benchmark)
    if matrix is not None:
        with replaced(ctx.out / "accuracy_matrix.png") as tmp:
            plots.plot_accuracy_matrix(matrix, info, tmp)
    if len(train_table):
        with replaced(ctx.out / "curves.png") as tmp:
            plots.plot_curves(table, train_table, info, tmp)
