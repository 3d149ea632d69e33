"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert, "iCaRL: Incremental classifier and
representation learning", CVPR 2017).

Three parts, as in the paper:

- Exemplars chosen by herding: after each task, for each of its classes, examples are
  picked one at a time so that the mean of the chosen (L2-normalised) features stays as
  close as possible to the class mean; the order is kept, so when the memory must shrink
  for new classes each class keeps its first exemplars. The budget is `icarl.per_class`
  exemplars per class and/or `icarl.memory_size` in all (shared equally by the classes
  seen). `icarl.selection=random` replaces herding by a random choice (an ablation).
- Training on the current task's data plus the exemplars, with distillation on the earlier
  classes' outputs. Our choice: the sigmoid binary cross-entropy of the paper for the
  distillation, BCE(sigmoid(new), sigmoid(old)) summed over the earlier tasks' classes
  (`icarl.alpha` weights it; logged as `icarl`), while the classification part stays the
  loop's softmax cross-entropy over the labels instead of the paper's per-class sigmoid
  BCE (the loop owns that term; van de Ven et al. 2022 report that both work).
- Classification by the nearest mean of exemplars (`icarl.nme=true`, via `eval_logits`):
  the score of label y is minus the squared distance from the normalised feature to the
  nearest class mean with that label (-5, below any such score, for a label without one).
  The means come from the exemplars of the finished tasks and, for the task in training
  (whose exemplars are chosen only after it), from its training set, whose mean the herded
  exemplars approximate.

Features are the input of the model's output layer (the penultimate representation shared by
every head under `model.head=multi`), computed in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import Choice, Node
from ..examples import Examples
from ..models import evaluating, output_layer
from ..seeds import Stream
from .anchors import Teacher
from .base import PLUGINS, Plugin, RunContext, task_examples
from .memory import balanced_quota, label_counts

Selection = Choice("Selection", {"herding": "herding", "random": "random"})
_FEATURE_CHUNK = 8192
# Score of a label with no class mean yet: below every real score (minus a squared distance
# between unit vectors is >= -4), above the task-IL mask, so such labels never beat a seen
# class, and a task none of whose classes was seen yet gets a fixed guess, not a sure miss.
NO_PROTOTYPE = -5.0


@dataclass
class ICaRLConfig(Node):
    memory_size: Optional[int] = None  # exemplars in all, shared equally by the classes seen
    per_class: Optional[int] = 100  # exemplars per class
    selection: Selection = Selection.herding  # herding (the paper) | random
    alpha: float = 1.0  # weight of the sigmoid-BCE distillation on the old classes' outputs
    nme: bool = True  # classify by the nearest mean of exemplars (false: the network's outputs)

    def check(self) -> None:
        self.positive_int("memory_size", allow_none=True, none_means="(no total bound)")
        self.positive_int("per_class", allow_none=True, none_means="(no per-class bound)")
        if self.memory_size is None and self.per_class is None:
            self.fail("per_class", "icarl needs icarl.per_class or icarl.memory_size (or both)")
        self.number("alpha", 0.0)


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's output layer (its penultimate representation), in eval mode:
    BatchNorm uses, and leaves alone, its running averages."""
    last = output_layer(model)
    captured: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    try:
        parts = []
        with evaluating(model):
            for start in range(0, len(x), _FEATURE_CHUNK):
                captured.clear()
                model(x[start : start + _FEATURE_CHUNK])
                parts.append(captured[0])
    finally:
        handle.remove()
    return torch.cat(parts) if parts else x.new_zeros((0, last.in_features))


def herding(feats: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of `count` rows chosen greedily so that their running mean stays closest to
    the mean of all rows (rows L2-normalised by the caller), in the order chosen."""
    mu = feats.mean(0)
    running = torch.zeros_like(mu)
    taken = torch.zeros(len(feats), dtype=torch.bool, device=feats.device)
    chosen = []
    for k in range(1, min(count, len(feats)) + 1):  # one step per exemplar, vectorised over candidates
        dist = (mu - (running + feats) / k).square().sum(1).masked_fill(taken, float("inf"))
        i = dist.argmin(0, keepdim=True)  # a [1] tensor: indexing with a 0-dim one reads it on the host
        chosen.append(i)
        taken.index_fill_(0, i, True)
        running = running + feats.index_select(0, i).squeeze(0)
    return torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long, device=feats.device)


