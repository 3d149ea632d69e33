"""Run one experiment: `run(cfg, output_dir)` trains over the tasks and writes the results.

This is the whole lifecycle of a run, top to bottom: check the config, load the data onto
the device, build the model and the strategy's plugins into one `RunContext`, then for each
stage (one per task, or a single one for joint training) train epoch by epoch, log every
epoch's rows, let the plugins update their state, and checkpoint; at the end write
summary.json (before the figures, so that it is there even if they cannot be drawn) and the
end-of-run checks' warnings (`cl_runner.diagnose`). However a run ends -- done, failed (it
diverged, or its files could not be written) or interrupted -- summary.json says so. A
`resume=` run is prepared by `cl_runner.resume`. The Hydra entry point in `cl_runner.cli` is
a thin wrapper around this function; tests call it directly.
"""

from __future__ import annotations

import logging
import math
import resource
import signal
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm  # a notebook's own bar in Jupyter (cl_runner.api), the text bar elsewhere

from . import (benchmarks, checkpoint, diagnose, interrupts, metrics, models, plots, resume, run_info, schedule, timing,
               trackers, usage)
from .config import save_config, validate
from .context import RunContext
from .device import resolve_device, setup_torch
from .optim import build_optimizer, build_schedule
from .errors import WriteError
from .records import RunLogs, check_writable, replaced, write_json, write_matrix
from .seeds import Stream
from .strategies import build_plugins
from .table import Table
from .trainer import evaluate, train_epoch

log = logging.getLogger(__name__)
notice = logging.getLogger("cl_runner.notice")  # shown on the terminal too (conf/hydra/job_logging)


class Diverged(RuntimeError):
    """A non-finite loss or weight: the run cannot go on."""


def run(cfg, output_dir: str | Path, overrides: list[str] = ()) -> dict:
    """Train and evaluate one configured experiment; return the summary (also in summary.json).
    With `cfg.resume` set, continue that run in its own folder instead, with its saved config
    and the command line's `overrides` that cannot change its results (`resume.prepare`)."""
    timing.run_started()
    applied = None
    if cfg.get("resume"):
        cfg, output_dir, applied = resume.prepare(cfg, list(overrides))
    validate(cfg)
    out = Path(output_dir).absolute()
    check_writable(out)
    device = resolve_device(cfg.device)
    setup_torch(cfg.seed, device, bool(cfg.train.tf32), bool(cfg.deterministic))

    with timing.phase("data"):
        bench = benchmarks.build(cfg, device)
    torch.manual_seed(cfg.seed)  # the initial weights do not depend on how the data was drawn
    with timing.phase("model"):
        net = models.build(cfg.model, bench.input_shape, bench.num_outputs, device, heads=[t.classes for t in bench.tasks])
    model = benchmarks.Prepared(bench.prepare, net)  # the data's own input preparation in front
    ctx = RunContext(cfg, bench, model, None, device, forward=torch.compile(model) if cfg.train.compile else None,
                     plugins=build_plugins(cfg), out=out)
    floats = bench.tasks[0].train.x.is_floating_point()  # small data sets are held as floats (benchmarks.build)
    state = checkpoint.load(out, device, float_images=floats) if applied is not None else None
    save_config(cfg, out / checkpoint.CONFIG)
    if state is not None:
        notice.info("resuming %s after task %d%s", out, state["completed_stage"],
                    f"; applied {' '.join(applied)}" if applied else "")
    log.info("run folder %s; device %s (%d CPU threads); %s", out, device, torch.get_num_threads(), _settings(cfg))
    return _train_all(ctx, state, usage.unused(cfg, list(overrides)))


def _settings(cfg) -> str:
    """The settings that make the experiment, in one line for cl-run.log."""
    length = f"{cfg.train.iterations} iterations" if cfg.train.iterations else f"epochs {cfg.train.epochs}"
    return (f"strategy {cfg.strategy.name} {list(cfg.strategy.plugins)}, model {cfg.model.name}, dataset "
            f"{cfg.dataset.name}, scenario {cfg.scenario}, {length} per task, seed {cfg.seed}")


@timing.phase("model")  # the first one imports much of torch (torch._dynamo)
def _new_optimizer(ctx: RunContext) -> torch.optim.Optimizer:
    return build_optimizer(ctx.cfg, ctx.model.parameters())


