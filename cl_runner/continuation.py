"""What a resumed run continues: checked whole and consistent, then loaded, before anything is written.

`restore(ctx, state, stages)` takes the checkpoint `checkpoint.load` read and the context
built from the folder's config.yaml, and refuses in one line what does not fit:

- a checkpoint of another run (exit 2, ConfigError on `resume`): a completed stage that is
  not one of the config's stages, weights that are not those of the model config.yaml builds
  (other names or shapes, in the model's state or in a plugin's copy of it), the state of
  other plugins than the strategy's, or another seed, model, strategy or data set recorded in
  it (`identity`; checkpoints written before it was recorded are checked without it);
- a folder that is not whole (exit 7, DamagedRunError): a field of the checkpoint missing or of
  the wrong kind, a plugin's state without what that plugin saves, metrics.csv or train_log.csv
  missing or without the rows of a finished task (every epoch's losses, the validation
  accuracy of every task at each evaluated epoch, the test accuracy of every task after each
  task -- the accuracy matrix -- and the untrained model's), or trackers.json unreadable while
  a tracker is on.

Then the model, the plugins and the optimiser take the checkpoint's state. Nothing of the
folder is changed by a refusal.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .context import RunContext
from .errors import ConfigError, DamagedRunError

# The checkpoint's fields and the kinds they hold (`cl_runner.run` writes them).
FIELDS = {"completed_stage": int, "global_epoch": int, "task_seconds": list, "model": dict, "optimizer": dict,
          "plugins": list}
_LOAD_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError)


def identity(cfg, task_names: list[str]) -> dict:
    """What the checkpoint records of the run it belongs to."""
    return {"seed": int(cfg.seed), "model": str(cfg.model.name), "strategy": str(cfg.strategy.name),
            "dataset": str(cfg.dataset.name), "tasks": list(task_names)}


def restore(ctx: RunContext, state: dict, stages: list) -> dict:
    """`state`, checked against the run and loaded into it (see the module docstring)."""
    folder = ctx.out
    _check_fields(folder, state, len(stages))
    names = [t.name for t in ctx.benchmark.tasks]
    recorded = state.get("run")
    if recorded is not None and recorded != identity(ctx.cfg, names):
        raise _foreign(folder, f"it was written by another run ({_differences(recorded, identity(ctx.cfg, names))})")
    _check_model(folder, ctx.model, state["model"], str(ctx.cfg.model.name))
    _check_plugins(ctx, state["plugins"])
    _check_rows(ctx, state, stages)
    _check_trackers(ctx)
    _load(ctx, state)
    return state


def _foreign(folder: Path, why: str) -> ConfigError:
    return ConfigError("resume", str(folder), f"checkpoint.pt does not belong to the run config.yaml describes: {why}; "
                                              "resume the folder it came from")


def _differences(recorded, mine: dict) -> str:
    if not isinstance(recorded, dict):
        return "its record of the run is not one cl-run wrote"
    return ", ".join(f"{key} {recorded.get(key)!r}, not {value!r}" for key, value in mine.items() if recorded.get(key) != value)


def _check_fields(folder: Path, state, num_stages: int) -> None:
    if not isinstance(state, dict):
        raise DamagedRunError(folder, "checkpoint.pt does not hold a cl-run checkpoint")
    for key, kind in FIELDS.items():
        value = state.get(key)
        if value is None:
            raise DamagedRunError(folder, f"checkpoint.pt lacks {key}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DamagedRunError(folder, f"checkpoint.pt's {key} is a {type(value).__name__}, not a {kind.__name__}")
    stage = state["completed_stage"]
    if not 0 <= stage < num_stages:
        raise _foreign(folder, f"it says stage {stage} finished, and the config has stages 0 to {num_stages - 1}")
    if len(state["task_seconds"]) != stage + 1 or state["global_epoch"] < stage + 1:
        raise DamagedRunError(folder, f"checkpoint.pt's progress ({len(state['task_seconds'])} task times, global "
                                      f"epoch {state['global_epoch']}) does not fit its completed stage {stage}")


def _shapes(module: torch.nn.Module) -> dict[str, tuple]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def _check_model(folder: Path, model: torch.nn.Module, saved: dict, name: str) -> None:
    mine = _shapes(model)
    unknown, missing = sorted(set(saved) - set(mine)), sorted(set(mine) - set(saved))
    if unknown or missing:
        example = f"{unknown[0]!r} has no place in it" if unknown else f"it lacks {missing[0]!r}"
        raise _foreign(folder, f"its weights are not those of config.yaml's model={name} ({example})")
    _check_shapes(folder, saved, mine, "the model's weights")


def _check_shapes(folder: Path, saved: dict, mine: dict[str, tuple], what: str) -> None:
    for name, tensor in saved.items():
        if not torch.is_tensor(tensor):
            raise DamagedRunError(folder, f"checkpoint.pt's {name!r} in {what} is not a tensor")
        if tuple(tensor.shape) != mine[name]:
            raise _foreign(folder, f"{name!r} in {what} has shape {list(tensor.shape)}, and in the model config.yaml "
                                   f"builds {list(mine[name])}")


def _check_plugins(ctx: RunContext, saved: list) -> None:
    folder, plugins = ctx.out, ctx.plugins
    names = list(ctx.cfg.strategy.plugins)
    if len(saved) != len(plugins):
        raise _foreign(folder, f"it holds the state of {len(saved)} plugin(s), and strategy {ctx.cfg.strategy.name} has "
                               f"{len(plugins)} ({', '.join(names) or 'none'})")
    mine = _shapes(ctx.model)
    example_shape = tuple(ctx.benchmark.tasks[0].train.x.shape[1:])
    for name, plugin, state in zip(names, plugins, saved):
        if not isinstance(state, dict):
            raise DamagedRunError(folder, f"checkpoint.pt's {name} state is not a mapping")
        lacking = [key for key in plugin.state_dict() if key not in state]
        if lacking:
            raise DamagedRunError(folder, f"checkpoint.pt's {name} state lacks {', '.join(lacking)}")
        _check_nested(folder, state, mine, example_shape, f"the {name} state")


def _check_nested(folder: Path, value, mine: dict[str, tuple], example_shape: tuple, what: str) -> None:
    """Copies of the weights (a mapping of the model's tensor names) fit the model; stored
    examples (x, y) fit the data."""
    if isinstance(value, dict):
        if value and set(value) <= set(mine):
            _check_shapes(folder, value, mine, what)
            return
        x, y = value.get("x"), value.get("y")
        if torch.is_tensor(x) and torch.is_tensor(y) and (tuple(x.shape[1:]) != example_shape or len(x) != len(y)):
            raise DamagedRunError(folder, f"checkpoint.pt's examples in {what} have shape {list(x.shape)} with "
                                          f"{len(y)} labels; the data's examples are {list(example_shape)}")
        for inner in value.values():
            _check_nested(folder, inner, mine, example_shape, what)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            _check_nested(folder, inner, mine, example_shape, what)


def _read_rows(folder: Path, name: str, done: int) -> list[dict]:
    """The rows of a log that a resume keeps (`records.RunLogs`): whole rows of finished stages."""
    try:
        with open(folder / name, newline="") as f:
            rows = [row for row in csv.DictReader(f) if None not in row.values()]
    except FileNotFoundError:
        raise DamagedRunError(folder, f"{name} is missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DamagedRunError(folder, f"{name} is unreadable ({err})") from None
    try:
        return [row for row in rows if int(row["train_task"]) < done]
    except (KeyError, ValueError, TypeError):
        raise DamagedRunError(folder, f"{name} holds a row without a train_task number") from None


def _epochs(folder: Path, rows: list[dict], stage: int) -> int:
    """How many epochs train_log.csv holds of `stage`, checked to run 1, 2, ... without a gap."""
    try:
        epochs = sorted(int(row["epoch"]) for row in rows if int(row["train_task"]) == stage)
    except (KeyError, ValueError):
        raise DamagedRunError(folder, "train_log.csv holds a row without an epoch number") from None
    if not epochs or epochs != list(range(1, len(epochs) + 1)):
        raise DamagedRunError(folder, f"train_log.csv lacks epochs of task {stage} (it holds {epochs or 'none'}), "
                                      "which checkpoint.pt says finished")
    return len(epochs)


def _check_rows(ctx: RunContext, state: dict, stages: list) -> None:
    folder, train = ctx.out, ctx.cfg.train
    done = state["completed_stage"] + 1
    logged = _read_rows(folder, "train_log.csv", done)
    epochs = [_epochs(folder, logged, stage.index) for stage in stages[:done]]
    if sum(epochs) != state["global_epoch"]:
        raise DamagedRunError(folder, f"train_log.csv holds {sum(epochs)} epochs of the finished tasks, and checkpoint.pt "
                                      f"says {state['global_epoch']}")
    if not train.iterations:
        for stage, count in zip(stages, epochs):
            expected = int(train.epochs[stage.index]) if OmegaConf.is_list(train.epochs) else int(train.epochs)
            if count != expected:
                raise DamagedRunError(folder, f"train_log.csv holds {count} epochs of task {stage.index}, and "
                                              f"config.yaml trains {expected}")
    accuracies = _accuracies(folder, _read_rows(folder, "metrics.csv", done))
    wanted = [(-1, 0, split) for split in ("val", "test")]
    for stage, count in zip(stages, epochs):
        wanted += [(stage.index, e, "val") for e in range(1, count + 1) if e % train.eval_every == 0 or e == count]
        wanted.append((stage.index, count, "test"))
    for key in wanted:
        for task in range(len(ctx.benchmark.tasks)):
            if (*key, task) not in accuracies:
                where = "of the untrained model" if key[0] < 0 else f"after task {key[0]}, epoch {key[1]}"
                raise DamagedRunError(folder, f"metrics.csv lacks the {key[2]} accuracy of task {task} {where} "
                                              "(a row cut short, removed or edited)")


def _accuracies(folder: Path, rows: list[dict]) -> set[tuple]:
    """(train_task, epoch, split, eval_task) of every row with an accuracy in [0, 1]."""
    found = set()
    for row in rows:
        try:
            acc = float(row["acc"])
            key = (int(row["train_task"]), int(row["epoch"]), row["split"], int(row["eval_task"]))
        except (KeyError, ValueError, TypeError):
            raise DamagedRunError(folder, f"metrics.csv holds a row that is not numbers where numbers go: {row}") from None
        if math.isfinite(acc) and 0 <= acc <= 1:
            found.add(key)
    return found


def _check_trackers(ctx: RunContext) -> None:
    """trackers.json, where a tracker is on and will reopen its run from it."""
    path = ctx.out / "trackers.json"
    if not path.is_file() or not any(node.enabled for node in ctx.cfg.logger.values()):
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DamagedRunError(ctx.out, f"trackers.json is unreadable ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or not all(isinstance(v, dict) for k, v in saved.items() if k not in ("sweep", "job")):
        raise DamagedRunError(ctx.out, "trackers.json does not hold what cl-run writes there")


def _load(ctx: RunContext, state: dict) -> None:
    folder = ctx.out
    ctx.model.load_state_dict(state["model"])  # names and shapes checked above
    for name, plugin, plugin_state in zip(ctx.cfg.strategy.plugins, ctx.plugins, state["plugins"]):
        try:
            plugin.load_state_dict(plugin_state)
        except _LOAD_ERRORS as err:
            raise DamagedRunError(folder, f"checkpoint.pt's {name} state cannot be loaded ({type(err).__name__}: "
                                          f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not ctx.cfg.train.reset_optimizer:
        _check_optimizer(folder, ctx.optimizer, state["optimizer"])
        try:
            ctx.optimizer.load_state_dict(state["optimizer"])
        except _LOAD_ERRORS as err:
            raise DamagedRunError(folder, f"checkpoint.pt's optimizer state cannot be loaded ({type(err).__name__}: "
                                          f"{str(err).splitlines()[0] if str(err) else ''})") from None


def _check_optimizer(folder: Path, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """The optimiser's per-weight tensors (Adam's moments, SGD's momentum) fit the weights:
    torch loads them unchecked, and a step with them would fail."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    entries = saved.get("state")
    if not isinstance(entries, dict):
        raise DamagedRunError(folder, "checkpoint.pt's optimizer state lacks its per-weight state")
    for index, entry in entries.items():
        tensors = {k: v for k, v in entry.items() if torch.is_tensor(v) and v.dim()} if isinstance(entry, dict) else {}
        for key, value in tensors.items():
            if not isinstance(index, int) or not 0 <= index < len(params) or value.shape != params[index].shape:
                raise DamagedRunError(folder, f"checkpoint.pt's optimizer {key} of weight {index} does not fit the model")
