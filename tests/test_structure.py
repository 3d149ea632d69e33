"""The shape of the code: no import cycles, short modules, narrow functions, and parts that
are added by one module and one YAML file (a strategy, a model), tried in a throwaway copy."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "cl_runner"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The cl_runner modules a module imports, at any depth of its code (function-level too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` imports the submodule x; `from .m import y` (y not a module) the module m.
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        for target in targets:
            # `from . import x` names a module; `from .x import y` the module x.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_cycles():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    # A package imports its __init__ when any of its modules is imported: that edge is implied.
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    assert graph["cl_runner.config"] and "cl_runner.config" not in graph["cl_runner.benchmarks"]


def test_modules_are_short_and_functions_narrow():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 300, f"{path.relative_to(REPO)} has {len(source.splitlines())} lines"
        assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(REPO)} has no module docstring"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
                count -= 1 if args.args and args.args[0].arg in ("self", "cls") else 0
                assert count <= 7, f"{path.relative_to(REPO)}:{node.lineno} {node.name} takes {count} parameters"


# --- adding parts: one module and one YAML file ---------------------------------------------

THROWAWAY_STRATEGY = '''"""A throwaway strategy: pulls the weights towards zero (an L2 term), to test extension."""

from dataclasses import dataclass

from ..checks import Choice, Node
from .base import PLUGINS, Plugin

Norm = Choice("Norm", {"l2": "l2", "l1": "l1"})


@dataclass
class ShrinkConfig(Node):
    weight: float = 0.01
    norm: Norm = Norm.l2

    def check(self) -> None:
        self.number("weight", 0.0)


@PLUGINS.register("shrink", ShrinkConfig)
class ShrinkPlugin(Plugin):
    loss_names = ("shrink",)

    def loss_terms(self, ctx, batch, logits):
        power = 2 if self.cfg.norm == "l2" else 1
        return {"shrink": self.cfg.weight * sum(p.abs().pow(power).sum() for p in ctx.model.parameters())}
'''

THROWAWAY_MODEL = '''"""A throwaway model: a linear classifier with a scaled output, to test extension."""

import math
from dataclasses import dataclass

from torch import nn

from .base import MODELS, ModelConfig


@dataclass
class ScaledLinearConfig(ModelConfig):
    name: str = "scaled_linear"
    scale: float = 2.0

    def check(self) -> None:
        self.number("scale", 0.0, low_open=True)


class ScaledLinear(nn.Module):
    def __init__(self, features, outputs, scale):
        super().__init__()
        self.linear, self.scale = nn.Linear(features, outputs), scale

    def forward(self, x):
        return self.scale * self.linear(x.flatten(1))


@MODELS.register("scaled_linear", ScaledLinearConfig)
def build(cfg, input_shape, num_outputs):
    return ScaledLinear(math.prod(input_shape), num_outputs, cfg.scale)
'''

RECORDER = '''"""Two plugins that write down every hook the loop calls on them, to test the order."""

import os
from dataclasses import dataclass

from ..checks import Node
from .base import PLUGINS, Plugin


@dataclass
class RecordConfig(Node):
    pass


class Recorder(Plugin):
    label = ""

    def _note(self, ctx, hook, **facts):
        told = " ".join(f"{k}={v}" for k, v in facts.items())
        with open(os.environ["HOOK_LOG"], "a") as log:
            log.write(f"{self.label} {hook} task={ctx.task} step={ctx.step} {told}".rstrip() + "\\n")

    def before_task(self, ctx):
        self._note(ctx, "before_task")

    def train_set(self, ctx, data):
        self._note(ctx, "train_set")
        return data

    def loss_terms(self, ctx, batch, logits):
        self._note(ctx, "loss_terms")
        return {}

    def before_step(self, ctx, batch):
        self.weights = [p.detach().clone() for p in ctx.model.parameters()]
        graded = all(p.grad is not None for p in ctx.model.parameters())
        self._note(ctx, "before_step", grads=graded)

    def after_step(self, ctx, batch):
        moved = any(not (p.detach() == w).all() for p, w in zip(ctx.model.parameters(), self.weights))
        self._note(ctx, "after_step", moved=moved)

    def eval_logits(self, ctx, x, task):
        self._note(ctx, "eval_logits")
        return None

    def after_task(self, ctx):
        self._note(ctx, "after_task")


@PLUGINS.register("record_a", RecordConfig)
class RecordA(Recorder):
    label = "a"


@PLUGINS.register("record_b", RecordConfig)
class RecordB(Recorder):
    label = "b"
'''


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    """A copy of the package and its conf/, plus a new strategy and a new model: two files each."""
    copy = tmp_path_factory.mktemp("extended")
    shutil.copytree(PACKAGE, copy / "cl_runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", copy / "conf")
    (copy / "cl_runner" / "strategies" / "shrink.py").write_text(THROWAWAY_STRATEGY)
    (copy / "conf" / "strategy" / "shrink.yaml").write_text("# L2 shrinkage (a test)\nname: shrink\nplugins: [shrink]\n")
    (copy / "cl_runner" / "models" / "scaled_linear.py").write_text(THROWAWAY_MODEL)
    (copy / "conf" / "model" / "scaled_linear.yaml").write_text(
        "defaults:\n  - /schema/model@_here_: scaled_linear\n  - _self_\n\nname: scaled_linear\nscale: 3.0\n")
    (copy / "cl_runner" / "strategies" / "recorder.py").write_text(RECORDER)
    return copy


def _cl_run(copy: Path, *args: str) -> subprocess.CompletedProcess:
    # cwd first on sys.path: the copy's cl_runner is imported, not the installed one.
    return subprocess.run([sys.executable, "-m", "cl_runner.cli", *args], cwd=copy, capture_output=True,
                          text=True, timeout=300)


def test_a_new_strategy_and_model_are_one_module_and_one_yaml_each(extended, tiny_mnist, tmp_path):
    common = [f"data.root={tiny_mnist}", "data.verify=false", "data.download=false", "train.iterations=3",
              "train.progress=false", "device=cpu"]
    out = tmp_path / "run"
    result = _cl_run(extended, "strategy=shrink", "shrink.weight=0.5", "model=scaled_linear", *common,
                     f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    header = (out / "train_log.csv").read_text().splitlines()[0].split(",")
    assert "shrink" in header  # its loss term is logged as its own column
    saved = (out / "config.yaml").read_text()
    assert "scale: 3.0" in saved and "weight: 0.5" in saved
    # Its checks and its closed choices are enforced like every built-in key's.
    for bad, key in (("shrink.weight=-1", "shrink.weight"), ("shrink.norm=l3", "shrink.norm"),
                     ("model.scale=0", "model.scale")):
        model = [] if bad.startswith("shrink") else ["model=scaled_linear"]
        result = _cl_run(extended, "strategy=shrink", *model, bad, *common, f"hydra.run.dir={tmp_path / 'bad'}")
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and key in result.stderr and "Traceback" not in result.stderr


def test_the_loop_calls_the_hooks_in_order(extended, tiny_mnist, tmp_path):
    """Per task: before_task, train_set, then per step loss_terms, before_step (gradients in
    place, weights not yet moved), after_step (weights moved), evaluations between; after_task
    last. Plugins in the order of strategy.plugins; eval_logits asks the next plugin only when
    one returns None."""
    log = tmp_path / "hooks.txt"
    common = [f"data.root={tiny_mnist}", "data.verify=false", "data.download=false", "train.iterations=2",
              "train.progress=false", "device=cpu", "strategy.plugins=[record_a,record_b]"]
    result = subprocess.run([sys.executable, "-m", "cl_runner.cli", *common, f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=extended, capture_output=True, text=True, timeout=300, env={**os.environ, "HOOK_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    expected = []
    for task in (0, 1):
        expected += [f"{p} before_task task={task} step=0" for p in "ab"]
        expected += [f"{p} train_set task={task} step=0" for p in "ab"]
        for step in (0, 1):
            expected += [f"{p} loss_terms task={task} step={step}" for p in "ab"]
            expected += [f"{p} before_step task={task} step={step} grads=True" for p in "ab"]
            expected += [f"{p} after_step task={task} step={step + 1} moved=True" for p in "ab"]
        expected += [f"{p} after_task task={task} step=2" for p in "ab"]
    assert [c for c in calls if "eval_logits" not in c] == expected
    # Evaluation: of the untrained model first (task -1), then after each epoch (between steps,
    # never inside one), asking a, then b, for every batch.
    evaluations = [c.split()[0] for c in calls if "eval_logits" in c]
    assert evaluations and evaluations == ["a", "b"] * (len(evaluations) // 2)
    assert calls[0].startswith("a eval_logits task=-1")
    inside_step = False
    for call in calls:
        inside_step = "loss_terms" in call or "before_step" in call or (inside_step and "after_step" not in call)
        assert not (inside_step and "eval_logits" in call), call
    epochs_evaluated = {" ".join(c.split()[2:4]) for c in calls if "eval_logits" in c and "task=-1" not in c}
    assert len(epochs_evaluated) == 4  # two epochs (one step each) in each of two tasks