def _train_all(ctx: RunContext, state: dict | None, unused: dict[str, str]) -> dict:
    cfg, out, model = ctx.cfg, ctx.out, ctx.model
    stages = schedule.plan(cfg, [t.name for t in ctx.benchmark.tasks])
    first_stage, global_epoch, task_seconds = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        for plugin, plugin_state in zip(ctx.plugins, state["plugins"]):
            plugin.load_state_dict(plugin_state)
        first_stage, global_epoch = state["completed_stage"] + 1, state["global_epoch"]
        task_seconds = list(state["task_seconds"])

    ctx.logs = RunLogs(out, ctx.term_names, done_tasks=first_stage if state is not None else None)
    summary = {"status": "running", "output_dir": str(out.resolve()), "strategy": cfg.strategy.name, "device": str(ctx.device),
               "parameters": models.count_parameters(model), "tasks": [t.name for t in ctx.benchmark.tasks],
               "unused_overrides": unused}  # a sweep's keys this job does not read (cl_runner.usage)
    write_json(out / "summary.json", summary)
    ctx.optimizer = _new_optimizer(ctx)
    if state is not None and not cfg.train.reset_optimizer:
        ctx.optimizer.load_state_dict(state["optimizer"])

    previous = {sig: signal.signal(sig, interrupts.raise_interrupted) for sig in (signal.SIGTERM,)}
    try:
        # Experiment trackers (logger=...): one that cannot start fails the run here, before training.
        ctx.logs.trackers = trackers.start(cfg, out, resumed_at=global_epoch if state is not None else None)
        if state is None:  # the untrained model: the baseline of forward transfer
            ctx.logs.epoch(None, _eval_rows(ctx, 0, 0, ("val", "test")))
        for stage in stages[first_stage:]:
            if cfg.train.reset_optimizer:
                ctx.optimizer = _new_optimizer(ctx)
            started = time.perf_counter()
            global_epoch, test_acc = _train_stage(ctx, stage, global_epoch)
            task_seconds.append(round(time.perf_counter() - started, 3))
            log.info("task %d (%s) done in %.1f s: test acc per task [%s]", stage.index, stage.name, task_seconds[-1],
                     " ".join(f"{a:.3f}" for a in test_acc))
            if cfg.checkpoint.every_task:
                checkpoint.save(out, {
                    "completed_stage": stage.index, "global_epoch": global_epoch, "task_seconds": task_seconds,
                    "model": model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
                    "plugins": [p.state_dict() for p in ctx.plugins],
                })
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (interrupts.Interrupted)
        summary.update(status="interrupted", error=f"interrupted ({interrupts.describe(err)})")
        with interrupts.ignored():  # a second Ctrl-C must not cut the record of the first short
            _finish(ctx, summary, task_seconds, final=False)
        raise
    except Exception as err:  # Diverged, WriteError, or a bug: never leave a run looking unfinished-but-fine
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        with interrupts.ignored():
            _finish(ctx, summary, task_seconds, final=False)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary["status"] = "completed"
    return _finish(ctx, summary, task_seconds, final=True)


@timing.phase("evaluation")
def _eval_rows(ctx: RunContext, epoch: int, global_epoch: int, splits: tuple[str, ...]) -> list[dict]:
    """metrics.csv rows of every task on each split, for the model after `ctx.task`'s `epoch`."""
    results = {split: evaluate(ctx, split, ctx.cfg.train.eval_batch_size) for split in splits}
    values = {split: r.tolist() for split, r in results.items()}  # one sync per split
    rows = []
    for split, per_task in values.items():
        for task, (loss, correct, count) in enumerate(per_task):
            rows.append({"train_task": ctx.task, "epoch": epoch, "eval_task": task, "split": split,
                         "loss": loss / count, "acc": correct / count, "global_epoch": global_epoch, "examples": int(count)})
    return rows


def _epochs_of(train, stage: int) -> int:
    return int(train.epochs[stage]) if OmegaConf.is_list(train.epochs) else int(train.epochs)


