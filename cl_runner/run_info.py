"""What a run's figures say about it: its identity, its headline results, its tasks' chance levels.

`describe(cfg, summary, benchmark)` turns a run's config and summary into a `RunInfo`, so a
figure found on its own says what produced it:

- identity: the strategy and its key settings (each plugin's node: the values that differ
  from the node's defaults, plus the knob that sets the method's strength or memory, shown
  always), the model and its settings, the dataset, number of tasks, scenario, training
  budget and seed;
- results: average accuracy, forgetting and backward transfer, or the status of a run that
  did not complete;
- chance: per task, the number of classes a uniform guess is scored among: under task-IL its
  own classes (the other logits are masked), under class-IL and domain-IL every output of the
  single head (for class-IL the head holds every class of the run from the start, so 1/outputs
  is what a guess over the head scores, not 1/classes seen so far).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from omegaconf import OmegaConf

from .models import MODELS
from .schedule import JointConfig, plan
from .strategies import PLUGINS

# The knob that sets each method's strength or memory: shown even at its default value.
_ALWAYS_SHOWN = {"ewc": ("alpha",), "si": ("c",), "mas": ("alpha",), "rwalk": ("alpha",), "lwf": ("alpha",),
                 "replay": ("share",), "agem": ("per_class",), "der": ("alpha", "memory_size"), "icarl": ("per_class",),
                 "gdumb": ("memory_size",)}


@dataclass
class RunInfo:
    """What the figures of one run print about it."""

    identity: list[str]  # lines naming what ran
    results: str  # the headline metrics, or the run's status
    task_names: list[str]
    chance_classes: list[int]  # per task: a uniform guess scores 1/this
    stage_names: list[str]  # what each training stage (train_task) trained: the tasks, or "joint"


def number(value) -> str:
    """1e8 rather than 1e+08, 0.1 rather than 0.10000000000000001."""
    if isinstance(value, bool):
        return str(value).lower()  # as the command line writes it
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{value:g}")
    return str(value)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _settings(node, schema: type, always: tuple[str, ...] = ()) -> list[str]:
    """`key=value` for the node's values that differ from the schema's defaults, and `always`."""
    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    shown = []
    for field in dataclasses.fields(schema):
        value = values.get(field.name)
        if field.name == "name" or value is None:
            continue
        if field.name in always or value != _default(field):
            shown.append(f"{field.name}={number(value)}")
    return shown


def _unused(name: str, node) -> tuple[str, ...]:
    """Keys a node holds but does not use with its other values (so not worth a title's space):
    what the node declares (`Node.unused`)."""
    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    return tuple(PLUGINS[name].config(**values).unused())


def strategy_text(cfg) -> str:
    """`ewc alpha=1e8`, `ewc_replay (ewc alpha=1e8; replay share=0.1)`, `joint (task_shares=[0.01, 1.0])`."""
    parts = {}
    for name in cfg.strategy.plugins:
        always = tuple(k for k in _ALWAYS_SHOWN.get(name, ()) if k not in _unused(name, cfg[name]))
        parts[name] = " ".join(_settings(cfg[name], PLUGINS[name].config, always))
    if str(cfg.strategy.schedule) == "joint":
        parts["joint"] = " ".join(_settings(cfg.joint, JointConfig))
    name = str(cfg.strategy.name)
    if list(parts) == [name]:
        return f"{name} {parts[name]}".strip()
    described = [f"{plugin} {settings}".strip() for plugin, settings in parts.items() if settings or plugin != name]
    return f"{name} ({'; '.join(described)})" if described else name


def config_text(cfg) -> str:
    """What a config runs, in one line: strategy, model, training budget (as the figures say it)."""
    return f"{strategy_text(cfg)} · {model_text(cfg)} · {budget(cfg.train)}"


def model_text(cfg) -> str:
    """`mlp width=256 depth=1`: the model and the settings that differ from its defaults."""
    return f"{cfg.model.name} {' '.join(_settings(cfg.model, MODELS[cfg.model.name].config, ('width', 'depth')))}".strip()


def budget(train) -> str:
    """`50 epochs per task`, `epochs [50, 100]`, `2000 iterations per task`."""
    if train.iterations:
        return f"{train.iterations} iterations per task"
    epochs = OmegaConf.to_container(train.epochs) if OmegaConf.is_list(train.epochs) else train.epochs
    if not isinstance(epochs, int):
        return f"epochs {epochs}"
    return f"{epochs} epoch{'s' if epochs != 1 else ''} per task"


def _results(summary: dict) -> str:
    if summary.get("status") != "completed" or summary.get("average_accuracy") is None:
        return f"status: {summary.get('status', 'unknown')} (no final results)"
    parts = [f"average accuracy {summary['average_accuracy']:.3f}"]
    for key, label in (("forgetting", "forgetting"), ("backward_transfer", "BWT"), ("forward_transfer", "FWT")):
        if summary.get(key) is not None:
            value = round(summary[key], 3) + 0.0  # no "-0.000"
            parts.append(f"{label} {value:.3f}" if key == "forgetting" else f"{label} {value:+.3f}")
    return " · ".join(parts)


def describe(cfg, summary: dict, benchmark) -> RunInfo:
    """The RunInfo of a run (`benchmark`: its cl_runner.benchmarks.Benchmark)."""
    tasks = benchmark.tasks
    model = model_text(cfg)
    if summary.get("parameters"):
        model += f" ({summary['parameters']:,} parameters)"
    identity = [
        f"{strategy_text(cfg)} · {model}",
        f"{cfg.dataset.name}: {len(tasks)} tasks, {cfg.scenario}-IL · {budget(cfg.train)} · seed {cfg.seed}",
    ]
    names = [t.name for t in tasks]
    return RunInfo(identity, _results(summary), names, chance_classes(benchmark), [s.name for s in plan(cfg, names)])


def chance_classes(benchmark) -> list[int]:
    """Per task, the number of classes a uniform guess is scored among (see the module docstring)."""
    return [len(t.classes) if benchmark.scenario == "task" else benchmark.num_outputs for t in benchmark.tasks]
