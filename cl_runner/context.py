"""`RunContext`: everything a run is made of, in one object that the loop and the hooks share.

The runner builds it once (config, output folder, device, benchmark, model and the forward
the loop calls, optimiser, the strategy's plugins, the logs) and moves it along the tasks:
`task`, `final`, `epoch` and `step` say where the loop is. Plugins receive it in every hook
and take what they need from it; they call `ctx.forward` (the model, or its compiled form
under `train.compile=true`) so that their forward passes run the same code as the loop's,
and every forward pass of a step runs inside `precision.autocast()` (`train.precision`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from . import seeds
from .benchmarks import MASKED_LOGIT, Benchmark
from .precision import Precision


@dataclass
class RunContext:
    cfg: Any  # the run's composed config (DictConfig)
    benchmark: Benchmark
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    device: torch.device
    forward: nn.Module | None = None  # what computes logits: the model or torch.compile(model)
    plugins: list = field(default_factory=list)  # the strategy's parts (cl_runner.strategies.base.Plugin)
    out: Path | None = None  # the run folder
    logs: Any = None  # cl_runner.records.RunLogs while a run writes its files
    task: int = -1  # the task (stage) being trained; -1 before the first
    final: bool = False  # the run's last stage: nothing comes after it to protect
    epoch: int = 0  # 1-based within the task once training starts
    step: int = 0  # optimiser steps taken in this task
    active: torch.Tensor | None = None  # [num_outputs] bool: the outputs trained (train.active_classes)
    threads: str = ""  # the CPU thread policy's choice (device.set_threads), for cl-run.log
    precision: Precision | None = None  # train.precision: autocast, loss scale (default from cfg)

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.model
        if self.precision is None:
            self.precision = Precision(OmegaConf.select(self.cfg, "train.precision", default="32"), self.device)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def term_names(self) -> list[str]:
        """The loss terms of a training step, in log order: the cross-entropy, then the plugins'."""
        return ["ce"] + [name for p in self.plugins for name in p.loss_names]

    def generator(self, purpose: seeds.Stream, task: int | None = None) -> torch.Generator:
        """A generator on the run's device for (seed, task, purpose); `task` defaults to the
        task in training (see cl_runner.seeds)."""
        return seeds.generator(self.seed, self.task if task is None else task, purpose, self.device)

    def begin(self, task: int, final: bool, active: torch.Tensor | None = None) -> None:
        """Move to the start of a new stage (`active`: the outputs it may train, None for all)."""
        self.task, self.final, self.epoch, self.step, self.active = task, final, 0, 0, active

    def train_scores(self, logits: torch.Tensor, task_ids: torch.Tensor | int) -> torch.Tensor:
        """Logits as a training loss sees them: other tasks' outputs hidden under task-IL, and
        under train.active_classes the outputs of classes not seen yet."""
        logits = self.benchmark.mask_logits(logits, task_ids)
        return logits if self.active is None else logits.masked_fill(~self.active, MASKED_LOGIT)
