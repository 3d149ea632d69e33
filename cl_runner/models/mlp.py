"""The multilayer perceptron over flattened inputs: `depth` hidden layers of `width` units.

It flattens its input itself, so it takes flat vectors and images [B, C, H, W] alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import Choice, check_at_most
from .base import MODELS, ModelConfig, Size

Activation = Choice("Activation", {"leaky_relu": "leaky_relu", "relu": "relu"})
ACTIVATIONS = {"leaky_relu": nn.LeakyReLU, "relu": nn.ReLU}


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    width: int = 64  # hidden units per layer
    depth: int = 1  # hidden layers; 0 is a linear classifier
    activation: Activation = Activation.leaky_relu

    def check(self) -> None:
        self.positive_int("width", describe="expected a positive integer")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            self.fail("depth", "expected an integer >= 0 (hidden layers)")
        check_at_most(self.key("depth"), self.depth)

    def body_size(self, input_shape: tuple[int, ...]) -> Size:
        features, width, depth = math.prod(input_shape), self.width, self.depth
        if depth == 0:
            return Size(0, features, features, features)
        parameters = (features + 1) * width + (depth - 1) * (width + 1) * width
        return Size(parameters, width, features + 2 * depth * width, max(features, width))  # each Linear, then its activation

    def unused(self) -> dict[str, str]:
        linear = "not used by a linear classifier (model.depth=0): add model.depth=1 or more"
        return {"width": linear, "activation": linear} if self.depth == 0 else {}


class MLP(nn.Sequential):
    """An nn.Sequential of the layers (parameters "0.weight", "0.bias", ...) over the input
    flattened to [B, features]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


def mlp(in_features: int, num_outputs: int, width: int, depth: int, activation: str) -> MLP:
    """`depth` hidden layers of `width` units; depth 0 is a linear classifier."""
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(depth):
        layers += [nn.Linear(features, width), ACTIVATIONS[str(activation)]()]
        features = width
    layers.append(nn.Linear(features, num_outputs))
    return MLP(*layers)


@MODELS.register("mlp", MLPConfig)
def build_mlp(cfg, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    return mlp(math.prod(input_shape), num_outputs, cfg.width, cfg.depth, cfg.activation)
