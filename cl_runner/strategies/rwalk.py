"""Riemannian Walk (Chaudhry, Dokania, Ajanthan & Torr, "Riemannian Walk for Incremental
Learning: Understanding Forgetting and Intransigence", ECCV 2018), as in the authors' code
(github.com/facebookresearch/agem, model/model.py and fc_permute_mnist.py, commit 4542149).

Every training step adds the squared gradient g^2 to a window's Fisher sum and -g * delta
(delta: the step's change of the weight) to the window's path integral (SI's). Every
`rwalk.update_every` steps (the code's fisher_update_after, 10), before that step moves the
weights, the score grows by relu(path / (xi + F (theta - theta_w)^2)), theta_w being the
weights when the window began (the paper's score: the loss change over the KL divergence of
the move, approximated by the Fisher-weighted distance); then the running Fisher takes the
window's mean, F <- (1 - a) F + a * sum / update_every (EWC++: the paper's Eq. 10, as the
code's comment names it; a = `rwalk.decay`, the code's fisher_ema_decay 0.9); sum and path
restart from zero and theta_w <- theta. After each task but the last: on the first task the
score is doubled, then averaged in, s <- s + (s + score) / 2 (the code's update_score; the
score itself keeps growing over tasks); s and F are each min-max normalised over all
parameters together, and theta* is the weights. Later tasks add the paper's penalty
rwalk.alpha * sum_i (F_i + s_i) (theta_i - theta*_i)^2 (alpha: the code's synap_stgth, 1 in
its replicate_results_iclr19.sh), logged as the `rwalk` term.

One difference from that code, shared with this package's SI: g is the gradient of the whole
loss (this penalty and other plugins' terms included), read in `before_step`, where the code
takes the cross-entropy's alone; on the first task they are the same. A parameter with no
gradient in a step (another task's head) gets nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import Node
from .anchors import quadratic_penalty, snapshot
from .base import PLUGINS, Plugin, RunContext

EPSILON = 1e-32  # the code's, in the min-max normalisation


@dataclass
class RWalkConfig(Node):
    alpha: float = 1.0  # strength of the penalty (the code's synap_stgth)
    decay: float = 0.9  # weight of each window's Fisher in the running one (EWC++; fisher_ema_decay)
    update_every: int = 10  # training steps per window: Fisher and score updates (fisher_update_after)
    xi: float = 1e-3  # damping of the score's denominator (PARAM_XI_STEP)

    def check(self) -> None:
        self.number("alpha", 0.0)
        self.number("decay", 0.0, low_open=True, high=1.0)
        self.positive_int("update_every")
        self.number("xi", 0.0, low_open=True)


def min_max(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(t - min) / (max - min + EPSILON), min and max over every tensor together (as the code)."""
    low = torch.stack([t.min() for t in tensors.values()]).min()
    high = torch.stack([t.max() for t in tensors.values()]).max()
    return {n: (t - low) / (high - low + EPSILON) for n, t in tensors.items()}


STATE = ("fisher", "window_sum", "path", "window_start", "riemann", "score", "importance", "anchor")


@PLUGINS.register("rwalk", RWalkConfig)
class RWalkPlugin(Plugin):
    loss_names = ("rwalk",)

    def __init__(self, cfg):
        super().__init__(cfg)
        for name in STATE:  # dicts of tensors by parameter name (see the module's docstring)
            setattr(self, name, {})
        self.steps = 0  # steps of the task in training
        self.tasks = 0  # finished tasks in importance
        self._grad: list[torch.Tensor | None] = []
        self._before: list[torch.Tensor] = []

    def before_task(self, ctx: RunContext) -> None:
        self.steps = 0
        if not self.fisher:  # the first task: everything starts at zero, the window at the weights
            self.window_start = snapshot(ctx.model)
            zeros = {n: torch.zeros_like(p) for n, p in self.window_start.items()}
            for name in ("fisher", "window_sum", "path", "riemann", "score"):
                setattr(self, name, {n: z.clone() for n, z in zeros.items()})
        self._before = [torch.empty_like(p) for p in ctx.model.parameters()]

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """sum_i (F_i + s_i) (theta_i - theta*_i)^2 with F and s normalised, without alpha."""
        return quadratic_penalty(model, [(self.importance, self.anchor)])

    def loss_terms(self, ctx: RunContext, batch, logits) -> dict[str, torch.Tensor]:
        if not self.importance:
            return {}
        return {"rwalk": self.cfg.alpha * self.penalty(ctx.model)}

    @torch.no_grad()
    def end_window(self, model: torch.nn.Module) -> None:
        """The score's and the running Fisher's update, at the end of a window."""
        a, k = self.cfg.decay, self.cfg.update_every
        for n, p in model.named_parameters():
            distance = self.fisher[n] * (p.detach() - self.window_start[n]).square()
            self.riemann[n] += torch.relu(self.path[n] / (self.cfg.xi + distance))
            self.fisher[n] = (1 - a) * self.fisher[n] + (a / k) * self.window_sum[n]
            self.window_sum[n].zero_()
            self.path[n].zero_()
        self.window_start = snapshot(model)

    def before_step(self, ctx: RunContext, batch) -> None:
        if (self.steps + 1) % self.cfg.update_every == 0:  # as the code: before this step moves
            self.end_window(ctx.model)
        self._grad = [p.grad for p in ctx.model.parameters()]
        torch._foreach_copy_(self._before, [p.detach() for p in ctx.model.parameters()])

    def after_step(self, ctx: RunContext, batch) -> None:
        named = [(n, p.detach(), g, old) for (n, p), g, old in zip(ctx.model.named_parameters(), self._grad, self._before)
                 if g is not None]
        self.steps += 1
        if not named:
            return
        names, params, grads, olds = zip(*named)
        grads = [g.detach() for g in grads]
        torch._foreach_addcmul_([self.window_sum[n] for n in names], grads, grads)
        change = torch._foreach_sub(list(params), list(olds))
        torch._foreach_mul_(change, grads)
        torch._foreach_sub_([self.path[n] for n in names], change)
        self._grad = []

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # nothing later to protect (the code skips the last task's updates too)
            return
        if self.tasks == 0:  # so that the averaging below does not halve the first task's score
            self.riemann = {n: 2 * r for n, r in self.riemann.items()}
        self.score = {n: s + (s + self.riemann[n]) / 2 for n, s in self.score.items()}
        fisher, score = min_max(self.fisher), min_max(self.score)
        self.importance = {n: fisher[n] + score[n] for n in fisher}
        self.anchor = snapshot(ctx.model)
        self.tasks += 1

    def summary(self) -> dict:
        return {"rwalk_tasks": self.tasks}

    def state_dict(self) -> dict:
        return {**{name: getattr(self, name) for name in STATE}, "steps": torch.tensor(self.steps),
                "tasks": torch.tensor(self.tasks)}

    def load_state_dict(self, state: dict) -> None:
        for name in STATE:
            setattr(self, name, dict(state[name]))
        self.steps, self.tasks = int(state["steps"]), int(state["tasks"])
