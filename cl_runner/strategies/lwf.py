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
weights are kept as a state dict and evaluated with torch.func.functional_call on the
current model's structure, so the checkpoint holds tensors only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.func import functional_call

from .base import Plugin, TrainContext, TrainSet
from .memory import check_number


def distillation(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over examples of T^2 * KL(softmax(old/T) || softmax(new/T))."""
    log_p_new = F.log_softmax(new / temperature, dim=1)
    log_p_old = F.log_softmax(old / temperature, dim=1)
    return temperature**2 * F.kl_div(log_p_new, log_p_old, reduction="batchmean", log_target=True)


def old_class_groups(ctx: TrainContext) -> list[list[int]]:
    """The output groups to distil while training ctx.task (see the module docstring)."""
    bench = ctx.benchmark
    earlier = bench.tasks[: ctx.task]
    if bench.scenario == "domain":
        return [list(range(bench.num_outputs))]
    if bench.scenario == "task":
        return [list(t.classes) for t in earlier]
    return [sorted({c for t in earlier for c in t.classes})]


class LwFPlugin(Plugin):
    name = "lwf"
    loss_names = ("lwf",)

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        self.old: dict[str, torch.Tensor] = {}  # the frozen model's parameters and buffers
        self._groups: list[torch.Tensor] = []

    @staticmethod
    def validate(cfg: DictConfig, num_tasks: int) -> None:
        check_number("lwf.alpha", cfg.lwf.alpha, 0.0)
        check_number("lwf.temperature", cfg.lwf.temperature, 0.0, low_open=True)

    def before_task(self, ctx: TrainContext) -> None:
        device = ctx.device
        self._groups = [torch.tensor(g, device=device) for g in old_class_groups(ctx)] if self.old else []

    def old_logits(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return functional_call(model, self.old, (x,))

    def distill(self, model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        old = self.old_logits(model, x)
        terms = [distillation(logits[:, g], old[:, g], self.cfg.temperature) for g in self._groups]
        return torch.stack(terms).mean()

    def loss_terms(self, ctx: TrainContext, batch: TrainSet, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.old or not self._groups:
            return {}
        return {"lwf": self.cfg.alpha * self.distill(ctx.model, batch.x, logits)}

    def after_task(self, ctx: TrainContext) -> None:
        if ctx.final:
            return
        self.old = {n: t.detach().clone() for n, t in ctx.model.state_dict().items()}

    def summary(self) -> dict:
        return {"lwf_teacher": bool(self.old)}

    def state_dict(self) -> dict:
        return {"old": self.old}

    def load_state_dict(self, state: dict) -> None:
        self.old = dict(state["old"])
