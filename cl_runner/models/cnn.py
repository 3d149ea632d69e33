"""A small convolutional network: the "Conv-4" of few-shot learning, for 28x28 and 32x32 images.

`blocks` blocks of [3x3 convolution of `width` channels (padding 1), BatchNorm, ReLU, 2x2
max-pool], then one linear layer over the flattened maps: the embedding network of Matching
Networks (Vinyals et al. 2016) and Prototypical Networks (Snell et al. 2017), 4 blocks of 64
channels by default, which is the standard small CNN for 28x28 Omniglot and 32x32 CIFAR-FS
images. Our one change: the convolutions have no bias, which the BatchNorm after each would
cancel. Each block halves the image's sides (rounding down): 28x28 ends at 1x1, 32x32 at 2x2.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import MODELS, ModelConfig, Size


@dataclass
class CNNConfig(ModelConfig):
    name: str = "cnn"
    width: int = 64  # channels of every convolution
    blocks: int = 4  # conv-BN-ReLU-maxpool blocks; each halves the image's sides

    def check(self) -> None:
        self.positive_int("width", describe="expected a positive integer (channels per convolution)")
        self.positive_int("blocks", describe="expected a positive integer (convolutional blocks)")

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        self.require_image(input_shape)
        side = min(input_shape[1:])
        if side >> self.blocks < 1:
            self.fail("blocks", f"each block halves the image: {input_shape[1]}x{input_shape[2]} images allow at "
                      f"most {side.bit_length() - 1} blocks")


    def body_size(self, input_shape: tuple[int, ...]) -> Size:
        channels, height, width = input_shape
        w, blocks = self.width, self.blocks
        parameters = 9 * channels * w + 9 * w * w * (blocks - 1) + 2 * w * blocks  # no conv bias; BN weight, bias
        # Each block: the convolution's, the BatchNorm's and the ReLU's maps, then the pooled one.
        maps = sum(3 * w * (height >> i) * (width >> i) + w * (height >> i + 1) * (width >> i + 1) for i in range(blocks))
        features = w * (height >> blocks) * (width >> blocks)
        return Size(parameters, features, channels * height * width + maps, max(channels, w) * height * width)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(), nn.MaxPool2d(2))


@MODELS.register("cnn", CNNConfig)
def build_cnn(cfg, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    channels, height, width = input_shape
    blocks = [conv_block(channels if i == 0 else cfg.width, cfg.width) for i in range(cfg.blocks)]
    features = cfg.width * (height >> cfg.blocks) * (width >> cfg.blocks)
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(features, num_outputs))
