"""Run one experiment: `run(cfg, output_dir)` trains over the tasks and writes the results.

This is the whole lifecycle of a run, top to bottom: check the config, load the data onto
the device, build the model and the strategy's plugins into one `RunContext`, then for each
stage (one per task, or a single one for joint training) train epoch by epoch, log every
epoch's rows, let the plugins update their state, and checkpoint. The Hydra entry point in
`cl_runner.cli` is a thin wrapper around this function; tests call it directly.
"""

from __future__ import annotations

import logging
import math
import resource
import signal
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from . import benchmarks, checkpoint, metrics, models, plots, schedule, trackers
from .config import load_saved, validate
from .context import RunContext
from .device import resolve_device, setup_torch
from .records import RunLogs, check_writable, write_json
from .seeds import Stream
from .strategies import build_plugins
from .trainer import evaluate, train_epoch

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """A non-finite loss or weight: the run cannot go on."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, as KeyboardInterrupt is, so that no library's
    `except Exception` (an experiment tracker's, a database driver's) can swallow it."""


def run(cfg, output_dir: str | Path) -> dict:
    """Train and evaluate one configured experiment; return the summary (also in summary.json)."""
    resuming = bool(cfg.get("resume"))
    if resuming:  # the interrupted run's own config and folder, not today's defaults
        output_dir = checkpoint.resumable(cfg.resume)
        cfg = load_saved(output_dir / checkpoint.CONFIG)
    validate(cfg)
    out = Path(output_dir)
    check_writable(out)
    device = resolve_device(cfg.device)
    setup_torch(cfg.seed, device, bool(cfg.train.tf32), bool(cfg.deterministic))

    bench = benchmarks.build(cfg, device)
    torch.manual_seed(cfg.seed)  # the initial weights do not depend on how the data was drawn
    model = models.build(cfg.model, (bench.in_features,), bench.num_outputs, device)
    ctx = RunContext(cfg, bench, model, None, device, forward=torch.compile(model) if cfg.train.compile else None,
                     plugins=build_plugins(cfg), out=out)
    OmegaConf.save(cfg, out / checkpoint.CONFIG, resolve=True)
    state = checkpoint.load(out, device) if resuming else None
    return _train_all(ctx, state)


def _new_optimizer(ctx: RunContext) -> torch.optim.Optimizer:
    return torch.optim.Adam(ctx.model.parameters(), lr=ctx.cfg.train.lr)


def _train_all(ctx: RunContext, state: dict | None) -> dict:
    cfg, out, model = ctx.cfg, ctx.out, ctx.model
    stages = schedule.plan(cfg, [t.name for t in ctx.benchmark.tasks])
    first_stage, global_epoch, task_seconds = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        for plugin, plugin_state in zip(ctx.plugins, state["plugins"]):
            plugin.load_state_dict(plugin_state)
        first_stage, global_epoch = state["completed_stage"] + 1, state["global_epoch"]
        task_seconds = list(state["task_seconds"])
        log.info("resuming %s after task %d", out, first_stage - 1)

    ctx.logs = RunLogs(out, ctx.term_names, done_tasks=first_stage if state is not None else None)
    summary = {"status": "running", "output_dir": str(out.resolve()), "strategy": cfg.strategy.name, "device": str(ctx.device),
               "parameters": models.count_parameters(model), "tasks": [t.name for t in ctx.benchmark.tasks]}
    write_json(out / "summary.json", summary)
    ctx.optimizer = _new_optimizer(ctx)
    if state is not None and not cfg.train.reset_optimizer:
        ctx.optimizer.load_state_dict(state["optimizer"])

    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM,)}
    try:
        # Experiment trackers (logger=...): one that cannot start fails the run here, before training.
        ctx.logs.trackers = trackers.start(cfg, out, resumed_at=global_epoch if state is not None else None)
        if state is None:  # the untrained model: the baseline of forward transfer
            ctx.logs.epoch(None, _eval_rows(ctx, 0, 0, ("val", "test")))
        for stage in stages[first_stage:]:
            if cfg.train.reset_optimizer:
                ctx.optimizer = _new_optimizer(ctx)
            started = time.perf_counter()
            global_epoch = _train_stage(ctx, stage, global_epoch)
            task_seconds.append(round(time.perf_counter() - started, 3))
            if cfg.checkpoint.every_task:
                checkpoint.save(out, {
                    "completed_stage": stage.index, "global_epoch": global_epoch, "task_seconds": task_seconds,
                    "model": model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
                    "plugins": [p.state_dict() for p in ctx.plugins],
                })
    except (KeyboardInterrupt, Interrupted) as err:
        summary.update(status="interrupted", error=f"interrupted ({type(err).__name__ if isinstance(err, KeyboardInterrupt) else err})")
        _finish(ctx, summary, task_seconds, final=False)
        raise
    except Exception as err:  # Diverged, or a bug: never leave a run looking unfinished-but-fine
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        _finish(ctx, summary, task_seconds, final=False)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary["status"] = "completed"
    return _finish(ctx, summary, task_seconds, final=True)


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


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


