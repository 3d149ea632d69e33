"""The networks a run can train: `model=<name>` selects `conf/model/<name>.yaml`, whose
`name` picks a builder registered by one module of this package.

A model module defines its config dataclass (a `ModelConfig` with its own knobs and range
checks, and `check_input` for the inputs it can take) and a builder
`build(cfg, input_shape, num_outputs) -> nn.Module` ending in one nn.Linear over all
outputs, registered with `@MODELS.register("<name>", <Config>)`; its YAML file names that
schema first in its defaults (`/schema/model@_here_: <name>`), so composition checks its
keys and types. Every module here is imported (`discover`), so a new model is a new module
and a YAML file. The output layer (`model.head`) is handled here for every model (heads.py).

Models receive float inputs [B, *input_shape]: input_shape is (channels, height, width) for
images; the MLP flattens whatever it gets.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..registry import discover
from .base import MODELS, Head, ModelConfig, Size
from .heads import MultiHead, check_head, output_layer, split_output_layer
from .modes import evaluating

__all__ = ["MODELS", "Head", "ModelConfig", "MultiHead", "Size", "build", "check_head", "check_input",
           "count_parameters", "evaluating", "output_layer", "size", "size_knob"]


def _node(cfg) -> ModelConfig:
    """The model's config as its dataclass (running its range checks)."""
    return OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg


def check_input(cfg, input_shape: tuple[int, ...]) -> None:
    """Raise ConfigError (one line, exit 2) if model `cfg` cannot take inputs of `input_shape`."""
    _node(cfg).check_input(tuple(input_shape))


def build(cfg, input_shape: tuple[int, ...], num_outputs: int, device: torch.device,
          heads: list[list[int]] | None = None) -> nn.Module:
    """The model named by `cfg.name`, for inputs of `input_shape` (without the batch) and
    `num_outputs` outputs, on `device`. With `cfg.head=multi`, `heads` lists the output
    indices of each task, and the output layer becomes one head per task."""
    check_input(cfg, input_shape)
    model = MODELS[cfg.name].impl(cfg, tuple(input_shape), num_outputs)
    if str(cfg.head) == "multi":
        if heads is None:
            raise ValueError("model.head=multi: build() needs the output indices of each task (heads)")
        split_output_layer(model, heads, num_outputs)
    return model.to(device)


def size(cfg, input_shape: tuple[int, ...], num_outputs: int, heads: list[list[int]] | None = None) -> Size | None:
    """The Size `build` would give, computed from the config without building (None: the model
    does not say). With `cfg.head=multi` the heads' outputs are counted, as built."""
    outputs = sum(map(len, heads)) if str(cfg.head) == "multi" and heads is not None else num_outputs
    return _node(cfg).size(tuple(input_shape), outputs)


def size_knob(cfg) -> str:
    """The key (`model.width`, `model.depth`) its size grows with most in `cfg`."""
    return _node(cfg).size_knob()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


discover(__name__, __path__)
