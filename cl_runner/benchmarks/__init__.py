"""Continual-learning benchmarks: a data set cut into tasks, held as tensors on the run's device.

- base.py: `Benchmark` and `Task` (what a run trains and evaluates on), the scenarios.
- config.py: the `dataset` config node (source, kind, tasks) and its checks.
- build.py: reading the data set, the validation split, split / permuted / rotated tasks.
- transforms.py: `Prepare` (stored uint8 images -> model inputs, per batch), permutation,
  rotation, and the augmentation of training batches.

A new data set is a source (one module in cl_runner/sources/) and a preset in conf/dataset/.
"""

from __future__ import annotations

from .base import MASKED_LOGIT, Benchmark, Scenario, Task
from .build import build
from .config import DatasetConfig, check_scenario, num_tasks, task_labels
from .transforms import Prepared, augment

__all__ = ["MASKED_LOGIT", "Benchmark", "DatasetConfig", "Prepared", "Scenario", "Task", "augment", "build",
           "check_scenario", "num_tasks", "task_labels"]
