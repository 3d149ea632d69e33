"""`Examples`: a set of examples held as tensors on the run's device, the one type for data.

Every task's train/val/test split, a stage's training set, a replay memory and a batch are
`Examples`. Each example carries its task (task-IL masks and memories mixing tasks need it)
and its original class label in the source dataset (for class-balanced memories and per-class
counts), beside the input `x` and the target `y` in the model's output space.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

FIELDS = ("x", "y", "task", "label")


def unit_floats(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (0-255) as the floats in [0, 1] a model sees; other tensors as they are.
    `benchmarks.Prepare` does this per batch, and `benchmarks.build` once for small data sets."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x  # in place: the float copy is ours


@dataclass
class Examples:
    x: torch.Tensor  # inputs: uint8 images (0-255 for [0, 1]) or floats
    y: torch.Tensor  # [N] int64 target in the model's output space
    task: torch.Tensor  # [N] int64 index of the task each example belongs to
    label: torch.Tensor  # [N] int64 class in the source dataset (the MNIST digit)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> "Examples":
        # index_select copies whole rows: about twice as fast on CPU as fancy indexing's
        # general gather for [batch, 784] images, and this runs once per training batch.
        if index.dtype == torch.bool:
            index = torch.nonzero(index).squeeze(1)
        return Examples(*(getattr(self, f).index_select(0, index) for f in FIELDS))

    @staticmethod
    def concat(parts: list["Examples"]) -> "Examples":
        return Examples(*(torch.cat([getattr(p, f) for p in parts]) for f in FIELDS))

    def class_keys(self, num_outputs: int) -> torch.Tensor:
        """One integer per example naming its class: task * num_outputs + y (so that
        domain-IL's shared labels still count per task)."""
        return self.task * num_outputs + self.y

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "Examples":
        state = dict(state)
        if "digit" in state:  # checkpoints written before the field was renamed
            state["label"] = state.pop("digit")
        return cls(**{f: state[f] for f in FIELDS})