@PLUGINS.register("icarl", ICaRLConfig)
class ICaRLPlugin(Plugin):
    loss_names = ("icarl",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.exemplars: Examples | None = None
        self.rank = torch.empty(0, dtype=torch.long)  # herding order of each exemplar within its class
        self.teacher = Teacher()  # the model after the previous task
        self._old_classes: torch.Tensor | None = None
        self._cache: tuple | None = None

    # --- training ---------------------------------------------------------

    def before_task(self, ctx: RunContext) -> None:
        bench = ctx.benchmark
        if bench.scenario == "domain":
            classes = list(range(bench.num_outputs))
        else:
            classes = sorted({c for t in bench.tasks[: ctx.task] for c in t.classes})
        self._old_classes = torch.tensor(classes, dtype=torch.long, device=ctx.device) if self.teacher and classes else None
        self._cache = None

    def train_set(self, ctx: RunContext, data: Examples) -> Examples:
        return Examples.concat([data, self.exemplars]) if self.exemplars is not None and len(self.exemplars) else data

    def loss_terms(self, ctx: RunContext, batch: Examples, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._old_classes is None:
            return {}
        target = torch.sigmoid(self.teacher.logits(ctx.model, batch.x)[:, self._old_classes])
        bce = F.binary_cross_entropy_with_logits(logits[:, self._old_classes], target, reduction="none")
        return {"icarl": self.cfg.alpha * bce.sum(1).mean()}

    # --- exemplars ----------------------------------------------------------

    def _order(self, ctx: RunContext, x: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        if self.cfg.selection == "random":
            return torch.randperm(len(x), generator=generator, device=x.device)[:count]
        with torch.no_grad():
            feats = F.normalize(features(ctx.model, x), dim=1)
        return herding(feats, count)

    def update_exemplars(self, ctx: RunContext) -> None:
        """Shrink the old classes' exemplar sets and herd the new task's classes."""
        n_out = ctx.benchmark.num_outputs
        data = task_examples(ctx)
        new_keys = data.class_keys(n_out)
        new_classes, new_counts = torch.unique(new_keys, return_counts=True)
        if self.exemplars is not None and len(self.exemplars):
            old_keys = self.exemplars.class_keys(n_out)
            old_classes, old_counts = torch.unique(old_keys, return_counts=True)
        else:
            old_keys = torch.empty(0, dtype=torch.long, device=data.y.device)
            old_classes = old_counts = old_keys
        quota = balanced_quota(torch.cat([old_counts, new_counts]), self.cfg.memory_size, self.cfg.per_class)
        old_quota, new_quota = quota[: len(old_classes)], quota[len(old_classes):]
        parts, ranks = [], []
        if len(old_classes):  # keep each old class's first exemplars (herding order)
            keep = self.rank.to(old_keys.device) < old_quota[torch.searchsorted(old_classes, old_keys)]
            parts.append(self.exemplars.subset(torch.nonzero(keep).squeeze(1)))
            ranks.append(self.rank.to(old_keys.device)[keep])
        generator = ctx.generator(Stream.ICARL_RANDOM)
        for key, q in zip(new_classes.tolist(), new_quota.tolist()):  # a few classes per task
            members = torch.nonzero(new_keys == key).squeeze(1)
            pick = members[self._order(ctx, data.x[members], q, generator)]
            parts.append(data.subset(pick))
            ranks.append(torch.arange(len(pick), device=pick.device))
        self.exemplars = Examples.concat(parts)
        self.rank = torch.cat(ranks)

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # nothing is trained or evaluated after it
            return
        self.update_exemplars(ctx)
        self.teacher.freeze(ctx.model)
        self._cache = None

    # --- nearest-mean-of-exemplars classifier ---------------------------------

    def prototypes(self, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(means [K, d] L2-normalised, label of each [K])."""
        sets = []
        if self.exemplars is not None and len(self.exemplars):
            sets.append(self.exemplars)
        in_memory = set(self.exemplars.task.unique().tolist()) if sets else set()
        if 0 <= ctx.task < len(ctx.benchmark.tasks) and ctx.task not in in_memory:
            sets.append(task_examples(ctx))
        data = Examples.concat(sets) if len(sets) > 1 else sets[0]
        n_out = ctx.benchmark.num_outputs
        keys = data.class_keys(n_out)
        classes, inverse = torch.unique(keys, return_inverse=True)
        feats = F.normalize(features(ctx.model, data.x), dim=1)
        sums = torch.zeros(len(classes), feats.shape[1], device=feats.device).index_add_(0, inverse, feats)
        return F.normalize(sums, dim=1), classes % n_out

    @torch.no_grad()
    def eval_logits(self, ctx: RunContext, x: torch.Tensor, task: int) -> torch.Tensor | None:
        if not self.cfg.nme or ctx.task < 0:
            return None
        key = (ctx.task, ctx.epoch, ctx.step)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, *self.prototypes(ctx))
        _, means, labels = self._cache
        f = F.normalize(features(ctx.model, x), dim=1)
        neg_dist = -torch.cdist(f, means).square()  # [B, K]
        scores = torch.full((len(x), ctx.benchmark.num_outputs), NO_PROTOTYPE, device=x.device, dtype=f.dtype)
        return scores.scatter_reduce(1, labels.expand(len(x), -1), neg_dist, reduce="amax")

    # --- bookkeeping ----------------------------------------------------------

    def summary(self) -> dict:
        if self.exemplars is None or not len(self.exemplars):
            return {"icarl_exemplars": 0, "icarl_exemplars_per_class": {}}
        return {"icarl_exemplars": len(self.exemplars), "icarl_exemplars_per_class": label_counts(self.exemplars.label)}

    def state_dict(self) -> dict:
        exemplars = self.exemplars.state_dict() if self.exemplars is not None else {}
        return {"exemplars": exemplars, "rank": self.rank, "old": self.teacher.state}

    def load_state_dict(self, state: dict) -> None:
        self.exemplars = Examples.from_state(state["exemplars"]) if state["exemplars"] else None
        self.rank, self.teacher.state = state["rank"], dict(state["old"])
