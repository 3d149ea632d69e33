"""GDumb (Prabhu, Torr & Dokania, "GDumb: A simple approach that questions our progress in
continual learning", ECCV 2020).

A greedy class-balanced memory of `gdumb.memory_size` examples (and at most
`gdumb.per_class` per class when set) takes in each task's training set as it arrives;
then the model is re-initialised and trained from scratch on the memory only: the
`train_set` hook returns the memory instead of the task's data, so every stage trains
`train.iterations` steps (or `train.epochs` epochs) on it. Re-initialisation happens in
`before_task`, in place (`reset_parameters()` of every layer), from a generator seeded by
(seed, task), so it is reproducible and leaves the global random state alone; the
optimiser's state (Adam's moments) is cleared with it, so a model trained from scratch
never inherits the old one's moments, whatever `train.reset_optimizer` says. The memory's
final state is the one GDumb's greedy sampler reaches (classes water-filled to equal
counts, a random subset of each), drawn in one vectorised step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..checks import Node
from ..examples import Examples
from ..seeds import Stream
from .base import PLUGINS, Plugin, RunContext
from .memory import Memory, MemoryPlugin, Policy, check_memory


@dataclass
class GDumbConfig(Node):
    memory_size: int = 500  # examples in all, class-balanced
    per_class: Optional[int] = None
    reinit: bool = True  # re-initialise the model before each task (false: fine-tune it)

    @property
    def policy(self) -> str:  # GDumb's memory is always class-balanced
        return "class_balanced"

    def check(self) -> None:
        check_memory(self, ("class_balanced",))


def reinitialise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Reset every layer's parameters in place, from a seed drawn from `generator`."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    device = next(model.parameters()).device
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


@PLUGINS.register("gdumb", GDumbConfig)
class GDumbPlugin(MemoryPlugin, Plugin):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.memory = Memory(Policy.class_balanced, cfg.memory_size, cfg.per_class)

    def before_task(self, ctx: RunContext) -> None:
        if self.cfg.reinit:
            reinitialise(ctx.model, ctx.generator(Stream.GDUMB_INIT))
            ctx.optimizer.state.clear()  # fresh moments and step counts, as for a new optimiser

    def train_set(self, ctx: RunContext, data: Examples) -> Examples:
        self.memory.add(data, ctx.generator(Stream.GDUMB_STORE), ctx.benchmark.num_outputs)
        return self.memory.data

    def summary(self) -> dict:
        return {"gdumb_memory_examples": len(self.memory), "gdumb_memory_per_class": self.memory.per_class_counts()}
