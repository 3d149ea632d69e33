"""Dark Experience Replay and DER++ (Buzzega, Boschini, Porrello, Abati & Calderara, "Dark
experience for general continual learning: a strong, simple baseline", NeurIPS 2020).

A memory of `der.memory_size` examples (reservoir sampling over every training example
seen, as in the paper; `der.policy=class_balanced` is the alternative) keeps each
example with the logits the model gave it when it was trained on, i.e. the forward pass
of that step, before its update. Every step adds

    der.alpha * MSE(model(x_m), stored logits of x_m)             (the `der` term)
    der.beta  * CE(model(x_m'), y_m')   only when der.plus=true   (the `derpp` term, DER++)

where m and m' are two independent random memory batches of `der.batch_size`. The
current batch joins the memory after the step (`after_step`), with the logits of
`loss_terms`. The MSE is over all outputs of the raw (unmasked) logits; the DER++
cross-entropy masks each memory example by its own task under task-IL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import Node
from ..examples import Examples
from ..seeds import Stream
from .base import PLUGINS, Plugin, RunContext
from .memory import Memory, MemoryPlugin, Policy, check_memory


@dataclass
class DERConfig(Node):
    policy: Policy = Policy.reservoir  # reservoir (the paper) | class_balanced
    memory_size: int = 500
    alpha: float = 0.5  # weight of the logit-matching (MSE) term
    beta: float = 0.5  # DER++ only: weight of the memory labels' cross-entropy
    plus: bool = False  # DER++
    batch_size: int = 128  # memory examples per term and step

    def check(self) -> None:
        check_memory(self, ("reservoir", "class_balanced"))
        self.number("alpha", 0.0)
        self.number("beta", 0.0)
        self.positive_int("batch_size")

    def unused(self) -> dict[str, str]:
        return {} if self.plus else {"beta": "used only by DER++: add strategy=derpp (or der.plus=true)"}


@PLUGINS.register("der", DERConfig)
class DERPlugin(MemoryPlugin, Plugin):
    loss_names = ("der", "derpp")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.memory = Memory(cfg.policy, cfg.memory_size)
        self._sampler: torch.Generator | None = None
        self._store_gen: torch.Generator | None = None
        self._logits: torch.Tensor | None = None

    def before_task(self, ctx: RunContext) -> None:
        self._sampler = ctx.generator(Stream.DER_SAMPLE)
        self._store_gen = ctx.generator(Stream.DER_STORE)

    def loss_terms(self, ctx: RunContext, batch: Examples, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        self._logits = logits.detach().float()  # float32 in the memory whatever train.precision
        if not len(self.memory):
            return {}
        past, index = self.memory.sample(self.cfg.batch_size, self._sampler)
        terms = {"der": self.cfg.alpha * F.mse_loss(ctx.forward(past.x), self.memory.extra("logits")[index])}
        if self.cfg.plus:
            other, _ = self.memory.sample(self.cfg.batch_size, self._sampler)
            scores = ctx.train_scores(ctx.forward(other.x), other.task)
            terms["derpp"] = self.cfg.beta * F.cross_entropy(scores, other.y)
        return terms

    def after_step(self, ctx: RunContext, batch: Examples) -> None:
        self.memory.add(batch, self._store_gen, ctx.benchmark.num_outputs, len(ctx.benchmark.tasks), logits=self._logits)
        self._logits = None

    def summary(self) -> dict:
        stored = self.memory.data.task if len(self.memory) else torch.empty(0, dtype=torch.long)
        return {"der_memory_examples": len(self.memory), "der_memory_per_task": torch.bincount(stored).tolist(),
                "der_examples_seen": self.memory.seen}
