"""What each stage of a run trains on: one stage per task (sequential), or one on all (joint).

`strategy.schedule=sequential` (every strategy but joint) trains the tasks one after the
other; `joint` trains one model once on the union of the tasks' training data, each task's
share of it set by `joint.task_shares` (the notebook's "from scratch on task 1 + 1% of task
0" is `[0.01, 1.0]`). Plugins can add to or replace a stage's base set (`train_set` hook).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .checks import Node
from .examples import Examples
from .seeds import Stream


@dataclass
class JointConfig(Node):
    task_shares: Optional[list[float]] = None  # default: all 1.0

    def check(self) -> None:
        shares = self.task_shares
        if shares is not None and (any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 1 for s in shares)
                                   or not any(s > 0 for s in shares)):
            self.fail("task_shares", "expected shares in [0, 1], at least one above 0", list(shares))

    def check_tasks(self, num_tasks: int) -> None:
        if self.task_shares is not None and len(self.task_shares) != num_tasks:
            self.fail("task_shares", f"expected {num_tasks} shares, one per task", list(self.task_shares))


@dataclass
class Stage:
    """One training phase: which row index it logs as and what it trains on."""

    index: int
    name: str
    data_tasks: list[int]  # tasks whose training data form this stage's base set
    shares: list[float] | None = None  # joint: share of each task's data
    final: bool = False  # the run's last stage


def plan(cfg, task_names: list[str]) -> list[Stage]:
    if cfg.strategy.schedule == "joint":
        shares = list(cfg.joint.task_shares) if cfg.joint.task_shares is not None else [1.0] * len(task_names)
        return [Stage(0, "joint", list(range(len(task_names))), shares, final=True)]
    return [Stage(t, name, [t], final=t == len(task_names) - 1) for t, name in enumerate(task_names)]


def base_set(ctx, stage: Stage) -> Examples:
    """The stage's own training examples, before plugins add to them (ctx: the RunContext)."""
    parts = []
    for t in stage.data_tasks:
        data = ctx.benchmark.tasks[t].train
        share = stage.shares[t] if stage.shares is not None else 1.0
        if share < 1.0:
            count = round(share * len(data))
            order = torch.randperm(len(data), generator=ctx.generator(Stream.JOINT_SUBSET, task=t), device=data.y.device)
            data = data.subset(order[:count])
        if len(data):
            parts.append(data)
    return Examples.concat(parts) if len(parts) > 1 else parts[0]
