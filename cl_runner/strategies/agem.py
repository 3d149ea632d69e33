"""Averaged Gradient Episodic Memory (Chaudhry, Ranzato, Rohrbach & Elhoseiny, "Efficient
lifelong learning with A-GEM", ICLR 2019).

An episodic memory keeps examples of the finished tasks (`agem.policy`, by default
class-balanced with `agem.per_class` examples per class and/or `agem.memory_size` in
all; see `memory.py`). At every step after the first task, in `before_step` (after
backward, before the optimiser step) the reference gradient g_ref of the loss on a
random memory batch of `agem.batch_size` examples is computed; when the update would
increase that loss (g . g_ref < 0) the gradient is projected,

    g <- g - (g . g_ref) / (g_ref . g_ref) * g_ref,

so that the step never makes the memory's loss worse to first order. The projection is
computed without a host-device sync. Memory examples keep their task ids, so task-IL
masks apply to them as to any batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..checks import Node
from ..examples import Examples
from ..seeds import Stream
from .base import PLUGINS, Plugin, RunContext, task_examples
from .memory import Memory, MemoryPlugin, Policy, check_memory


@dataclass
class AGEMConfig(Node):
    policy: Policy = Policy.class_balanced
    memory_size: Optional[int] = None  # examples in all (null: only per_class bounds it)
    per_class: Optional[int] = 100
    batch_size: int = 256  # memory examples per reference gradient

    def check(self) -> None:
        check_memory(self, ("class_balanced", "reservoir"))
        self.positive_int("batch_size")

    def unused(self) -> dict[str, str]:
        reservoir = "not used by agem.policy=reservoir (every example has the same chance)"
        return {"per_class": reservoir} if self.policy == "reservoir" else {}


def project(grads: list[torch.Tensor], ref: list[torch.Tensor], eps: float = 1e-12) -> list[torch.Tensor]:
    """A-GEM's projection of the gradient `grads` against the reference gradient `ref`."""
    dot = sum((g * r).sum() for g, r in zip(grads, ref))
    ref_sq = sum(r.square().sum() for r in ref)
    coef = torch.clamp(dot, max=0.0) / (ref_sq + eps)  # 0 when they agree: no change
    return [g - coef * r for g, r in zip(grads, ref)]


@PLUGINS.register("agem", AGEMConfig)
class AGEMPlugin(MemoryPlugin, Plugin):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.memory = Memory(cfg.policy, cfg.memory_size, cfg.per_class)
        self._sampler: torch.Generator | None = None
        self.projected = 0  # steps whose gradient was changed (read at summary time only)
        self._projected = None

    def before_task(self, ctx: RunContext) -> None:
        self._sampler = ctx.generator(Stream.AGEM_SAMPLE)

    def reference_gradient(self, ctx: RunContext, params: list[torch.Tensor]) -> list[torch.Tensor]:
        batch, _ = self.memory.sample(self.cfg.batch_size, self._sampler)
        with ctx.precision.autocast():
            loss = F.cross_entropy(ctx.train_scores(ctx.forward(batch.x), batch.task), batch.y)
        # Under 16-mixed the loss is scaled as the step's was: the projection does not depend on
        # the reference gradient's length, and float16 gradients need the scale not to underflow.
        grads = torch.autograd.grad(ctx.precision.scale(loss), params, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]

    def before_step(self, ctx: RunContext, batch: Examples) -> None:
        if not len(self.memory):
            return
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        ref = self.reference_gradient(ctx, params)
        new = project(grads, ref)
        changed = (sum((g * r).sum() for g, r in zip(grads, ref)) < 0).long()
        self._projected = changed if self._projected is None else self._projected + changed
        for p, g in zip(params, new):
            p.grad = g

    def after_task(self, ctx: RunContext) -> None:
        if self._projected is not None:
            self.projected += int(self._projected)  # one sync per task
            self._projected = None
        if ctx.final:
            return
        self.memory.add(task_examples(ctx), ctx.generator(Stream.AGEM_STORE), ctx.benchmark.num_outputs)

    def summary(self) -> dict:
        return {"agem_memory_examples": len(self.memory), "agem_memory_per_class": self.memory.per_class_counts(),
                "agem_projected_steps": self.projected}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "projected": torch.tensor(self.projected)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.projected = int(state["projected"])
