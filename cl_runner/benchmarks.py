"""Continual-learning benchmarks built from MNIST, held as tensors on the run's device.

A benchmark is a list of tasks, each with train/val/test `Examples`, and a scenario that says
what the model predicts:

- class: one head over every class seen; labels are the digits (permuted/rotated MNIST:
  digit + 10 * task, i.e. ten new classes per task).
- task:  the same output space, but each example is scored only among its own task's
  classes. We mask the other tasks' logits rather than keep separate heads: it is the
  same model family, every strategy works unchanged, and memory methods can mix tasks
  in one batch (each example carries its task id).
- domain: every task shares one label space (split MNIST: position of the digit within
  its task, e.g. even/odd for 5x2; permuted/rotated MNIST: the digit).

The 90/10 train/validation split is drawn once from the seed over MNIST's training set,
and every task takes its examples from each side, so validation never leaks into training.
This module also owns the dataset's config node (`dataset.*`) and its checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from . import sources
from .checks import Choice, Node, check_positive_int, is_int
from .errors import ConfigError
from .examples import Examples

MASKED_LOGIT = -1e9  # finite, so that 0 * masked stays 0 in distillation terms
NUM_LABELS = 10  # MNIST digits


# "class" is a keyword, so this one is built with the functional API.
Scenario = Choice("Scenario", {"class": "class", "task": "task", "domain": "domain"})


class DatasetName(Choice):
    split_mnist = "split_mnist"
    split_mnist5 = "split_mnist5"
    permuted_mnist = "permuted_mnist"
    rotated_mnist = "rotated_mnist"


@dataclass
class DatasetConfig(Node):
    name: DatasetName = DatasetName.split_mnist
    # split_mnist*: the labels of each task, in training order.
    tasks: Optional[list[list[int]]] = None
    val_share: float = 0.1
    # permuted_mnist / rotated_mnist: how many tasks, and for rotated the angle of each
    # (default: evenly spaced in [0, 180)).
    num_tasks: int = 2
    angles: Optional[list[float]] = None

    def check(self) -> None:
        if isinstance(self.val_share, bool) or not 0 < self.val_share < 1:
            self.fail("val_share", "expected a share in (0, 1)")
        check_positive_int(self.key("num_tasks"), self.num_tasks, describe="expected a positive integer")
        if self.is_split:
            self._check_labels(task_labels(self))
        elif self.angles is not None and len(self.angles) != self.num_tasks:
            self.fail("angles", f"expected {self.num_tasks} angles (dataset.num_tasks)", list(self.angles))

    @property
    def is_split(self) -> bool:
        return self.name in (DatasetName.split_mnist, DatasetName.split_mnist5)

    def _check_labels(self, labels: list[list[int]]) -> None:
        if not labels or any(not isinstance(t, list) or not t for t in labels):
            self.fail("tasks", "expected a non-empty list of non-empty label lists", labels)
        seen: dict[int, int] = {}
        for i, task in enumerate(labels):
            for label in task:
                if not is_int(label) or not 0 <= label < NUM_LABELS:
                    self.fail("tasks", f"labels must be integers 0-9, got {label!r}", labels)
                if label in seen:
                    self.fail("tasks", f"label {label} is in task {seen[label]} and task {i}; each label in one task", labels)
                seen[label] = i


def task_labels(dataset) -> list[list[int]]:
    """The label split of a split benchmark (defaults per data set name)."""
    if dataset.tasks is not None:
        return [list(t) for t in dataset.tasks]
    if dataset.name == DatasetName.split_mnist5:
        return [[2 * i, 2 * i + 1] for i in range(5)]
    return [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def num_tasks(dataset) -> int:
    return len(task_labels(dataset)) if dataset.name in ("split_mnist", "split_mnist5") else int(dataset.num_tasks)


def check_scenario(dataset, scenario: str) -> None:
    """What a scenario asks of the tasks (run after the dataset node's own checks)."""
    if dataset.name not in ("split_mnist", "split_mnist5"):
        return
    labels = task_labels(dataset)
    for i, task in enumerate(labels):
        if scenario == "task" and len(task) < 2:
            raise ConfigError("dataset.tasks", labels, f"task {i} has one class: nothing to predict under scenario=task")
    if scenario == "domain" and len({len(t) for t in labels}) != 1:
        raise ConfigError("dataset.tasks", labels, "scenario=domain needs tasks of equal size (labels are positions within a task)")


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
    in_features: int = 28 * 28

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


def _rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate [N, 28, 28] images about their centre (bilinear, zero fill)."""
    if degrees % 360 == 0:
        return images
    theta = math.radians(degrees)
    matrix = torch.tensor(
        [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
        dtype=images.dtype, device=images.device,
    )
    out = torch.empty_like(images)
    for start in range(0, len(images), 10_000):  # bounded memory for the sampling grid
        chunk = images[start : start + 10_000].unsqueeze(1)
        grid = F.affine_grid(matrix.expand(len(chunk), 2, 3), list(chunk.shape), align_corners=False)
        out[start : start + 10_000] = F.grid_sample(chunk, grid, align_corners=False).squeeze(1)
    return out


def _load_arrays(root: str, download: bool, verify: bool, device: torch.device) -> dict[str, torch.Tensor]:
    arrays = sources.load("mnist", root, download=download, verify=verify)
    return {
        # Images [N, 1, 28, 28] flattened to [N, 784] floats in [0, 1] (what ToTensor gives the notebook).
        "train_x": torch.from_numpy(arrays.train_x.reshape(len(arrays.train_x), -1)).to(device).float().div_(255),
        "train_y": torch.from_numpy(arrays.train_y).to(device),
        "test_x": torch.from_numpy(arrays.test_x.reshape(len(arrays.test_x), -1)).to(device).float().div_(255),
        "test_y": torch.from_numpy(arrays.test_y).to(device),
    }


def build(cfg, device: torch.device) -> Benchmark:
    """The benchmark of a run's config (`dataset`, `scenario`, `seed`, `data`)."""
    data = _load_arrays(cfg.data.root, cfg.data.download, cfg.data.verify, device)
    rng = torch.Generator().manual_seed(cfg.seed)  # CPU generator: same split on every device
    n = len(data["train_y"])
    order = torch.randperm(n, generator=rng).to(device)
    n_val = round(n * cfg.dataset.val_share)
    train_idx, val_idx = order[n_val:], order[:n_val]
    pools = {
        "train": (data["train_x"][train_idx], data["train_y"][train_idx]),
        "val": (data["train_x"][val_idx], data["train_y"][val_idx]),
        "test": (data["test_x"], data["test_y"]),
    }
    if cfg.dataset.name in ("split_mnist", "split_mnist5"):
        return _split_benchmark(task_labels(cfg.dataset), str(cfg.scenario), pools, device)
    return _transformed_benchmark(cfg, pools, rng, device)


def _split_benchmark(labels: list[list[int]], scenario: str, pools: dict, device: torch.device) -> Benchmark:
    tasks = []
    for t, task_digits in enumerate(labels):
        digits = torch.tensor(task_digits, device=device)
        # domain-IL: label = position of the digit within its task
        position = torch.full((10,), -1, dtype=torch.long, device=device)
        position[digits] = torch.arange(len(task_digits), device=device)
        splits = {}
        for name, (x, y) in pools.items():
            keep = torch.isin(y, digits)
            target = position[y[keep]] if scenario == "domain" else y[keep]
            splits[name] = Examples(x[keep], target, torch.full_like(target, t), y[keep])
        classes = list(range(len(task_digits))) if scenario == "domain" else list(task_digits)
        tasks.append(Task(t, "-".join(map(str, task_digits)), classes, **splits))
    num_outputs = max(len(t) for t in labels) if scenario == "domain" else 10
    return Benchmark(tasks, scenario, num_outputs, _masks(tasks, num_outputs, device))


def _transformed_benchmark(cfg, pools: dict, rng: torch.Generator, device: torch.device) -> Benchmark:
    count = cfg.dataset.num_tasks
    scenario = str(cfg.scenario)
    tasks = []
    if cfg.dataset.name == "permuted_mnist":
        # Task 0 is plain MNIST; the others a fixed pixel permutation drawn from the seed.
        perms = [torch.arange(784)] + [torch.randperm(784, generator=rng) for _ in range(count - 1)]
        transforms = [(f"perm{t}", lambda x, p=p.to(device): x[:, p]) for t, p in enumerate(perms)]
    else:
        angles = list(cfg.dataset.angles) if cfg.dataset.angles is not None else [180.0 * t / count for t in range(count)]
        transforms = [
            (f"rot{a:g}", lambda x, a=a: _rotate(x.view(-1, 28, 28), a).reshape(len(x), -1)) for a in angles
        ]
    for t, (name, transform) in enumerate(transforms):
        offset = 10 * t if scenario in ("class", "task") else 0  # ten new classes per task
        splits = {split: Examples(transform(x.view(len(x), -1)), y + offset, torch.full_like(y, t), y.clone())
                  for split, (x, y) in pools.items()}
        tasks.append(Task(t, name, list(range(offset, offset + 10)), **splits))
    num_outputs = 10 * count if scenario in ("class", "task") else 10
    return Benchmark(tasks, scenario, num_outputs, _masks(tasks, num_outputs, device))


def _masks(tasks: list[Task], num_outputs: int, device: torch.device) -> torch.Tensor:
    masks = torch.zeros(len(tasks), num_outputs, dtype=torch.bool, device=device)
    for task in tasks:
        masks[task.index, task.classes] = True
    return masks
