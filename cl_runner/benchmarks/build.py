"""Build a run's benchmark: read the data set, hold out validation, cut it into tasks.

The validation share is drawn once from the seed over the data set's training set, and every
task takes its examples from each side, so validation never leaks into training. Everything
ends up on the run's device, images as stored (uint8, or float for rotated tasks and float
npz files); `Prepare` turns them into model inputs per batch. A data set small enough as
floats (MNIST's 70,000 images take 220 MB) is turned into floats here, once: converting every
batch took a tenth of an MNIST MLP's training time, and it gives the same numbers.

Two checks stop a run here rather than in training: the tasks' examples must fit in the
device's memory before they are made (permuted and rotated tasks each copy the whole data
set; `capacity`), and every task must end with training, validation and test examples (a
`dataset.val_share` that leaves a task none is a config error; a data set without a task's
classes in one of its splits a data error).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .. import capacity, sources
from ..errors import ConfigError, DataError
from ..examples import Examples, unit_floats
from .base import Benchmark, Task, task_masks
from .config import check_scenario, task_labels
from .transforms import STANDARDISATION, Prepare, permute, rotate

FLOAT_STORAGE_LIMIT = 512 * 2**20  # bytes: the images of every task as float32 at most this, or kept uint8


def _pools(arrays: sources.Arrays, seed: int, val_share: float, device: torch.device) -> dict:
    train_x, train_y = torch.from_numpy(arrays.train_x).to(device), torch.from_numpy(arrays.train_y).to(device)
    rng = torch.Generator().manual_seed(seed)  # CPU generator: the same split on every device
    order = torch.randperm(len(train_y), generator=rng).to(device)
    n_val = round(len(train_y) * val_share)
    train_idx, val_idx = order[n_val:], order[:n_val]
    return {
        "train": (train_x[train_idx], train_y[train_idx]),
        "val": (train_x[val_idx], train_y[val_idx]),
        "test": (torch.from_numpy(arrays.test_x).to(device), torch.from_numpy(arrays.test_y).to(device)),
    }, rng


def build(cfg, device: torch.device) -> Benchmark:
    """The benchmark of a run's config (`dataset`, `scenario`, `seed`, `data`)."""
    dataset, scenario = cfg.dataset, str(cfg.scenario)
    source = str(dataset.source)
    root = dataset.path if source == "npz" else cfg.data.root
    arrays = sources.load(source, root, download=cfg.data.download, verify=cfg.data.verify)
    _check_fits(dataset, arrays, device)
    pools, rng = _pools(arrays, cfg.seed, dataset.val_share, device)
    if dataset.kind == "split":
        labels = task_labels(dataset, arrays.num_classes)
        _check_classes(labels, arrays.num_classes, root)
        check_scenario(dataset, scenario, arrays.num_classes)
        tasks, num_outputs = _split_tasks(labels, scenario, pools, arrays.num_classes, device)
    else:
        tasks, num_outputs = _transformed_tasks(dataset, scenario, pools, rng, arrays.num_classes)
    _check_examples(tasks, dataset.val_share, root)
    if sum(4 * split.x.numel() for task in tasks for split in (task.train, task.val, task.test)) <= FLOAT_STORAGE_LIMIT:
        tasks = [_with_floats(task) for task in tasks]
    mean, std = STANDARDISATION.get(source, (None, None))
    return Benchmark(tasks, scenario, num_outputs, task_masks(tasks, num_outputs, device),
                     tuple(arrays.train_x.shape[1:]), Prepare(mean, std).to(device), bool(dataset.augment))


def _check_fits(dataset, arrays: sources.Arrays, device: torch.device) -> None:
    """Refuse tasks whose examples the device could never hold, before they are made: each
    permuted or rotated task is a copy of the whole data set (rotated ones as float32)."""
    examples = len(arrays.train_y) + len(arrays.test_y)
    one_copy = arrays.train_x.nbytes + arrays.test_x.nbytes + 3 * 8 * examples  # the images; y, task and label
    copies = 1 if dataset.kind == "split" else int(dataset.num_tasks)
    if dataset.kind == "rotated":
        one_copy += (4 - arrays.train_x.itemsize) * (arrays.train_x.size + arrays.test_x.size)
    memory = capacity.device_memory(device)
    if copies * one_copy > memory.total:
        need = capacity.format_bytes(copies * one_copy)
        key, value = ("dataset.num_tasks", copies) if copies > 1 else ("device", str(device))
        raise ConfigError(key, value, f"the tasks' examples take at least {need} ({copies} x "
                          f"{capacity.format_bytes(one_copy)}) but {device} has {capacity.format_bytes(memory.total)}; "
                          f"use fewer tasks, or a device with more memory")


