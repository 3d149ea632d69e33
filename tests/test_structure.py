"""The shape of the code: no import cycles, short modules, narrow functions, and parts that
are added by one module and one YAML file (a strategy, a model), tried in a throwaway copy."""

from __future__ import annotations

import ast
import json
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
