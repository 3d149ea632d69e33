"""The networks a run can train: `model=<name>` selects `conf/model/<name>.yaml`, whose
`name` picks a builder registered by one module of this package.

A model module defines its config dataclass (a `ModelConfig` with its own knobs and range
checks) and a builder `build(cfg, input_shape, num_outputs) -> nn.Module`, registered with
`@MODELS.register("<name>", <Config>)`; its YAML file names that schema first
in its defaults (`/schema/model@_here_: <name>`), so composition checks its keys and types.
Every module here is imported (`discover`), so a new model is a new module and a YAML file.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import discover
from .base import MODELS, ModelConfig

__all__ = ["MODELS", "ModelConfig", "build", "count_parameters"]


def build(cfg, input_shape: tuple[int, ...], num_outputs: int, device: torch.device) -> nn.Module:
    """The model named by `cfg.name`, for inputs of `input_shape` (without the batch) and
    `num_outputs` outputs, on `device`."""
    return MODELS[cfg.name].impl(cfg, input_shape, num_outputs).to(device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


discover(__name__, __path__)