def _check_examples(tasks: list[Task], val_share: float, root) -> None:
    """Every task needs examples to train on, to validate and to test: the data's fault first,
    then the split's."""
    for task in tasks:
        if not len(task.train) + len(task.val):
            raise DataError(f"{root}: no training examples of task {task.index}'s classes ({task.name})")
        if not len(task.test):
            raise DataError(f"{root}: no test examples of task {task.index}'s classes ({task.name})")
    for task in tasks:
        pool = len(task.train) + len(task.val)  # its examples in the data set's training set
        for split, other in (("validation", task.val), ("training", task.train)):
            if not len(other):
                raise ConfigError("dataset.val_share", val_share, f"leaves task {task.index} ({task.name}) no {split} "
                                  f"examples (of its {pool}); expected a share that leaves each task some of both")


def _with_floats(task: Task) -> Task:
    return replace(task, **{name: replace(split, x=unit_floats(split.x))
                            for name, split in (("train", task.train), ("val", task.val), ("test", task.test))})


def _check_classes(labels: list[list[int]], num_classes: int, root) -> None:
    """For a data set whose classes are known only once read (npz): the split must fit them."""
    wrong = sorted({c for task in labels for c in task if c >= num_classes})
    if wrong:
        raise ConfigError("dataset.tasks", labels, f"{root} has classes 0-{num_classes - 1}, not {wrong}")


def _split_tasks(labels: list[list[int]], scenario: str, pools: dict, num_classes: int,
                 device: torch.device) -> tuple[list[Task], int]:
    tasks = []
    for t, task_classes in enumerate(labels):
        classes = torch.tensor(task_classes, device=device)
        # domain-IL: label = position of the class within its task
        position = torch.full((num_classes,), -1, dtype=torch.long, device=device)
        position[classes] = torch.arange(len(task_classes), device=device)
        splits = {}
        for name, (x, y) in pools.items():
            keep = torch.isin(y, classes)
            target = position[y[keep]] if scenario == "domain" else y[keep]
            splits[name] = Examples(x[keep], target, torch.full_like(target, t), y[keep])
        outputs = list(range(len(task_classes))) if scenario == "domain" else list(task_classes)
        tasks.append(Task(t, "-".join(map(str, task_classes)), outputs, **splits))
    num_outputs = max(len(t) for t in labels) if scenario == "domain" else num_classes
    return tasks, num_outputs


def _transformed_tasks(dataset, scenario: str, pools: dict, rng: torch.Generator,
                       num_classes: int) -> tuple[list[Task], int]:
    count = int(dataset.num_tasks)
    c, h, w = pools["train"][0].shape[1:]
    device = pools["train"][0].device
    if c != 1:
        raise ConfigError("dataset.kind", str(dataset.kind), f"needs one-channel images; {dataset.path} has {c} channels")
    if dataset.kind == "permuted":
        # Task 0 is the plain data set; the others a fixed pixel permutation drawn from the seed.
        perms = [torch.arange(h * w)] + [torch.randperm(h * w, generator=rng) for _ in range(count - 1)]
        transforms = [(f"perm{t}", lambda x, p=p.to(device): permute(x, p)) for t, p in enumerate(perms)]
    else:
        angles = list(dataset.angles) if dataset.angles is not None else [180.0 * t / count for t in range(count)]
        transforms = [(f"rot{a:g}", lambda x, a=a: rotate(Prepare()(x), a)) for a in angles]
    tasks = []
    for t, (name, transform) in enumerate(transforms):
        offset = num_classes * t if scenario in ("class", "task") else 0  # new classes per task
        splits = {split: Examples(transform(x), y + offset, torch.full_like(y, t), y.clone()) for split, (x, y) in pools.items()}
        tasks.append(Task(t, name, list(range(offset, offset + num_classes)), **splits))
    return tasks, num_classes * count if scenario in ("class", "task") else num_classes
