"""Replay: while training task t, mix a kept share of every earlier task into its data.

The notebook keeps a random 10% (or 1%) of task A's training set and concatenates it to
task B's. `replay.balanced` keeps the same share of every class (the notebook's "ideal");
`replay.per_class` keeps a fixed number of examples per class for a bounded memory. The
examples are drawn once, after their task, from a generator seeded by (seed, task).

`replay.policy` picks how the memory is kept: `share` (the default: the above, one
chosen subset per finished task), or one of the bounded memories of `memory.py` fed with
each finished task's training set: `reservoir` (`replay.memory_size` examples in all,
each example seen equally likely to be kept) or `class_balanced` (an equal quota per
class, within `replay.memory_size` in all and/or `replay.per_class` each). Experience
replay as in Chaudhry et al. 2019 ("On tiny episodic memories in continual learning").

`replay.mix` says how the memory is used: `concat` (the default: it joins the task's
training set, so its share of each batch is its share of the data) or `batch`: every step
draws a separate batch of `replay.batch_size` memory examples, whose cross-entropy (each
example masked by its own task under task-IL) is added as the `replay` term, weighted by
the number of earlier tasks so that every task seen weighs the same, as the experience
replay of van de Ven, Tuytelaars & Tolias (2022) does (its (1/t, 1 - 1/t) weighting up
to a constant factor, to which Adam is insensitive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..checks import Choice, Node
from ..examples import Examples
from ..seeds import Stream
from .base import PLUGINS, Plugin, RunContext, task_examples
from .memory import Memory, check_memory, label_counts

ReplayPolicy = Choice("ReplayPolicy", {"share": "share", "reservoir": "reservoir", "class_balanced": "class_balanced"})
Mix = Choice("Mix", {"concat": "concat", "batch": "batch"})


@dataclass
class ReplayConfig(Node):
    share: float = 0.1  # share of each earlier task's training data kept
    balanced: bool = False  # the same share of every class
    per_class: Optional[int] = None  # fixed memory: examples kept per class (overrides share)
    policy: ReplayPolicy = ReplayPolicy.share  # share (the above) | reservoir | class_balanced (memory.py)
    memory_size: Optional[int] = None  # reservoir / class_balanced: examples kept in all
    mix: Mix = Mix.concat  # concat (memory joins the training set) | batch (a memory batch per step)
    batch_size: int = 128  # mix=batch: memory examples per step

    def check(self) -> None:
        self.number("share", 0.0, low_open=True, high=1.0, describe="expected a share in (0, 1]")
        self.positive_int("per_class", allow_none=True, none_means="to use replay.share")
        if self.policy != "share":
            check_memory(self, (str(self.policy),))
        self.positive_int("batch_size")
        if self.policy == "share" and self.memory_size is not None:
            self.fail("memory_size", "only used by replay.policy=reservoir|class_balanced; leave it null under policy=share")

    def unused(self) -> dict[str, str]:
        found = {}
        if self.policy != "share":
            found["share"] = found["balanced"] = (f"used only with replay.policy=share (with policy={self.policy} "
                                                  "replay.memory_size bounds the memory)")
        elif self.per_class is not None:
            found["share"] = found["balanced"] = f"not used while replay.per_class is set ({self.per_class} per class)"
        if self.policy == "reservoir":
            found["per_class"] = "not used by replay.policy=reservoir (every example has the same chance)"
        if self.mix != "batch":
            found["batch_size"] = "used only with replay.mix=batch (a memory batch per step): add it"
        return found


def choose(data: Examples, generator: torch.Generator, share: float, balanced: bool, per_class: int | None) -> torch.Tensor:
    """Indices of the examples to keep."""
    if per_class is None and not balanced:
        count = max(1, round(share * len(data)))
        return torch.randperm(len(data), generator=generator, device=data.y.device)[:count]
    kept = []
    for label in torch.unique(data.label).tolist():  # a handful of classes, not examples
        members = torch.nonzero(data.label == label).squeeze(1)
        count = per_class if per_class is not None else max(1, round(share * len(members)))
        order = torch.randperm(len(members), generator=generator, device=members.device)
        kept.append(members[order[:count]])
    return torch.cat(kept)


@PLUGINS.register("replay", ReplayConfig)
class ReplayPlugin(Plugin):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.memory: list[Examples] = []  # one entry per finished task (policy share)
        self.store = None if cfg.policy == "share" else Memory(cfg.policy, cfg.memory_size, cfg.per_class)
        self.mix = str(cfg.mix)
        if self.mix == "batch":
            self.loss_names = ("replay",)
        self._pool: Examples | None = None
        self._sampler: torch.Generator | None = None

    def _kept(self) -> Examples | None:
        if self.store is not None:
            return self.store.data if len(self.store) else None
        return Examples.concat(self.memory) if self.memory else None

    def before_task(self, ctx: RunContext) -> None:
        if self.mix == "batch":
            self._pool = self._kept()
            self._sampler = ctx.generator(Stream.REPLAY_BATCH)

    def loss_terms(self, ctx: RunContext, batch: Examples, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mix != "batch" or self._pool is None:
            return {}
        pick = torch.randperm(len(self._pool), generator=self._sampler, device=self._pool.y.device)[: self.cfg.batch_size]
        past = self._pool.subset(pick)
        scores = ctx.train_scores(ctx.forward(past.x), past.task)
        weight = max(ctx.task, 1)  # earlier tasks: each weighs as much as the current one
        return {"replay": weight * F.cross_entropy(scores, past.y)}

    def train_set(self, ctx: RunContext, data: Examples) -> Examples:
        if self.mix == "batch":
            return data
        kept = self._kept()
        return Examples.concat([data, kept]) if kept is not None else data

    def after_task(self, ctx: RunContext) -> None:
        if ctx.final:  # no later task would replay it
            return
        data = task_examples(ctx)
        if self.store is not None:
            self.store.add(data, ctx.generator(Stream.REPLAY_CHOICE), ctx.benchmark.num_outputs)
            return
        index = choose(data, ctx.generator(Stream.REPLAY_CHOICE), self.cfg.share, self.cfg.balanced, self.cfg.per_class)
        self.memory.append(data.subset(index))

    def summary(self) -> dict:
        kept = self._kept()
        if self.store is not None:
            per_task = torch.bincount(kept.task).tolist() if kept is not None else []
        else:
            per_task = [len(m) for m in self.memory]
        labels = kept.label if kept is not None else torch.empty(0, dtype=torch.long)
        return {"replay_examples": len(kept) if kept is not None else 0, "replay_examples_per_task": per_task,
                "replay_examples_per_class": label_counts(labels)}

    def state_dict(self) -> dict:
        state = {"memory": [m.state_dict() for m in self.memory]}
        if self.store is not None:
            state["store"] = self.store.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.memory = [Examples.from_state(m) for m in state["memory"]]
        if self.store is not None and "store" in state:
            self.store.load_state_dict(state["store"])
