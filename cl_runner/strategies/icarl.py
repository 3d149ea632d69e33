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

Features are the input of the model's last Linear layer (the penultimate representation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from .base import Plugin, TrainContext, TrainSet
from .memory import balanced_quota, check_number, check_positive_int

_PURPOSE_RANDOM = 15  # generator stream for icarl.selection=random
SELECTIONS = ("herding", "random")
_FEATURE_CHUNK = 8192
# Score of a label with no class mean yet: below every real score (minus a squared distance
# between unit vectors is >= -4), above the task-IL mask, so such labels never beat a seen
# class, and a task none of whose classes was seen yet gets a fixed guess, not a sure miss.
NO_PROTOTYPE = -5.0


def features(model: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The input of the model's last Linear layer (optionally with other weights)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    try:
        parts = []
        for start in range(0, len(x), _FEATURE_CHUNK):
            captured.clear()
            chunk = x[start : start + _FEATURE_CHUNK]
            model(chunk) if params is None else functional_call(model, params, (chunk,))
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
        i = dist.argmin()
        chosen.append(i)
        taken[i] = True
        running = running + feats[i]
    return torch.stack(chosen) if chosen else torch.empty(0, dtype=torch.long, device=feats.device)


class ICaRLPlugin(Plugin):
    name = "icarl"
    loss_names = ("icarl",)

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        self.exemplars: TrainSet | None = None
        self.rank = torch.empty(0, dtype=torch.long)  # herding order of each exemplar within its class
        self.old: dict[str, torch.Tensor] = {}  # the model after the previous task
        self._old_classes: torch.Tensor | None = None
        self._cache: tuple | None = None

    @staticmethod
    def validate(cfg: DictConfig, num_tasks: int) -> None:
        c = cfg.icarl
        check_positive_int("icarl.memory_size", c.memory_size, allow_none=True, none_means="(no total bound)")
        check_positive_int("icarl.per_class", c.per_class, allow_none=True, none_means="(no per-class bound)")
        if c.memory_size is None and c.per_class is None:
            raise ConfigError("icarl.per_class", None, "icarl needs icarl.per_class or icarl.memory_size (or both)")
        if c.selection not in SELECTIONS:
            raise ConfigError("icarl.selection", c.selection, f"allowed: {', '.join(SELECTIONS)}")
        check_number("icarl.alpha", c.alpha, 0.0)
        if not isinstance(c.nme, bool):
            raise ConfigError("icarl.nme", c.nme, "expected true or false")

    # --- training ---------------------------------------------------------

    def before_task(self, ctx: TrainContext) -> None:
        bench = ctx.benchmark
        if bench.scenario == "domain":
            classes = list(range(bench.num_outputs))
        else:
            classes = sorted({c for t in bench.tasks[: ctx.task] for c in t.classes})
        self._old_classes = torch.tensor(classes, dtype=torch.long, device=ctx.device) if self.old and classes else None
        self._cache = None

    def train_set(self, ctx: TrainContext, data: TrainSet) -> TrainSet:
        return TrainSet.concat([data, self.exemplars]) if self.exemplars is not None and len(self.exemplars) else data

    def loss_terms(self, ctx: TrainContext, batch: TrainSet, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._old_classes is None:
            return {}
        with torch.no_grad():
            target = torch.sigmoid(functional_call(ctx.model, self.old, (batch.x,))[:, self._old_classes])
        bce = F.binary_cross_entropy_with_logits(logits[:, self._old_classes], target, reduction="none")
        return {"icarl": self.cfg.alpha * bce.sum(1).mean()}

    # --- exemplars ----------------------------------------------------------

    def _order(self, ctx: TrainContext, x: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        if self.cfg.selection == "random":
            return torch.randperm(len(x), generator=generator, device=x.device)[:count]
        with torch.no_grad():
            feats = F.normalize(features(ctx.model, x), dim=1)
        return herding(feats, count)

    def update_exemplars(self, ctx: TrainContext) -> None:
        """Shrink the old classes' exemplar sets and herd the new task's classes."""
        n_out = ctx.benchmark.num_outputs
        data = TrainSet.from_split(ctx.benchmark.tasks[ctx.task].train, ctx.task)
        new_keys = data.task * n_out + data.y
        new_classes, new_counts = torch.unique(new_keys, return_counts=True)
        if self.exemplars is not None and len(self.exemplars):
            old_keys = self.exemplars.task * n_out + self.exemplars.y
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
        generator = ctx.generator(_PURPOSE_RANDOM)
        for key, q in zip(new_classes.tolist(), new_quota.tolist()):  # a few classes per task
            members = torch.nonzero(new_keys == key).squeeze(1)
            pick = members[self._order(ctx, data.x[members], q, generator)]
            parts.append(data.subset(pick))
            ranks.append(torch.arange(len(pick), device=pick.device))
        self.exemplars = TrainSet.concat(parts)
        self.rank = torch.cat(ranks)

    def after_task(self, ctx: TrainContext) -> None:
        if ctx.final:  # nothing is trained or evaluated after it
            return
        self.update_exemplars(ctx)
        self.old = {n: t.detach().clone() for n, t in ctx.model.state_dict().items()}
        self._cache = None

    # --- nearest-mean-of-exemplars classifier ---------------------------------

    def prototypes(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(means [K, d] L2-normalised, label of each [K])."""
        sets = []
        if self.exemplars is not None and len(self.exemplars):
            sets.append(self.exemplars)
        in_memory = set(self.exemplars.task.unique().tolist()) if sets else set()
        if 0 <= ctx.task < len(ctx.benchmark.tasks) and ctx.task not in in_memory:
            sets.append(TrainSet.from_split(ctx.benchmark.tasks[ctx.task].train, ctx.task))
        data = TrainSet.concat(sets) if len(sets) > 1 else sets[0]
        n_out = ctx.benchmark.num_outputs
        keys = data.task * n_out + data.y
        classes, inverse = torch.unique(keys, return_inverse=True)
        feats = F.normalize(features(ctx.model, data.x), dim=1)
        sums = torch.zeros(len(classes), feats.shape[1], device=feats.device).index_add_(0, inverse, feats)
        return F.normalize(sums, dim=1), classes % n_out

    @torch.no_grad()
    def eval_logits(self, ctx: TrainContext, x: torch.Tensor, task: int) -> torch.Tensor | None:
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
        values, counts = torch.unique(self.exemplars.digit, return_counts=True)
        return {"icarl_exemplars": len(self.exemplars),
                "icarl_exemplars_per_class": {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist())}}

    def state_dict(self) -> dict:
        exemplars = self.exemplars.state_dict() if self.exemplars is not None else {}
        return {"exemplars": exemplars, "rank": self.rank, "old": self.old}

    def load_state_dict(self, state: dict) -> None:
        self.exemplars = TrainSet(**state["exemplars"]) if state["exemplars"] else None
        self.rank, self.old = state["rank"], dict(state["old"])
