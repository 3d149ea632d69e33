"""The hooks a strategy part (plugin) can implement, named after the training loop.

A strategy is an ordered list of plugins (`strategy.plugins` in the config). The loop in
`cl_runner.trainer` owns every counter and passes the run's `RunContext` to every hook;
plugins keep only their own state (a replay buffer, EWC anchors), which they expose through
`state_dict`/`load_state_dict` so that checkpoints can hold it. Order of calls per task:

    before_task -> train_set -> per batch: loss_terms, (backward), before_step, (step), after_step
    -> after_task

Hooks that produce something return it (extra data, named loss terms, evaluation scores)
rather than changing the loop's state, so plugins compose: `[ewc, replay]` is both.

A plugin module registers itself with the dataclass of its config node:

    @PLUGINS.register("ewc", EWCConfig)
    class EWCPlugin(Plugin): ...

and reads that node as `self.cfg` (`ewc.*` on the command line).
"""

from __future__ import annotations

import torch

from ..context import RunContext
from ..examples import Examples
from ..registry import Registry

PLUGINS = Registry("strategy plugin")


class Plugin:
    """Base class: every hook is a no-op, so a plugin implements only what it needs."""

    loss_names: tuple[str, ...] = ()  # extra loss terms it may return, logged as their own columns

    def __init__(self, cfg):
        self.cfg = cfg  # this plugin's config node

    def before_task(self, ctx: RunContext) -> None:
        pass

    def train_set(self, ctx: RunContext, data: Examples) -> Examples:
        """Extra training data for this task (replay), or a different set altogether."""
        return data

    def loss_terms(self, ctx: RunContext, batch: Examples, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named terms added to the cross-entropy of this batch."""
        return {}

    def before_step(self, ctx: RunContext, batch: Examples) -> None:
        """After backward, before the optimiser step: gradients may be changed here."""

    def after_step(self, ctx: RunContext, batch: Examples) -> None:
        pass

    def after_task(self, ctx: RunContext) -> None:
        pass

    def eval_logits(self, ctx: RunContext, x: torch.Tensor, task: int) -> torch.Tensor | None:
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


def task_examples(ctx: RunContext, task: int | None = None) -> Examples:
    """The training examples of a task (default: the one in training)."""
    return ctx.benchmark.tasks[ctx.task if task is None else task].train
