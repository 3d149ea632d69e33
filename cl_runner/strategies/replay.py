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

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ..errors import ConfigError
from .base import Plugin, TrainContext, TrainSet
from .memory import Memory, check_number, check_positive_int, validate_memory

_PURPOSE = 1  # generator stream for the replay choice
_PURPOSE_BATCH = 18  # generator stream for replay.mix=batch's memory batches
POLICIES = ("share", "reservoir", "class_balanced")
MIXES = ("concat", "batch")


def choose(data: TrainSet, generator: torch.Generator, share: float, balanced: bool, per_class: int | None) -> torch.Tensor:
    """Indices of the examples to keep."""
    if per_class is None and not balanced:
        count = max(1, round(share * len(data)))
        return torch.randperm(len(data), generator=generator, device=data.y.device)[:count]
    kept = []
    for digit in torch.unique(data.digit).tolist():  # a handful of classes, not examples
        members = torch.nonzero(data.digit == digit).squeeze(1)
        count = per_class if per_class is not None else max(1, round(share * len(members)))
        order = torch.randperm(len(members), generator=generator, device=members.device)
        kept.append(members[order[:count]])
    return torch.cat(kept)


class ReplayPlugin(Plugin):
    name = "replay"

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        self.memory: list[TrainSet] = []  # one entry per finished task (policy share)
        policy = cfg.get("policy", "share")
        self.store = None if policy == "share" else Memory(policy, cfg.get("memory_size"), cfg.per_class)
        self.mix = cfg.get("mix", "concat")
        if self.mix == "batch":
            self.loss_names = ("replay",)
        self._pool: TrainSet | None = None
        self._sampler: torch.Generator | None = None

    @staticmethod
    def validate(cfg: DictConfig, num_tasks: int) -> None:
        check_number("replay.share", cfg.replay.share, 0.0, low_open=True, high=1.0, describe="expected a share in (0, 1]")
        check_positive_int("replay.per_class", cfg.replay.per_class, allow_none=True, none_means="to use replay.share")
        policy = cfg.replay.get("policy", "share")
        if policy not in POLICIES:
            raise ConfigError("replay.policy", policy, f"allowed: {', '.join(POLICIES)}")
        if policy != "share":
            validate_memory(cfg.replay, "replay", (policy,))
        mix = cfg.replay.get("mix", "concat")
        if mix not in MIXES:
            raise ConfigError("replay.mix", mix, f"allowed: {', '.join(MIXES)}")
        check_positive_int("replay.batch_size", cfg.replay.get("batch_size", 128))
        if policy == "share" and cfg.replay.get("memory_size") is not None:
            raise ConfigError("replay.memory_size", cfg.replay.memory_size,
                              "only used by replay.policy=reservoir|class_balanced; leave it null under policy=share")

    def _kept(self) -> TrainSet | None:
        if self.store is not None:
            return self.store.data if len(self.store) else None
        return TrainSet.concat(self.memory) if self.memory else None

    def before_task(self, ctx: TrainContext) -> None:
        if self.mix == "batch":
            self._pool = self._kept()
            self._sampler = ctx.generator(_PURPOSE_BATCH)

    def loss_terms(self, ctx: TrainContext, batch: TrainSet, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mix != "batch" or self._pool is None:
            return {}
        pick = torch.randperm(len(self._pool), generator=self._sampler, device=self._pool.y.device)[: self.cfg.batch_size]
        past = self._pool.subset(pick)
        scores = ctx.benchmark.mask_logits(ctx.model(past.x), past.task)
        weight = max(ctx.task, 1)  # earlier tasks: each weighs as much as the current one
        return {"replay": weight * F.cross_entropy(scores, past.y)}

    def train_set(self, ctx: TrainContext, data: TrainSet) -> TrainSet:
        if self.mix == "batch":
            return data
        if self.store is not None:
            return TrainSet.concat([data, self.store.data]) if len(self.store) else data
        return TrainSet.concat([data, *self.memory]) if self.memory else data

    def after_task(self, ctx: TrainContext) -> None:
        if ctx.final:  # no later task would replay it
            return
        task = ctx.benchmark.tasks[ctx.task]
        data = TrainSet.from_split(task.train, ctx.task)
        if self.store is not None:
            self.store.add(data, ctx.generator(_PURPOSE), ctx.benchmark.num_outputs)
            return
        index = choose(data, ctx.generator(_PURPOSE), self.cfg.share, self.cfg.balanced, self.cfg.per_class)
        self.memory.append(data.subset(index))

    def summary(self) -> dict:
        if self.store is not None:
            stored = self.store.data if len(self.store) else None
            per_task = torch.bincount(stored.task).tolist() if stored is not None else []
            return {"replay_examples": len(self.store), "replay_examples_per_task": per_task,
                    "replay_examples_per_class": self.store.per_class_counts()}
        digits = torch.cat([m.digit for m in self.memory]) if self.memory else torch.empty(0, dtype=torch.long)
        values, counts = torch.unique(digits, return_counts=True)
        return {
            "replay_examples": int(sum(len(m) for m in self.memory)),
            "replay_examples_per_task": [len(m) for m in self.memory],
            "replay_examples_per_class": {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist())},
        }

    def state_dict(self) -> dict:
        state = {"memory": [m.state_dict() for m in self.memory]}
        if self.store is not None:
            state["store"] = self.store.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.memory = [TrainSet(**m) for m in state["memory"]]
        if self.store is not None and "store" in state:
            self.store.load_state_dict(state["store"])
