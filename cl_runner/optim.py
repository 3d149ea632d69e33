"""The optimiser and its per-task learning-rate schedule.

`optimizer=adam` (default: Adam, as the notebook) or `optimizer=sgd` (with
`optimizer.momentum`, `optimizer.nesterov`); `optimizer.weight_decay` for both; the learning
rate stays `train.lr`, so every command line written before keeps its meaning. A fresh
optimiser per task unless `train.reset_optimizer=false`.

`train.lr_schedule` shapes the learning rate within each task, stepped once per epoch:
`constant` (default), `multistep` (times `train.lr_gamma` at each epoch in
`train.lr_milestones`, counted within the task) or `cosine` (annealed from `train.lr` to 0
over the task's epochs). Every task starts again from `train.lr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import Choice, Node

OptimizerName = Choice("OptimizerName", {"adam": "adam", "sgd": "sgd"})
Schedule = Choice("LRSchedule", {"constant": "constant", "multistep": "multistep", "cosine": "cosine"})


@dataclass
class OptimizerConfig(Node):
    name: OptimizerName = OptimizerName.adam
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only, with momentum > 0
    weight_decay: float = 0.0  # L2 penalty, added to the gradient by the optimiser

    def check(self) -> None:
        self.number("momentum", 0.0, high=1.0)
        self.number("weight_decay", 0.0)
        if self.name != "sgd" and (self.momentum or self.nesterov):
            self.fail("momentum" if self.momentum else "nesterov", "only optimizer=sgd has momentum; use optimizer=sgd")
        if self.nesterov and not self.momentum:
            self.fail("nesterov", "Nesterov momentum needs optimizer.momentum > 0")


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    """The optimiser of `cfg.optimizer` over `params`, at learning rate `cfg.train.lr`."""
    opt, lr = cfg.optimizer, cfg.train.lr
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=opt.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=opt.weight_decay)


def build_schedule(train, optimizer: torch.optim.Optimizer, epochs: int):
    """The learning-rate scheduler of one task of `epochs` epochs (None: constant)."""
    for group in optimizer.param_groups:  # each task starts from train.lr, also with one optimiser
        group["lr"] = group.get("initial_lr", group["lr"])
    if train.lr_schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(train.lr_milestones), gamma=train.lr_gamma)
    if train.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None
