"""Cumulative training: while training task t, train on the whole training sets of tasks 0..t.

The usual upper bound for sequential methods (e.g. the "Cumulative" baseline of Avalanche,
Lomonaco et al. 2021, and van de Ven, Tuytelaars & Tolias, Nature Machine Intelligence
2022, "Three types of incremental learning", whose "Joint" trains once on all data):
unlike `joint`, the model is still trained task after task, with the same steps per task
as every other strategy, so it measures what unlimited replay could reach. Each example
keeps its own task id, so task-IL masks stay right. No knobs (`cumulative.*` is empty).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import Node
from ..examples import Examples
from .base import PLUGINS, Plugin, RunContext, task_examples


@dataclass
class CumulativeConfig(Node):
    pass  # no knobs: every earlier task's whole training set joins the current one


@PLUGINS.register("cumulative", CumulativeConfig)
class CumulativePlugin(Plugin):
    def train_set(self, ctx: RunContext, data: Examples) -> Examples:
        earlier = [task_examples(ctx, t) for t in range(ctx.task)]
        return Examples.concat([*earlier, data]) if earlier else data