def _train_stage(ctx: RunContext, stage: schedule.Stage, global_epoch: int) -> int:
    """Train one stage to its end; return the run's epoch count after it."""
    train = ctx.cfg.train
    ctx.begin(stage.index, stage.final)
    for plugin in ctx.plugins:
        plugin.before_task(ctx)
    data = schedule.base_set(ctx, stage)
    for plugin in ctx.plugins:
        data = plugin.train_set(ctx, data)
    steps_per_epoch = math.ceil(len(data) / train.batch_size)
    max_steps = train.iterations
    epochs = math.ceil(max_steps / steps_per_epoch) if max_steps else _epochs_of(train, stage.index)
    shuffle = ctx.generator(Stream.SHUFFLE)
    bar = tqdm(range(1, epochs + 1), desc=f"task {stage.index} ({stage.name})", disable=not train.progress, leave=True)
    for epoch in bar:
        ctx.epoch = epoch
        global_epoch += 1
        started = time.perf_counter()
        sums, seen = train_epoch(ctx, data, train.batch_size, shuffle, max_steps)
        total, terms = _check_finite(ctx, sums / max(seen, 1))
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
    return global_epoch


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


def _finish(ctx: RunContext, summary: dict, task_seconds: list[float], final: bool) -> dict:
    """Close the logs, add the results to the summary, draw the figures, write summary.json."""
    out = ctx.out
    ctx.logs.close()
    table = pd.read_csv(out / "metrics.csv")
    names = [t.name for t in ctx.benchmark.tasks]
    summary["task_seconds"] = task_seconds
    summary.update(_peak_memory(ctx.device))
    for plugin in ctx.plugins:
        summary.update(plugin.summary())
    if (table["train_task"] >= 0).any() and (table["split"] == "test").any() and final:
        matrix = metrics.accuracy_matrix(table)
        last = table[table["train_task"] == table["train_task"].max()]
        last = last[last["epoch"] == last["epoch"].max()]
        for split in ("val", "test"):
            summary[f"final_{split}_acc"] = last[last["split"] == split].sort_values("eval_task")["acc"].round(6).tolist()
        summary["accuracy_matrix"] = matrix.round(6).tolist()
        summary.update(metrics.summarize(matrix, metrics.initial_accuracy(table)))
        pd.DataFrame(matrix, columns=[f"task_{j}" for j in range(matrix.shape[1])]).rename_axis("after_task").to_csv(
            out / "accuracy_matrix.csv"
        )
        plots.plot_accuracy_matrix(matrix, names, out / "accuracy_matrix.png")
    train_table = pd.read_csv(out / "train_log.csv")
    if len(train_table):
        plots.plot_curves(table, train_table, names, out / "curves.png")
    write_json(out / "summary.json", summary)
    if ctx.logs.trackers is not None:  # last: they get summary.json and the figures as written
        ctx.logs.trackers.finish(summary, out)
    return summary
