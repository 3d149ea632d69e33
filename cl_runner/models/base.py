"""The model registry and the config every model's dataclass extends.

`ModelConfig` holds what every model shares: its `name` and its output layer (`head`), and
`check_input`, which a model overrides to refuse inputs it cannot take (a convolutional net
given flat vectors, images too small for its pooling) with a one-line `ConfigError`.

A model also says how big it is without being built (`body_size`: parameters and per-example
activations computed from its knobs, `Size`), so that a run too large for its device is
refused before it allocates anything (cl_runner.sizes); a model that does not say is not
sized. tests/test_size_limits.py holds each formula to the built model's own count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from omegaconf import MISSING

from ..checks import Choice, Node
from ..errors import ConfigError
from ..registry import Registry

MODELS = Registry("model")


@dataclass(frozen=True)
class Size:
    """A model's size for one input shape: its `parameters`; the `features` its output layer
    takes (for the body) or gives; per example, the values of every layer's output
    (`activations`, what training keeps for the backward pass, the input included) and of the
    largest one (`largest`, what evaluation holds at a time, with the layer's input)."""

    parameters: int
    features: int
    activations: int
    largest: int

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

    def body_size(self, input_shape: tuple[int, ...]) -> Size | None:
        """The Size of everything before the output layer, for inputs of `input_shape`, counted
        from the knobs without building anything; None: not known (the model is not sized)."""
        return None

    def size(self, input_shape: tuple[int, ...], outputs: int) -> Size | None:
        """The whole model's Size, its output layer(s) having `outputs` outputs in all (with bias)."""
        body = self.body_size(tuple(input_shape))
        if body is None:
            return None
        return Size(body.parameters + (body.features + 1) * outputs, outputs, body.activations + outputs,
                    max(body.largest, outputs))

    def size_knob(self) -> str:
        """The key its size grows with most here: the integer knob furthest above its default."""
        knobs = [f for f in fields(self) if f.type in (int, "int") and isinstance(f.default, int) and f.default > 0]
        if not knobs:
            return self.key("name")
        return self.key(max(knobs, key=lambda f: getattr(self, f.name) / f.default).name)

    def require_image(self, input_shape: tuple[int, ...]) -> None:
        """Refuse anything but [channels, height, width] inputs."""
        if len(input_shape) != 3 or math.prod(input_shape) < 1:
            raise ConfigError(self.key("name"), self.name, "needs image inputs [channels, height, width]; the "
                              f"dataset's inputs have shape [{', '.join(map(str, input_shape))}]")
