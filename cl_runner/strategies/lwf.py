"""Learning without Forgetting (Li & Hoiem, "Learning without forgetting", ECCV 2016 / TPAMI 2017).

After each task a frozen copy of the weights is kept. While training the next task, the
current batch is also fed through that old model, and the new model's outputs for the
earlier tasks' classes are pulled towards the old model's with knowledge distillation
(Hinton et al. 2015): T^2 * KL(softmax(old / T) || softmax(new / T)), T =
`lwf.temperature`, weighted by `lwf.alpha` and logged as the `lwf` term. The loss is a KL
divergence (not a cross-entropy), so it is exactly zero when the model equals the old one.

Which outputs are distilled follows the scenario, as in van de Ven et al. (2022):
class-IL: the classes of all earlier tasks together; task-IL: each earlier task's own
classes (its "head"), averaged over the earlier tasks; domain-IL: all outputs. The old
model is a `Teacher` (anchors.py): its weights, evaluated on the current model's structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import Node
from ..examples import Examples
from .anchors import Teacher
from .base import PLUGINS, Plugin, RunContext


@dataclass
class LwFConfig(Node):
    alpha: float = 1.0  # weight of the distillation term
    temperature: float = 2.0

    def check(self) -> None:
        self.number("alpha", 0.0)
        self.number("temperature", 0.0, low_open=True)


def distillation(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over examples of T^2 * KL(softmax(old/T) || softmax(new/T))."""
    log_p_new = F.log_softmax(new / temperature, dim=1)
    log_p_old = F.log_softmax(old / temperature, dim=1)
    return temperature**2 * F.kl_div(log_p_new, log_p_old, reduction="batchmean", log_target=True)


def old_class_groups(ctx: RunContext) -> list[list[int]]:
    """The output groups to distil while training ctx.task (see the module docstring)."""
    bench = ctx.benchmark
    earlier = bench.tasks[: ctx.task]
    if bench.scenario == "domain":
        return [list(range(bench.num_outputs))]
    if bench.scenario == "task":
        return [list(t.classes) for t in earlier]
    return [sorted({c for t in earlier for c in t.classes})]


@PLUGINS.register("lwf", LwFConfig)
class LwFPlugin(Plugin):
    loss_names = ("lwf",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.teacher = Teacher()
        self._groups: list[torch.Tensor] = []

    def before_task(self, ctx: RunContext) -> None:
        device = ctx.device
        self._groups = [torch.tensor(g, device=device) for g in old_class_groups(ctx)] if self.teacher else []

    def distill(self, model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        old = self.teacher.logits(model, x)
        terms = [distillation(logits[:, g], old[:, g], self.cfg.temperature) for g in self._groups]
        return torch.stack(terms).mean()

    def loss_terms(self, ctx: RunContext, batch: Examples, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.teacher or not self._groups:
            return {}
        return {"lwf": self.cfg.alpha * self.distill(ctx.model, batch.x, logits)}

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:
            return
        self.teacher.freeze(ctx.model)

    def summary(self) -> dict:
        return {"lwf_teacher": bool(self.teacher)}

    def state_dict(self) -> dict:
        return {"old": self.teacher.state}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.state = dict(state["old"])
