"""The model registry and the config every model's dataclass extends.

`ModelConfig` holds what every model shares: its `name` and its output layer (`head`), and
`check_input`, which a model overrides to refuse inputs it cannot take (a convolutional net
given flat vectors, images too small for its pooling) with a one-line `ConfigError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import MISSING

from ..checks import Choice, Node
from ..errors import ConfigError
from ..registry import Registry

MODELS = Registry("model")

# single: one output layer over every output; multi: one output layer per task (task-IL).
Head = Choice("Head", {"single": "single", "multi": "multi"})


@dataclass
class ModelConfig(Node):
    """What every model's config has; each model's dataclass extends it with its own knobs."""

    name: str = MISSING
    head: Head = Head.single

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        """Raise ConfigError if the model cannot take inputs of `input_shape` (no batch
        dimension); the default takes any shape."""

    def require_image(self, input_shape: tuple[int, ...]) -> None:
        """Refuse anything but [channels, height, width] inputs."""
        if len(input_shape) != 3 or math.prod(input_shape) < 1:
            raise ConfigError(self.key("name"), self.name, "needs image inputs [channels, height, width]; the "
                              f"dataset's inputs have shape [{', '.join(map(str, input_shape))}]")
