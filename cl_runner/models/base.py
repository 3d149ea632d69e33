"""The model registry and the config every model's dataclass extends."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from ..checks import Node
from ..registry import Registry

MODELS = Registry("model")


@dataclass
class ModelConfig(Node):
    """What every model's config has; each model's dataclass extends it with its own knobs."""

    name: str = MISSING
