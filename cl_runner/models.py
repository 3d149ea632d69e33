"""The networks: a multilayer perceptron over flattened 28x28 images."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

ACTIVATIONS = {"leaky_relu": nn.LeakyReLU, "relu": nn.ReLU}


def mlp(in_features: int, num_outputs: int, width: int, depth: int, activation: str) -> nn.Sequential:
    """`depth` hidden layers of `width` units; depth 0 is a linear classifier."""
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(depth):
        layers += [nn.Linear(features, width), ACTIVATIONS[activation]()]
        features = width
    layers.append(nn.Linear(features, num_outputs))
    return nn.Sequential(*layers)


def build(cfg: DictConfig, in_features: int, num_outputs: int, device: torch.device) -> nn.Module:
    return mlp(in_features, num_outputs, cfg.model.width, cfg.model.depth, cfg.model.activation).to(device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
