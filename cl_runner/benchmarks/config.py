"""The `dataset` config node: which data set, how it is cut into tasks, and its checks.

`dataset=<preset>` selects `conf/dataset/<preset>.yaml`, which sets these keys:
- `source`: the data set (`cl_runner.sources`: mnist, fashion_mnist, kmnist, cifar10, cifar100,
  npz = the user's file at `dataset.path`);
- `kind`: `split` (each task a group of classes), `permuted` or `rotated` (each task all classes
  under a fixed pixel permutation or rotation; one-channel images only);
- `tasks` (split: the classes of each task, in training order) or `num_tasks` (split: the classes
  in order cut into that many equal tasks, used when `tasks` is null; permuted/rotated: how many);
- `val_share`, `angles` (rotated), `augment` (random crop and flip of training batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import sources
from ..checks import Choice, Node, check_positive_int, is_int
from ..errors import ConfigError

Kind = Choice("Kind", {"split": "split", "permuted": "permuted", "rotated": "rotated"})
Source = Choice("Source", {name: name for name in sources.SOURCES})


@dataclass
class DatasetConfig(Node):
    name: str = "split_mnist"  # the preset's name, shown in outputs and reports
    source: Source = Source.mnist
    kind: Kind = Kind.split
    tasks: Optional[list[list[int]]] = None  # split: the classes of each task (wins over num_tasks)
    num_tasks: Optional[int] = 2  # split: equal tasks of consecutive classes; permuted/rotated: tasks
    val_share: float = 0.1
    angles: Optional[list[float]] = None  # rotated: one per task (default: evenly spaced in [0, 180))
    path: Optional[str] = None  # source=npz: the .npz file
    augment: bool = False  # random crop (4-pixel padding) and horizontal flip of training batches

    def check(self) -> None:
        if isinstance(self.val_share, bool) or not 0 < self.val_share < 1:
            self.fail("val_share", "expected a share in (0, 1)")
        positive = "expected a positive integer"
        check_positive_int(self.key("num_tasks"), self.num_tasks, allow_none=self.kind == "split" and self.tasks is not None,
                           describe=positive)
        if self.source == "npz" and self.path is None:
            self.fail("path", "dataset.source=npz reads your own file: give it as dataset.path=FILE.npz")
        if self.source != "npz" and self.path is not None:
            self.fail("path", f"only used with dataset.source=npz (this data set, {self.source}, is read from data.root)")
        shape = sources.SOURCES[str(self.source)].shape
        if self.kind != "split" and shape is not None and shape[0] != 1:
            self.fail("kind", f"dataset.kind={self.kind} needs one-channel images; {self.source} has {shape[0]} channels")
        if self.kind == "split":
            self._check_labels(task_labels(self, sources.SOURCES[str(self.source)].num_classes))
        elif self.angles is not None and len(self.angles) != self.num_tasks:
            self.fail("angles", f"expected {self.num_tasks} angles (dataset.num_tasks)", list(self.angles))

    def unused(self) -> dict[str, str]:
        found = {}
        if self.kind != "split":
            found["tasks"] = f"used only by split data sets (dataset.kind=split), not {self.kind}: use dataset.num_tasks"
        elif self.tasks is not None:
            found["num_tasks"] = "not used while dataset.tasks lists the tasks (their number is its length)"
        if self.kind != "rotated":
            found["angles"] = f"used only by rotated data sets (dataset.kind=rotated), not {self.kind}: add dataset=rotated_mnist"
        return found

    def _check_labels(self, labels: list[list[int]] | None) -> None:
        if labels is None:  # an even split of a data set whose classes are known only once it is read
            return
        classes = sources.SOURCES[str(self.source)].num_classes
        if not labels or any(not isinstance(t, list) or not t for t in labels):
            self.fail("tasks", "expected a non-empty list of non-empty label lists", labels)
        seen: dict[int, int] = {}
        for i, task in enumerate(labels):
            for label in task:
                if not is_int(label) or label < 0 or (classes is not None and label >= classes):
                    bound = f"0-{classes - 1}" if classes is not None else ">= 0"
                    self.fail("tasks", f"labels must be integers {bound} ({self.source} classes), got {label!r}", labels)
                if label in seen:
                    self.fail("tasks", f"label {label} is in task {seen[label]} and task {i}; each label in one task", labels)
                seen[label] = i


def task_labels(dataset, num_classes: int | None) -> list[list[int]] | None:
    """The classes of each task of a split benchmark: `dataset.tasks`, or the classes 0..n-1 cut
    into `dataset.num_tasks` equal consecutive groups (None while n is unknown)."""
    if dataset.tasks is not None:
        return [list(t) for t in dataset.tasks]
    if num_classes is None:
        return None
    count = int(dataset.num_tasks)
    if num_classes % count:
        raise ConfigError("dataset.num_tasks", count, f"{num_classes} classes do not split into {count} equal tasks; "
                          "list them in dataset.tasks instead")
    size = num_classes // count
    return [list(range(t * size, (t + 1) * size)) for t in range(count)]


def num_tasks(dataset) -> int:
    return len(dataset.tasks) if dataset.kind == "split" and dataset.tasks is not None else int(dataset.num_tasks)


def check_scenario(dataset, scenario: str, num_classes: int | None = None) -> None:
    """What a scenario asks of the tasks (after the dataset node's own checks)."""
    if dataset.kind != "split":
        return
    labels = task_labels(dataset, num_classes if num_classes is not None else sources.SOURCES[str(dataset.source)].num_classes)
    if labels is None:
        return
    for i, task in enumerate(labels):
        if scenario == "task" and len(task) < 2:
            raise ConfigError("dataset.tasks", labels, f"task {i} has one class: nothing to predict under scenario=task")
    if scenario == "domain" and len({len(t) for t in labels}) != 1:
        raise ConfigError("dataset.tasks", labels, "scenario=domain needs tasks of equal size (labels are positions within a task)")
