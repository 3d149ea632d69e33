"""Replay: while training task t, mix a kept share of every earlier task into its data.

The notebook keeps a random 10% (or 1%) of task A's training set and concatenates it to
task B's. `replay.balanced` keeps the same share of every class (the notebook's "ideal");
`replay.per_class` keeps a fixed number of examples per class for a bounded memory. The
examples are drawn once, after their task, from a generator seeded by (seed, task).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from ..errors import ConfigError
from .base import Plugin, TrainContext, TrainSet

_PURPOSE = 1  # generator stream for the replay choice


def choose(data: TrainSet, generator: torch.Generator, share: float, balanced: bool, per_class: int | None) -> torch.Tensor:
    """Indices of the examples to keep."""
    if per_class is None and not balanced:
        count = max(1, round(share * len(data)))
        return torch.randperm(len(data), generator=generator, device=data.y.device)[:count]
    kept = []
    for digit in torch.unique(data.digit).tolist():  # a handful of classes, not examples
        members = torch.nonzero(data.digit == digit).squeeze(1)
        count = per_class if per_class is not None else max(1, round(share * len(members)))
        order = torch.randperm(len(members), generator=generator, device=members.device)
        kept.append(members[order[:count]])
    return torch.cat(kept)


class ReplayPlugin(Plugin):
    name = "replay"

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        self.memory: list[TrainSet] = []  # one entry per finished task

    @staticmethod
    def validate(cfg: DictConfig, num_tasks: int) -> None:
        share = cfg.replay.share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ConfigError("replay.share", share, "expected a share in (0, 1]")
        per_class = cfg.replay.per_class
        if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
            raise ConfigError("replay.per_class", per_class, "expected an integer >= 1, or null to use replay.share")

    def train_set(self, ctx: TrainContext, data: TrainSet) -> TrainSet:
        return TrainSet.concat([data, *self.memory]) if self.memory else data

    def after_task(self, ctx: TrainContext) -> None:
        if ctx.final:  # no later task would replay it
            return
        task = ctx.benchmark.tasks[ctx.task]
        data = TrainSet.from_split(task.train, ctx.task)
        index = choose(data, ctx.generator(_PURPOSE), self.cfg.share, self.cfg.balanced, self.cfg.per_class)
        self.memory.append(data.subset(index))

    def summary(self) -> dict:
        digits = torch.cat([m.digit for m in self.memory]) if self.memory else torch.empty(0, dtype=torch.long)
        values, counts = torch.unique(digits, return_counts=True)
        return {
            "replay_examples": int(sum(len(m) for m in self.memory)),
            "replay_examples_per_task": [len(m) for m in self.memory],
            "replay_examples_per_class": {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist())},
        }

    def state_dict(self) -> dict:
        return {"memory": [m.state_dict() for m in self.memory]}

    def load_state_dict(self, state: dict) -> None:
        self.memory = [TrainSet(**m) for m in state["memory"]]
