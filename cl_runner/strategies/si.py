"""Synaptic Intelligence (Zenke, Poole & Ganguli, "Continual learning through synaptic
intelligence", ICML 2017).

While a task trains, every parameter accumulates its path integral of the loss,
w_i += -g_i * delta_i per optimiser step (g: the gradient the step used, delta: the
change the step made). After the task, its importance grows by
omega_i += w_i / (Delta_i^2 + xi), Delta_i being the parameter's total change over the
task, and theta* moves to the current weights. Later tasks add
si.c * sum_i omega_i (theta_i - theta*_i)^2 to the loss (logged as the `si` term).

As in the reference code of van de Ven et al. (2022), g is the gradient of the whole
loss (including this penalty and other plugins' terms), read in `before_step`; a
parameter the loss never touches gets w = 0 and hence omega = 0. Defaults: the paper's
xi = 1e-3 and c = 1; the split-MNIST protocol preset uses that code's values instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import Node
from .anchors import quadratic_penalty, snapshot
from .base import PLUGINS, Plugin, RunContext


@dataclass
class SIConfig(Node):
    c: float = 1.0  # strength of the quadratic penalty
    xi: float = 1e-3  # damping: omega = path integral / (total change^2 + xi)

    def check(self) -> None:
        self.number("c", 0.0)
        self.number("xi", 0.0, low_open=True)


@PLUGINS.register("si", SIConfig)
class SIPlugin(Plugin):
    loss_names = ("si",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.omega: dict[str, torch.Tensor] = {}  # importance, summed over finished tasks
        self.anchor: dict[str, torch.Tensor] = {}  # theta*: the weights after the last finished task
        self.path: dict[str, torch.Tensor] = {}  # w of the task in progress
        self.start: dict[str, torch.Tensor] = {}  # the weights when the task started
        self._grad: list[torch.Tensor | None] = []  # the gradients of the step in progress
        self._before: list[torch.Tensor] = []  # the weights before it: buffers kept for the task

    def before_task(self, ctx: RunContext) -> None:
        self.start = snapshot(ctx.model)
        self.path = {n: torch.zeros_like(p) for n, p in self.start.items()}
        self._before = [torch.empty_like(p) for p in self.start.values()]

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """sum_i omega_i (theta_i - theta*_i)^2, without c."""
        return quadratic_penalty(model, [(self.omega, self.anchor)])

    def loss_terms(self, ctx: RunContext, batch, logits) -> dict[str, torch.Tensor]:
        if not self.omega:
            return {}
        return {"si": self.cfg.c * self.penalty(ctx.model)}

    def before_step(self, ctx: RunContext, batch) -> None:
        # No copies: the gradients are held by reference (the optimiser only reads them, and the
        # next step's zero_grad(set_to_none) replaces them; a later hook that changes them sets
        # new tensors, as A-GEM does), the weights copied into the task's buffers in one call.
        params = [p.detach() for p in ctx.model.parameters()]
        self._grad = [p.grad for p in ctx.model.parameters()]
        torch._foreach_copy_(self._before, params)

    def after_step(self, ctx: RunContext, batch) -> None:
        # path -= g * (theta - theta_before), in a few foreach calls over the parameters that had
        # a gradient (the others did not move: their term is zero).
        named = [(n, p.detach(), g, old) for (n, p), g, old in zip(ctx.model.named_parameters(), self._grad, self._before)
                 if g is not None]
        if not named:
            return
        names, params, grads, olds = zip(*named)
        change = torch._foreach_sub(list(params), list(olds))
        torch._foreach_mul_(change, list(grads))
        torch._foreach_sub_([self.path[n] for n in names], change)
        self._grad = []

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # nothing later to protect
            return
        for n, p in ctx.model.named_parameters():
            delta = p.detach() - self.start[n]
            added = self.path[n] / (delta.square() + self.cfg.xi)
            self.omega[n] = self.omega[n] + added if n in self.omega else added
        self.anchor = snapshot(ctx.model)

    def summary(self) -> dict:
        return {"si_penalty_active": bool(self.omega)}

    def state_dict(self) -> dict:
        return {"omega": self.omega, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.omega, self.anchor = dict(state["omega"]), dict(state["anchor"])
