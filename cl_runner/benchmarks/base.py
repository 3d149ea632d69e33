"""What a benchmark is: tasks with train/val/test examples, a scenario, and the output space.

- class: one head over every class seen; a task's labels are its classes (permuted/rotated:
  class + num_classes * task, i.e. new classes per task).
- task: the same output space, but each example is scored only among its own task's classes.
  We mask the other tasks' logits rather than keep separate heads: the same model family, every
  strategy works unchanged, and memory methods can mix tasks in one batch (each example carries
  its task id).
- domain: every task shares one label space (split: the position of the class within its
  task, e.g. even/odd for 5x2; permuted/rotated: the class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import Choice
from ..examples import Examples

MASKED_LOGIT = -1e9  # finite, so that 0 * masked stays 0 in distillation terms

# "class" is a keyword, so this one is built with the functional API.
Scenario = Choice("Scenario", {"class": "class", "task": "task", "domain": "domain"})


@dataclass
class Task:
    index: int
    name: str
    classes: list[int]  # output indices this task's labels use
    train: Examples
    val: Examples
    test: Examples


@dataclass
class Benchmark:
    tasks: list[Task]
    scenario: str
    num_outputs: int
    task_masks: torch.Tensor  # [num_tasks, num_outputs] bool: outputs an example of task t may predict
    input_shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W) of one example
    prepare: nn.Module | None = None  # stored examples -> model inputs (see transforms.Prepare)
    augment: bool = False  # random crop and flip of training batches (transforms.augment)

    @property
    def in_features(self) -> int:
        return int(torch.Size(self.input_shape).numel())

    def mask_logits(self, logits: torch.Tensor, task_ids: torch.Tensor | int) -> torch.Tensor:
        """Under task-IL, hide the logits of other tasks' classes; otherwise a no-op."""
        if self.scenario != "task":
            return logits
        mask = self.task_masks[task_ids]
        if mask.dim() == 1:
            mask = mask.expand_as(logits)
        return logits.masked_fill(~mask, MASKED_LOGIT)

    def logit_bias(self, task: int, device: torch.device) -> torch.Tensor:
        """[1, num_outputs]: 0 where task `task` may predict, MASKED_LOGIT elsewhere (task-IL)."""
        return self.mask_logits(torch.zeros(1, self.num_outputs, device=device), task)


def task_masks(tasks: list[Task], num_outputs: int, device: torch.device) -> torch.Tensor:
    masks = torch.zeros(len(tasks), num_outputs, dtype=torch.bool, device=device)
    for task in tasks:
        masks[task.index, task.classes] = True
    return masks