@timing.phase("training")  # less the evaluation and logging inside, counted as theirs
def _train_stage(ctx: RunContext, stage: schedule.Stage, global_epoch: int) -> tuple[int, list[float]]:
    """Train one stage to its end; return the run's epoch count after it, and the test
    accuracy of every task at its end."""
    train = ctx.cfg.train
    active = ctx.benchmark.task_masks[: max(stage.data_tasks) + 1].any(0) if train.active_classes else None
    ctx.begin(stage.index, stage.final, active=active)
    for plugin in ctx.plugins:
        plugin.before_task(ctx)
    data = schedule.base_set(ctx, stage)
    for plugin in ctx.plugins:
        data = plugin.train_set(ctx, data)
    steps_per_epoch = math.ceil(len(data) / train.batch_size)
    max_steps = train.iterations
    epochs = math.ceil(max_steps / steps_per_epoch) if max_steps else _epochs_of(train, stage.index)
    shuffle = ctx.generator(Stream.SHUFFLE)
    scheduler = build_schedule(train, ctx.optimizer, epochs)
    bar = tqdm(range(1, epochs + 1), desc=f"task {stage.index} ({stage.name})", disable=not train.progress, leave=True)
    for epoch in bar:
        ctx.epoch = epoch
        global_epoch += 1
        started = time.perf_counter()
        sums, seen = train_epoch(ctx, data, train.batch_size, shuffle, max_steps)
        total, terms = _check_finite(ctx, sums / max(seen, 1))
        if scheduler is not None:
            scheduler.step()
        last = epoch == epochs
        seconds = time.perf_counter() - started
        eval_rows = []
        if epoch % train.eval_every == 0 or last:
            eval_rows = _eval_rows(ctx, epoch, global_epoch, ("val", "test") if last else ("val",))
        ctx.logs.epoch({"train_task": stage.index, "epoch": epoch, "global_epoch": global_epoch, "loss": total,
                        **dict(zip(ctx.term_names, terms)), "seconds": round(seconds, 4)}, eval_rows)
        bar.set_postfix(loss=f"{total:.4f}")
    bar.close()
    for plugin in ctx.plugins:
        plugin.after_task(ctx)
    return global_epoch, [row["acc"] for row in eval_rows if row["split"] == "test"]


def _check_finite(ctx: RunContext, mean_terms: torch.Tensor) -> tuple[float, list[float]]:
    """The epoch's mean loss terms, read in one host-device sync together with a finiteness
    check of the weights; raise Diverged if either is not finite."""
    finite = torch.stack([p.detach().isfinite().all() for p in ctx.model.parameters()]).all()
    values = torch.cat([mean_terms, finite.float().unsqueeze(0)]).tolist()
    terms, weights_ok = values[:-1], values[-1] == 1.0
    total = sum(terms)
    if not (math.isfinite(total) and weights_ok):
        raise Diverged(
            f"training diverged in task {ctx.task}, epoch {ctx.epoch}: "
            f"{'loss' if not math.isfinite(total) else 'weights'} not finite "
            "(lower train.lr, or the regularisation strength such as ewc.alpha)"
        )
    return total, terms


def _peak_memory(device: torch.device) -> dict:
    # ru_maxrss is in KiB on Linux.
    out = {"host_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["device_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


@timing.phase("outputs")
def _finish(ctx: RunContext, summary: dict, task_seconds: list[float], final: bool) -> dict:
    """Close the logs, add the results and the end-of-run checks to the summary, write
    summary.json, then draw the figures. After a failure or an interruption (`final` false)
    nothing here may hide it: what cannot be written is left out, and summary.json is
    overwritten in place if a full disk has no room for a new copy."""
    out = ctx.out
    summary["task_seconds"] = task_seconds
    summary.update(_peak_memory(ctx.device))
    for plugin in ctx.plugins:
        summary.update(plugin.summary())
    try:
        ctx.logs.close()
        table, train_table = Table.read_csv(out / "metrics.csv"), Table.read_csv(out / "train_log.csv")
        matrix = _add_results(ctx, summary, table, train_table) if final else None
    except WriteError:
        if final:
            raise
        table = matrix = None
    except (OSError, ValueError) as err:  # the folder removed, or a log cut short
        if final:
            raise WriteError(out, err if isinstance(err, OSError) else OSError(str(err))) from None
        table = matrix = None
    try:
        write_json(out / "summary.json", summary, in_place_if_full=not final)
        if table is not None:
            _draw_figures(ctx, summary, (table, train_table), matrix)
    except WriteError as err:
        if final:  # the numbers are in summary.json, but the run's files are not all there
            summary.update(status="failed", error=str(err))
            write_json(out / "summary.json", summary, in_place_if_full=True)
            raise
    finally:
        if ctx.logs.trackers is not None:  # last: they get summary.json and the figures as written
            ctx.logs.trackers.finish(summary, out)
    return summary


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
    chances = [1 / n for n in run_info.chance_classes(ctx.benchmark)]  # as the figures mark it
    summary["warnings"] = diagnose.warnings(matrix, train_table, [t.name for t in ctx.benchmark.tasks], chances, cfg=ctx.cfg)
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
