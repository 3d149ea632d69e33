"""The hooks a strategy part (plugin) can implement, named after the training loop.

A strategy is an ordered list of plugins (`strategy.plugins` in the config). The loop in
`cl_runner.trainer` owns every counter and passes them in a `TrainContext`; plugins keep
only their own state (a replay buffer, EWC anchors), which they expose through
`state_dict`/`load_state_dict` so that checkpoints can hold it. Order of calls per task:

    before_task -> train_set -> per batch: loss_terms, (backward), before_step, (step), after_step
    -> after_task
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from ..benchmarks import Benchmark, Split


@dataclass
class TrainSet:
    """Training examples with the task each came from (needed for task-IL masks)."""

    x: torch.Tensor
    y: torch.Tensor
    task: torch.Tensor  # [N] int64 task index of each example
    digit: torch.Tensor  # [N] int64 MNIST digit, for class-balanced selection and counts

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_split(cls, split: Split, task: int) -> "TrainSet":
        return cls(split.x, split.y, torch.full_like(split.y, task), split.digit)

    def subset(self, index: torch.Tensor) -> "TrainSet":
        # index_select copies whole rows: about twice as fast on CPU as fancy indexing's
        # general gather for [batch, 784] images, and this runs once per training batch.
        if index.dtype == torch.bool:
            index = torch.nonzero(index).squeeze(1)
        return TrainSet(*(getattr(self, f).index_select(0, index) for f in ("x", "y", "task", "digit")))

    @staticmethod
    def concat(parts: list["TrainSet"]) -> "TrainSet":
        return TrainSet(*(torch.cat([getattr(p, f) for p in parts]) for f in ("x", "y", "task", "digit")))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "y": self.y, "task": self.task, "digit": self.digit}


@dataclass
class TrainContext:
    """Read-only facts about where the loop is; the loop updates them, plugins read them."""

    task: int  # index of the task being trained
    benchmark: Benchmark
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    seed: int
    final: bool = False  # the last task of the run: nothing comes after it to protect
    epoch: int = 0  # 1-based within the task once training starts
    step: int = 0  # optimiser steps taken in this task

    def generator(self, purpose: int) -> torch.Generator:
        """A generator on the run's device seeded from (seed, task, purpose): reproducible and
        independent of how many random numbers earlier code drew, which makes resume exact."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.task * 1_009 + purpose)


class Plugin:
    """Base class: every hook is a no-op, so a plugin implements only what it needs."""

    name = "plugin"
    loss_names: tuple[str, ...] = ()  # extra loss terms it may return, logged as their own columns

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @staticmethod
    def validate(cfg: DictConfig, num_tasks: int) -> None:
        """Raise ConfigError for bad values of this plugin's own config node."""

    def before_task(self, ctx: TrainContext) -> None:
        pass

    def train_set(self, ctx: TrainContext, data: TrainSet) -> TrainSet:
        """Extra training data for this task (replay), or a different set altogether."""
        return data

    def loss_terms(self, ctx: TrainContext, batch: TrainSet, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named terms added to the cross-entropy of this batch."""
        return {}

    def before_step(self, ctx: TrainContext, batch: TrainSet) -> None:
        """After backward, before the optimiser step: gradients may be changed here."""

    def after_step(self, ctx: TrainContext, batch: TrainSet) -> None:
        pass

    def after_task(self, ctx: TrainContext) -> None:
        pass

    def eval_logits(self, ctx: TrainContext, x: torch.Tensor, task: int) -> torch.Tensor | None:
        """Scores to evaluate with instead of the model's logits (e.g. a nearest-mean
        classifier); None keeps the model's own."""
        return None

    def summary(self) -> dict:
        """Facts for summary.json (e.g. how many examples a memory holds)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
