"""Run one experiment: `run(cfg, output_dir)` trains over the tasks and writes the results.

This is the whole lifecycle of a run, top to bottom: check the config, load the data onto
the device, build the model and the strategy's plugins, then for each stage (one per
task, or a single one for joint training) train epoch by epoch, log every epoch's rows,
let the plugins update their state, and checkpoint. The Hydra entry point in
`cl_runner.cli` is a thin wrapper around this function; tests call it directly.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from . import benchmarks, checkpoint, metrics, models, plots
from .config import validate
from .errors import ConfigError
from .records import METRIC_COLUMNS, CsvLog, check_writable, write_json
from .strategies import TrainContext, TrainSet, build_plugins
from .trainer import evaluate, train_epoch

log = logging.getLogger(__name__)

_PURPOSE_SHUFFLE = 0  # generator stream for the epoch order
_PURPOSE_JOINT = 7  # generator stream for joint.task_shares subsets


class Diverged(RuntimeError):
    """A non-finite loss or weight: the run cannot go on."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""


@dataclass
class Stage:
    """One training phase: which row index it logs as and what it trains on."""

    index: int
    name: str
    data_tasks: list[int]  # tasks whose training data form this stage's base set
    shares: list[float] | None = None  # joint: share of each task's data
    final: bool = False  # the run's last stage


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available on this machine; use device=auto or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _epochs_of(cfg: DictConfig, stage: int) -> int:
    epochs = cfg.train.epochs
    return int(epochs[stage]) if OmegaConf.is_list(epochs) else int(epochs)


def _plan(cfg: DictConfig, bench: benchmarks.Benchmark) -> list[Stage]:
    if cfg.strategy.name == "joint":
        shares = list(cfg.joint.task_shares) if cfg.joint.task_shares is not None else [1.0] * len(bench.tasks)
        return [Stage(0, "joint", list(range(len(bench.tasks))), shares, final=True)]
    return [Stage(t.index, t.name, [t.index], final=t.index == len(bench.tasks) - 1) for t in bench.tasks]


def _base_set(stage: Stage, bench: benchmarks.Benchmark, ctx: TrainContext) -> TrainSet:
    parts = []
    for t in stage.data_tasks:
        data = TrainSet.from_split(bench.tasks[t].train, t)
        share = stage.shares[t] if stage.shares is not None else 1.0
        if share < 1.0:
            count = round(share * len(data))
            data = data.subset(torch.randperm(len(data), generator=ctx.generator(_PURPOSE_JOINT + t), device=data.y.device)[:count])
        if len(data):
            parts.append(data)
    return TrainSet.concat(parts) if len(parts) > 1 else parts[0]


