"""Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars, "Memory Aware
Synapses: Learning what (not) to forget", ECCV 2018).

After each task, every parameter's importance is the mean over that task's examples x_k of
the magnitude of the gradient of the squared l2 norm of the model's output,

    Omega_ij = 1/N sum_k | d ||F(x_k; theta)||_2^2 / d theta_ij |

(the paper's Eq. 2, with g_ij(x_k) as the gradient of the squared l2 norm of the output
function, its Eq. 4, the form it uses for multi-dimensional outputs; `importance`). No labels
are needed. The output F is the logits, in eval mode (BatchNorm with its running averages, so
examples do not interact); under task-IL only the task's own outputs (the others hidden by the
benchmark's logit mask get no gradient). The per-example gradients come from torch.func's
vmap over grad (`fisher.vmapped_gradients`, as the Fisher's fallback), not one backward pass
per example. Importances accumulate over tasks, Omega <- Omega + Omega_new, anchored at the
latest weights theta*; later tasks add the paper's Eq. 3 penalty
mas.alpha * sum_ij Omega_ij (theta_ij - theta*_ij)^2 (`anchors.quadratic_penalty`; the
paper's lambda), logged as the `mas` term.

Defaults: the paper's (per-example gradient of the squared norm, the task's training data,
importances summed over tasks) and lambda = 1, the default of Avalanche's MASPlugin
(`lambda_reg`) and FACIL (`lamb`). Avalanche (avalanche/training/plugins/mas.py, after FACIL)
differs: it takes |gradient| of the batch mean of the (unsquared) l2 norm per mini-batch, in
training mode, halves the penalty, and mixes importances Omega <- a Omega + (1 - a) Omega_new
with a = alpha = 0.5 (`mas.decay=0.5` here gives that mixing).
The A-GEM authors' replicate_results_iclr19.sh (facebookresearch/agem, commit 4542149) runs MAS
with lambda = 0.1 on permuted MNIST and split CIFAR (`mas.alpha=0.1`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.func import functional_call

from ..checks import Node
from ..fisher import vmapped_gradients
from ..models import evaluating
from ..seeds import Stream
from .anchors import quadratic_penalty, snapshot
from .base import PLUGINS, Plugin, RunContext
from .ewc import FisherData


@dataclass
class MASConfig(Node):
    alpha: float = 1.0  # strength of the penalty (the paper's lambda)
    data: FisherData = FisherData.train  # the finished task's split the importance is measured on: train | val
    samples: Optional[int] = None  # examples drawn from it; None = the whole split
    decay: Optional[float] = None  # None: Omega <- Omega + Omega_new (the paper); a: Omega <- a Omega + (1 - a) Omega_new (Avalanche, 0.5)

    def check(self) -> None:
        self.number("alpha", 0.0)
        self.positive_int("samples", allow_none=True, none_means="for the whole split")
        if self.decay is not None:
            self.number("decay", 0.0, high=1.0)


def _mask(live: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """[N, C or 1] floats: 1 for the outputs in the norm (`live`, [1 or N, C] bool; None: all)."""
    live = torch.ones(1, 1, dtype=torch.bool, device=x.device) if live is None else live
    return live.to(x.dtype).expand(len(x), -1)


def importance(model: nn.Module, x: torch.Tensor, live: torch.Tensor | None = None, chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Omega: the mean over the examples of |d ||f(x)||^2 / d theta| per parameter, in eval mode
    (the model's modes and BatchNorm's running averages are left as they were). `live` ([1, C]
    or [N, C] bool): the outputs in the norm (default: all)."""

    def norm_one(p, xi, mi):
        return (functional_call(model, p, (xi.unsqueeze(0),)) * mi).square().sum()

    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with evaluating(model):
        for _, grads in vmapped_gradients(model, norm_one, (x, _mask(live, x)), chunk):
            for n, g in grads.items():
                sums[n] += g.abs().sum(0)
    return {n: s / max(len(x), 1) for n, s in sums.items()}


def importance_loop(model: nn.Module, x: torch.Tensor, live: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Reference: one backward pass per example (the tests' slow path), in eval mode."""
    mask = _mask(live, x)
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with evaluating(model):
        for i in range(len(x)):
            model.zero_grad()
            (model(x[i : i + 1]) * mask[i]).square().sum().backward()
            for n, p in model.named_parameters():
                if p.grad is not None:  # None: the norm does not depend on it
                    sums[n] += p.grad.detach().abs()
    model.zero_grad()
    return {n: s / len(x) for n, s in sums.items()}


@PLUGINS.register("mas", MASConfig)
class MASPlugin(Plugin):
    loss_names = ("mas",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.omega: dict[str, torch.Tensor] = {}  # importance over the finished tasks
        self.anchor: dict[str, torch.Tensor] = {}  # theta*: the weights after the last finished task
        self.tasks = 0  # tasks whose importance omega holds

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """sum_ij Omega_ij (theta_ij - theta*_ij)^2, without alpha."""
        return quadratic_penalty(model, [(self.omega, self.anchor)])

    def loss_terms(self, ctx: RunContext, batch, logits) -> dict[str, torch.Tensor]:
        if not self.omega:
            return {}
        return {"mas": self.cfg.alpha * self.penalty(ctx.model)}

    def estimate(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        task = ctx.benchmark.tasks[ctx.task]
        x = (task.val if self.cfg.data == "val" else task.train).x
        if self.cfg.samples is not None and self.cfg.samples < len(x):
            pick = torch.randperm(len(x), generator=ctx.generator(Stream.MAS_SAMPLES), device=x.device)[: self.cfg.samples]
            x = x[pick]
        return importance(ctx.model, x, ctx.benchmark.logit_bias(ctx.task, x.device) == 0)

    def add(self, omega: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> None:
        """Accumulate one more task's importances and move the anchor to its weights."""
        if self.omega and self.cfg.decay is not None:
            a = self.cfg.decay
            omega = {n: a * self.omega[n] + (1 - a) * o for n, o in omega.items()}
        elif self.omega:
            omega = {n: self.omega[n] + o for n, o in omega.items()}
        self.omega, self.anchor = omega, anchor
        self.tasks += 1

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # nothing later to protect
            return
        self.add(self.estimate(ctx), snapshot(ctx.model))

    def summary(self) -> dict:
        return {"mas_tasks": self.tasks}

    def state_dict(self) -> dict:
        return {"omega": self.omega, "anchor": self.anchor, "tasks": torch.tensor(self.tasks)}

    def load_state_dict(self, state: dict) -> None:
        self.omega, self.anchor, self.tasks = dict(state["omega"]), dict(state["anchor"]), int(state["tasks"])
