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
        # One (fisher, anchor) pair per earlier task, or a single running one (online).
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """sum_k sum_i F_k,i (theta_i - theta*_k,i)^2, without alpha."""
        return quadratic_penalty(model, zip(self.fishers, self.anchors))

    def loss_terms(self, ctx: RunContext, batch, logits) -> dict[str, torch.Tensor]:
        if not self.fishers:
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

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # no later task to protect it from: skip the Fisher's cost
            return
        fisher, anchor = self.estimate(ctx), snapshot(ctx.model)
        if self.cfg.mode == "online" and self.fishers:
            fisher = {n: self.cfg.gamma * self.fishers[0][n] + f for n, f in fisher.items()}
            self.fishers, self.anchors = [fisher], [anchor]
        else:
            self.fishers.append(fisher)
            self.anchors.append(anchor)

    def summary(self) -> dict:
        return {"ewc_penalties": len(self.fishers)}

    def state_dict(self) -> dict:
        return {"fishers": self.fishers, "anchors": self.anchors}

    def load_state_dict(self, state: dict) -> None:
        self.fishers, self.anchors = state["fishers"], state["anchors"]