def _peak_memory(device: torch.device) -> dict:
    # ru_maxrss is in KiB on Linux.
    out = {"host_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["device_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def _setup_torch(cfg: DictConfig, device: torch.device) -> None:
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.train.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.train.tf32)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def run(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train and evaluate one configured experiment; return the summary (also in summary.json)."""
    resuming = bool(cfg.get("resume"))
    if resuming:
        resume_from = Path(cfg.resume)
        saved = resume_from / "config.yaml"
        if not saved.is_file():
            raise ConfigError("resume", str(resume_from), "no config.yaml there; expected a cl-run output folder")
        if not (resume_from / checkpoint.FILENAME).is_file():
            raise ConfigError("resume", str(resume_from), f"no {checkpoint.FILENAME} there (the run finished no task)")
        cfg = OmegaConf.load(saved)  # the interrupted run's own config, not today's defaults
        output_dir = resume_from
    validate(cfg)
    out = Path(output_dir)
    check_writable(out)
    device = resolve_device(cfg.device)
    _setup_torch(cfg, device)

    bench = benchmarks.build(cfg, device)
    torch.manual_seed(cfg.seed)  # the initial weights do not depend on how the data was drawn
    model = models.build(cfg, bench.in_features, bench.num_outputs, device)
    forward = torch.compile(model) if cfg.train.compile else model
    plugins = build_plugins(cfg)
    stages = _plan(cfg, bench)
    term_names = ["ce"] + [n for p in plugins for n in p.loss_names]
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    state = checkpoint.load(out, device) if resuming else None
    return _train_all(cfg, out, device, bench, model, forward, plugins, stages, term_names, state)


def _train_all(cfg, out, device, bench, model, forward, plugins, stages, term_names, state) -> dict:
    first_stage, global_epoch, task_seconds = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        for plugin, plugin_state in zip(plugins, state["plugins"]):
            plugin.load_state_dict(plugin_state)
        first_stage, global_epoch = state["completed_stage"] + 1, state["global_epoch"]
        task_seconds = list(state["task_seconds"])
        log.info("resuming %s after task %d", out, first_stage - 1)

    done = first_stage
    keep = (lambda row: int(row["train_task"]) < done) if state is not None else None
    metrics_log = CsvLog(out / "metrics.csv", METRIC_COLUMNS, keep)
    train_log = CsvLog(out / "train_log.csv", ["train_task", "epoch", "global_epoch", "loss", *term_names, "seconds"], keep)
    summary = {"status": "running", "output_dir": str(out.resolve()), "device": str(device),
               "parameters": models.count_parameters(model), "tasks": [t.name for t in bench.tasks]}
    write_json(out / "summary.json", summary)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    if state is not None and not cfg.train.reset_optimizer:
        optimizer.load_state_dict(state["optimizer"])

    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM,)}
    try:
        if state is None:  # the untrained model: the baseline of forward transfer
            ctx = TrainContext(-1, bench, model, optimizer, device, cfg.seed)
            metrics_log.write(_eval_rows(ctx, forward, plugins, cfg, -1, 0, 0, ("val", "test")))
        for stage in stages[first_stage:]:
            if cfg.train.reset_optimizer:
                optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
            started = time.perf_counter()
            global_epoch = _train_stage(cfg, stage, bench, model, forward, optimizer, plugins, term_names,
                                        metrics_log, train_log, device, global_epoch)
            task_seconds.append(round(time.perf_counter() - started, 3))
            if cfg.checkpoint.every_task:
                checkpoint.save(out, {
                    "completed_stage": stage.index, "global_epoch": global_epoch, "task_seconds": task_seconds,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "plugins": [p.state_dict() for p in plugins],
                })
    except (KeyboardInterrupt, Interrupted) as err:
        summary.update(status="interrupted", error=f"interrupted ({type(err).__name__ if isinstance(err, KeyboardInterrupt) else err})")
        _finish(out, summary, metrics_log, train_log, bench, plugins, task_seconds, device, final=False)
        raise
    except Exception as err:  # Diverged, or a bug: never leave a run looking unfinished-but-fine
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        _finish(out, summary, metrics_log, train_log, bench, plugins, task_seconds, device, final=False)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary["status"] = "completed"
    return _finish(out, summary, metrics_log, train_log, bench, plugins, task_seconds, device, final=True)


def _eval_rows(ctx, forward, plugins, cfg, train_task, epoch, global_epoch, splits) -> list[dict]:
    results = {split: evaluate(ctx, forward, plugins, split, cfg.train.eval_batch_size) for split in splits}
    values = {split: r.tolist() for split, r in results.items()}  # one sync per split
    rows = []
    for split, per_task in values.items():
        for task, (loss, correct, count) in enumerate(per_task):
            rows.append({"train_task": train_task, "epoch": epoch, "eval_task": task, "split": split,
                         "loss": loss / count, "acc": correct / count, "global_epoch": global_epoch, "examples": int(count)})
    return rows


def _train_stage(cfg, stage, bench, model, forward, optimizer, plugins, term_names, metrics_log, train_log, device, global_epoch) -> int:
    ctx = TrainContext(stage.index, bench, model, optimizer, device, cfg.seed, final=stage.final)
    for plugin in plugins:
        plugin.before_task(ctx)
    data = _base_set(stage, bench, ctx)
    for plugin in plugins:
        data = plugin.train_set(ctx, data)
    steps_per_epoch = math.ceil(len(data) / cfg.train.batch_size)
    max_steps = cfg.train.iterations
    epochs = math.ceil(max_steps / steps_per_epoch) if max_steps else _epochs_of(cfg, stage.index)
    shuffle = ctx.generator(_PURPOSE_SHUFFLE)
    bar = tqdm(range(1, epochs + 1), desc=f"task {stage.index} ({stage.name})", disable=not cfg.train.progress, leave=True)
    for epoch in bar:
        ctx.epoch = epoch
        global_epoch += 1
        started = time.perf_counter()
        sums, seen = train_epoch(ctx, forward, data, plugins, term_names, cfg.train.batch_size, shuffle, max_steps)
        # One host-device sync per epoch: the loss sums and a finiteness check of the weights.
        finite = torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()
        values = torch.cat([sums / max(seen, 1), finite.float().unsqueeze(0)]).tolist()
        terms, weights_ok = values[:-1], values[-1] == 1.0
        total = sum(terms)
        if not (math.isfinite(total) and weights_ok):
            raise Diverged(
                f"training diverged in task {stage.index}, epoch {epoch}: "
                f"{'loss' if not math.isfinite(total) else 'weights'} not finite "
                "(lower train.lr, or the regularisation strength such as ewc.alpha)"
            )
        last = epoch == epochs
        seconds = time.perf_counter() - started
        eval_rows = []
        if epoch % cfg.train.eval_every == 0 or last:
            splits = ("val", "test") if last else ("val",)
            eval_rows = _eval_rows(ctx, forward, plugins, cfg, stage.index, epoch, global_epoch, splits)
        # Both logs get the epoch's rows back to back, after its evaluation: a Ctrl-C during
        # training or evaluation leaves the epoch out of both files, never in one only.
        train_log.write([{"train_task": stage.index, "epoch": epoch, "global_epoch": global_epoch, "loss": total,
                          **dict(zip(term_names, terms)), "seconds": round(seconds, 4)}])
        metrics_log.write(eval_rows)
        bar.set_postfix(loss=f"{total:.4f}")
    bar.close()
    for plugin in plugins:
        plugin.after_task(ctx)
    return global_epoch


def _finish(out, summary, metrics_log, train_log, bench, plugins, task_seconds, device, final: bool) -> dict:
    metrics_log.close()
    train_log.close()
    table = pd.read_csv(out / "metrics.csv")
    names = [t.name for t in bench.tasks]
    summary["task_seconds"] = task_seconds
    summary.update(_peak_memory(device))
    for plugin in plugins:
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
    return summary
