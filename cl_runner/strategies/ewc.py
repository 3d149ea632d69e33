"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017).

After each task, estimate the diagonal Fisher information F on that task's data and keep
the weights theta*. While training later tasks, add alpha * sum_i F_i (theta_i - theta*_i)^2
to the loss (logged as the `ewc` term).

Defaults follow the notebook: the empirical Fisher (gradients of the log-likelihood of
the true label) over the finished task's validation split, each parameter tensor's
Fisher divided by its own maximum, so `ewc.alpha=1e8` means what it means there.
`ewc.fisher=expected` is the Fisher proper, the exact expectation over the model's own
predicted labels (what the literature's reference code computes); `sampled` estimates it
with one label drawn per example, which badly underestimates it on a confident model.
`ewc.mode=separate` keeps one penalty per earlier task; `online` keeps one running
Fisher, F <- gamma * F + F_new, anchored at the latest weights (Schwarz et al. 2018).
Separate mode's penalties are folded into one pair as each task ends (`fold`): the same
gradients (up to float rounding), the same reported `ewc` term (the fold's constant is added
back), and one pair's work per training step instead of one per earlier task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..checks import Choice, Node
from ..fisher import expected_fisher, fisher_diagonal, normalize_by_max, sample_labels
from ..seeds import Stream
from .anchors import quadratic_penalty, snapshot
from .base import PLUGINS, Plugin, RunContext

FisherKind = Choice("FisherKind", {"empirical": "empirical", "expected": "expected", "sampled": "sampled"})
FisherData = Choice("FisherData", {"val": "val", "train": "train"})
Normalize = Choice("Normalize", {"max": "max", "none": "none"})
EWCMode = Choice("EWCMode", {"separate": "separate", "online": "online"})


@dataclass
class EWCConfig(Node):
    alpha: float = 1e8
    fisher: FisherKind = FisherKind.empirical  # empirical (true labels) | expected (exact) | sampled (one drawn label)
    fisher_data: FisherData = FisherData.val
    fisher_samples: Optional[int] = None  # None = the whole split
    normalize: Normalize = Normalize.max
    mode: EWCMode = EWCMode.separate
    gamma: float = 1.0  # online decay of the running Fisher

    def check(self) -> None:
        self.number("alpha", 0.0)
        self.positive_int("fisher_samples", allow_none=True, none_means="for the whole split")
        self.number("gamma", 0.0, low_open=True, high=1.0)

    def unused(self) -> dict[str, str]:
        return {"gamma": "used only by online EWC: add ewc.mode=online"} if self.mode != "online" else {}


@PLUGINS.register("ewc", EWCConfig)
class EWCPlugin(Plugin):
    loss_names = ("ewc",)

    def __init__(self, cfg):
        super().__init__(cfg)
        # One importance/anchor pair for all earlier tasks (see `fold`), or the running one (online).
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.constant = 0.0  # separate mode: what the folded pair leaves out of the penalty's value
        self.tasks = 0  # tasks whose Fisher the pair holds

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """sum_k sum_i F_k,i (theta_i - theta*_k,i)^2 over the earlier tasks k, without alpha."""
        value = quadratic_penalty(model, [(self.fisher, self.anchor)])
        return value + self.constant if self.constant else value

    def loss_terms(self, ctx: RunContext, batch, logits) -> dict[str, torch.Tensor]:
        if not self.fisher:
            return {}
        return {"ewc": self.cfg.alpha * self.penalty(ctx.model)}

    def estimate(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        task = ctx.benchmark.tasks[ctx.task]
        split = task.val if self.cfg.fisher_data == "val" else task.train
        x, y = split.x, split.y
        if self.cfg.fisher_samples is not None and self.cfg.fisher_samples < len(y):
            pick = torch.randperm(len(y), generator=ctx.generator(Stream.EWC_SAMPLES), device=y.device)[: self.cfg.fisher_samples]
            x, y = x[pick], y[pick]
        bias = ctx.benchmark.logit_bias(ctx.task, x.device)
        if self.cfg.fisher == "expected":
            fisher = expected_fisher(ctx.model, x, bias)
        else:
            if self.cfg.fisher == "sampled":
                y = sample_labels(ctx.model, x, bias, ctx.generator(Stream.EWC_LABELS))
            fisher = fisher_diagonal(ctx.model, x, y, bias)
        return normalize_by_max(fisher) if self.cfg.normalize == "max" else fisher

    def add(self, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> None:
        """Protect one more task's weights `anchor` with importances `fisher`."""
        if self.cfg.mode == "online" and self.fisher:
            self.fisher = {n: self.cfg.gamma * self.fisher[n] + f for n, f in fisher.items()}
            self.anchor = anchor
        elif self.fisher:
            self.fisher, self.anchor, added = fold(self.fisher, self.anchor, fisher, anchor)
            self.constant += added
        else:
            self.fisher, self.anchor = fisher, anchor
        self.tasks += 1

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # no later task to protect it from: skip the Fisher's cost
            return
        self.add(self.estimate(ctx), snapshot(ctx.model))

    def summary(self) -> dict:
        held = 1 if self.cfg.mode == "online" and self.fisher else self.tasks
        return {"ewc_penalties": held}

    def state_dict(self) -> dict:
        return {"fisher": self.fisher, "anchor": self.anchor, "constant": torch.tensor(self.constant, dtype=torch.float64),
                "tasks": torch.tensor(self.tasks)}

    def load_state_dict(self, state: dict) -> None:
        if "fishers" in state:  # written before the pairs were folded: one pair per task, folded now
            self.fisher, self.anchor, self.constant, self.tasks = {}, {}, 0.0, 0
            for fisher, anchor in zip(state["fishers"], state["anchors"]):
                self.add(fisher, anchor)
            return
        self.fisher, self.anchor = dict(state["fisher"]), dict(state["anchor"])
        self.constant, self.tasks = float(state["constant"]), int(state["tasks"])


def fold(fisher: dict, anchor: dict, new_fisher: dict, new_anchor: dict) -> tuple[dict, dict, float]:
    """One pair (F, theta*) with F (theta - theta*)^2 + c = F1 (theta - theta1)^2 + F2 (theta - theta2)^2
    for every theta: F = F1 + F2, theta* = (F1 theta1 + F2 theta2) / F (theta2 where F = 0: any
    value does there), c = F1 (theta1 - theta*)^2 + F2 (theta2 - theta*)^2 summed (a float; the
    penalty's value, not its gradient). Separate mode thus costs one pair's kernels per step
    however many tasks it protects."""
    total, center, added = {}, {}, 0.0
    for n, f1 in fisher.items():
        f2, a1, a2 = new_fisher[n], anchor[n], new_anchor[n]
        total[n] = f1 + f2
        center[n] = torch.where(total[n] > 0, (f1 * a1 + f2 * a2) / total[n], a2)
        left = f1.double() * (a1.double() - center[n].double()).square() + f2.double() * (a2.double() - center[n].double()).square()
        added += float(left.sum())
    return total, center, added
