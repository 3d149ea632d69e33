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

import torch
from omegaconf import DictConfig

from ..errors import ConfigError
from .base import Plugin, TrainContext, TrainSet
from .memory import Memory, validate_memory

_PURPOSE_STORE = 16  # generator stream for what the memory keeps
_PURPOSE_INIT = 17  # generator stream for the re-initialisation


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


class GDumbPlugin(Plugin):
    name = "gdumb"

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        self.memory = Memory("class_balanced", cfg.memory_size, cfg.per_class)

    @staticmethod
    def validate(cfg: DictConfig, num_tasks: int) -> None:
        validate_memory(cfg.gdumb, "gdumb", ("class_balanced",))
        if not isinstance(cfg.gdumb.reinit, bool):
            raise ConfigError("gdumb.reinit", cfg.gdumb.reinit, "expected true or false")

    def before_task(self, ctx: TrainContext) -> None:
        if self.cfg.reinit:
            reinitialise(ctx.model, ctx.generator(_PURPOSE_INIT))
            ctx.optimizer.state.clear()  # fresh moments and step counts, as for a new optimiser

    def train_set(self, ctx: TrainContext, data: TrainSet) -> TrainSet:
        self.memory.add(data, ctx.generator(_PURPOSE_STORE), ctx.benchmark.num_outputs)
        return self.memory.data

    def summary(self) -> dict:
        return {"gdumb_memory_examples": len(self.memory), "gdumb_memory_per_class": self.memory.per_class_counts()}

    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
