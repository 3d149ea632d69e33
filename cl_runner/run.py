"""Run one experiment: `run(cfg, output_dir)` trains over the tasks and writes the results.

This is the whole lifecycle of a run, top to bottom: check the config, load the data onto
the device, build the model, the optimiser and the strategy's plugins into one `RunContext`
(a resumed run's checkpoint checked against them and loaded: `cl_runner.continuation`),
then, once `cl_runner.status` has written summary.json, for each stage (one per task, or a
single one for joint training) train epoch by epoch, log every epoch's rows, let the plugins
update their state, and checkpoint; at the end the results, accuracy_matrix.csv and the
figures (`cl_runner.outputs`). However a run ends -- done, failed (it diverged, or its files
could not be written) or interrupted at any moment -- `cl_runner.status` rewrites
summary.json to say so. A `resume=` run is prepared by `cl_runner.resume`. The Hydra entry
point in `cl_runner.cli` is a thin wrapper around this function; tests call it directly.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
# The first optimiser would import this (a second); cut by Ctrl-C there, it stays half-imported and
# the run's own ending then fails in it. Imported with this module, the signal waits for it (cli).
import torch._dynamo  # noqa: F401
from omegaconf import OmegaConf
from tqdm.auto import tqdm  # a notebook's own bar in Jupyter (cl_runner.api), the text bar elsewhere

from . import benchmarks, checkpoint, continuation, models, outputs, resume, schedule, status, timing, trackers, usage
from .config import save_config, validate
from .context import RunContext
from .device import resolve_device, set_threads, setup_torch, torch_state
from .optim import build_optimizer, build_schedule
from .records import RunLogs, check_writable
from .seeds import Stream
from .sizes import check_fits
from .strategies import build_plugins
from .trainer import Diverged, evaluate, train_epoch

log = logging.getLogger(__name__)
notice = logging.getLogger("cl_runner.notice")  # shown on the terminal too (conf/hydra/job_logging)


@torch_state()  # the global torch settings made here are undone when the run ends
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
    setup_torch(cfg.seed, device, cfg.train.tf32, bool(cfg.deterministic))

    with timing.phase("data"):
        bench = benchmarks.build(cfg, device)
    check_fits(cfg, bench, device)  # the model, memories and batches the device must hold, before building them
    torch.manual_seed(cfg.seed)  # the initial weights do not depend on how the data was drawn
    with timing.phase("model"):
        net = models.build(cfg.model, bench.input_shape, bench.num_outputs, device, heads=[t.classes for t in bench.tasks])
        threads = set_threads(cfg.train.threads, net, bench.input_shape, cfg.train.batch_size)
    model = benchmarks.Prepared(bench.prepare, net)  # the data's own input preparation in front
    ctx = RunContext(cfg, bench, model, None, device, forward=torch.compile(model) if cfg.train.compile else None,
                     plugins=build_plugins(cfg), out=out, threads=threads)
    ctx.optimizer = _new_optimizer(ctx)
    stages = schedule.plan(cfg, [t.name for t in bench.tasks])
    state = None
    if applied is not None:  # what the run continues, checked whole and loaded before anything is written
        floats = bench.tasks[0].train.x.is_floating_point()  # small data sets are held as floats (benchmarks.build)
        state = continuation.restore(ctx, checkpoint.load(out, device, float_images=floats), stages)
    summary = {"status": "running", "output_dir": str(out.resolve()), "strategy": cfg.strategy.name,
               "device": str(ctx.device), "parameters": models.count_parameters(model),
               "tasks": [t.name for t in bench.tasks],
               "unused_overrides": usage.unused(cfg, list(overrides))}  # a sweep's keys this job does not read
    return status.recorded(out, summary, body=lambda: _train_all(ctx, stages, state, applied, summary),
                           close=lambda s: outputs.close(ctx, s), tell=lambda s: _tell(ctx, s))


def _settings(cfg) -> str:
    """The settings that make the experiment, in one line for cl-run.log."""
    length = f"{cfg.train.iterations} iterations" if cfg.train.iterations else f"epochs {cfg.train.epochs}"
    return (f"strategy {cfg.strategy.name} {list(cfg.strategy.plugins)}, model {cfg.model.name}, dataset "
            f"{cfg.dataset.name}, scenario {cfg.scenario}, {length} per task, seed {cfg.seed}")


@timing.phase("model")  # the first one imports much of torch (torch._dynamo)
def _new_optimizer(ctx: RunContext) -> torch.optim.Optimizer:
    return build_optimizer(ctx.cfg, ctx.model.parameters())


def _train_all(ctx: RunContext, stages: list, state: dict | None, applied: list[str] | None, summary: dict) -> None:
    """The run from its config.yaml to its final outputs (`cl_runner.status` records how it ends)."""
    cfg, out = ctx.cfg, ctx.out
    save_config(cfg, out / checkpoint.CONFIG)
    if state is not None:
        notice.info("resuming %s after task %d%s", out, state["completed_stage"],
                    f"; applied {' '.join(applied)}" if applied else "")
    log.info("run folder %s; device %s (%d CPU threads); %s; %s", out, ctx.device, torch.get_num_threads(), _settings(cfg),
             ctx.threads)
    first_stage, global_epoch = 0, 0
    summary["task_seconds"] = task_seconds = []
    if state is not None:
        first_stage, global_epoch = state["completed_stage"] + 1, state["global_epoch"]
        task_seconds.extend(state["task_seconds"])
    ctx.logs = RunLogs(out, ctx.term_names, done_tasks=first_stage if state is not None else None)
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
                "model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
                "plugins": [p.state_dict() for p in ctx.plugins],
                "run": continuation.identity(cfg, [t.name for t in ctx.benchmark.tasks]),
            })
    outputs.complete(ctx, summary)


def _tell(ctx: RunContext, summary: dict) -> None:
    """After summary.json says how the run ended: an unfinished run's curves, then the
    trackers (last: they get summary.json and the figures as written)."""
    outputs.unfinished(ctx, summary)
    if ctx.logs is not None and ctx.logs.trackers is not None:
        ctx.logs.trackers.finish(summary, ctx.out)


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
