"""Cumulative training: while training task t, train on the whole training sets of tasks 0..t.

The usual upper bound for sequential methods (e.g. the "Cumulative" baseline of Avalanche,
Lomonaco et al. 2021, and van de Ven, Tuytelaars & Tolias, Nature Machine Intelligence
2022, "Three types of incremental learning", whose "Joint" trains once on all data):
unlike `joint`, the model is still trained task after task, with the same steps per task
as every other strategy, so it measures what unlimited replay could reach. Each example
keeps its own task id, so task-IL masks stay right. No knobs (`cumulative.*` is empty).
"""

from __future__ import annotations

from .base import Plugin, TrainContext, TrainSet


class CumulativePlugin(Plugin):
    name = "cumulative"

    def train_set(self, ctx: TrainContext, data: TrainSet) -> TrainSet:
        earlier = [TrainSet.from_split(ctx.benchmark.tasks[t].train, t) for t in range(ctx.task)]
        return TrainSet.concat([*earlier, data]) if earlier else data
