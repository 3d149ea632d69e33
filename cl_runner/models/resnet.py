"""The reduced ResNet-18 of continual learning on split CIFAR.

ResNet-18's BasicBlocks, [2, 2, 2, 2] of them in four stages of nf, 2nf, 4nf and 8nf
channels (strides 1, 2, 2, 2), after a 3x3 stem convolution of stride 1 with no max-pool;
BatchNorm after every convolution, global average pooling, one linear layer: the network of
GEM (Lopez-Paz & Ranzato 2017, `ResNet18(nclasses, nf=20)` in its model/common.py), A-GEM
(Chaudhry et al. 2019) and, with nf = 64, of DER (Buzzega et al. 2020, mammoth's
`resnet18`). `width` is nf. GEM pools with a fixed 4x4 window and mammoth over the whole
map: the same on 32x32 and 28x28 inputs, whose last maps are 4x4; we pool over the whole
map, so any image size works. The input channels come from the data (1 for MNIST, 3 for
CIFAR).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import MODELS, ModelConfig, Size

STAGES = (2, 2, 2, 2)  # BasicBlocks per stage: ResNet-18


@dataclass
class ResNetConfig(ModelConfig):
    name: str = "resnet18"
    width: int = 20  # nf: channels of the first stage (GEM, A-GEM: 20; DER: 64)

    def check(self) -> None:
        self.positive_int("width", describe="expected a positive integer (nf, channels of the first stage)")

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        self.require_image(input_shape)


    def body_size(self, input_shape: tuple[int, ...]) -> Size:
        channels, height, width = input_shape
        nf = self.width
        parameters, maps = 9 * channels * nf + 2 * nf, 2 * nf * height * width  # the stem: convolution, BatchNorm
        inputs = nf
        for i, count in enumerate(STAGES):
            out = nf * 2**i
            for b in range(count):
                if i and not b:  # a 3x3 convolution of stride 2 and padding 1: sides rounded up
                    height, width = (height + 1) // 2, (width + 1) // 2
                shortcut = inputs != out or (i and not b)
                parameters += 9 * inputs * out + 9 * out * out + 4 * out + (inputs * out + 2 * out if shortcut else 0)
                maps += (6 if shortcut else 4) * out * height * width  # convolutions and BatchNorms
                inputs = out
        return Size(parameters, inputs, channels * input_shape[1] * input_shape[2] + maps,
                    max(channels, nf) * input_shape[1] * input_shape[2])


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, plus the input (through a 1x1 convolution and
    BatchNorm when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Parameter names as in GEM's and mammoth's code (conv1, bn1, layer1..layer4, linear)."""

    def __init__(self, in_channels: int, num_outputs: int, nf: int):
        super().__init__()
        self.conv1 = conv3x3(in_channels, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        stages, channels = [], nf
        for i, count in enumerate(STAGES):
            out = nf * 2**i
            stages.append(nn.Sequential(*[BasicBlock(channels if b == 0 else out, out, 2 if i and not b else 1)
                                          for b in range(count)]))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(channels, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register("resnet18", ResNetConfig)
def build_resnet18(cfg, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    return ResNet18(input_shape[0], num_outputs, cfg.width)
