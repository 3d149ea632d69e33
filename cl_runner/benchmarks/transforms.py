"""Tensor operations on images held on the device: what a model sees, and the task transforms.

- `Prepare`: the first step of every model. Examples are stored as uint8 [N, C, H, W] (a
  quarter of float32's memory: all of CIFAR-10's training set is 154 MB) and turned into
  floats per batch: divided by 255, then standardised per channel where the data set has
  published statistics (CIFAR). Float images (small data sets such as MNIST, converted once
  by `build`; rotated tasks; a user's float npz) pass as they are, apart from the
  standardisation.
- `permute` / `rotate`: the permuted and rotated tasks (a fixed pixel permutation; a
  rotation about the centre, bilinear, zero fill).
- `augment`: the standard augmentation of CIFAR training batches, random crop with 4-pixel
  zero padding and random horizontal flip, vectorised over the batch, from a seeded generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..examples import unit_floats

# Per-channel mean and standard deviation of the training images (after / 255), as the
# continual-learning code bases use them (e.g. mammoth's seq-cifar10 / seq-cifar100).
STANDARDISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class Prepare(nn.Module):
    """Stored examples -> model inputs: uint8 to [0, 1] floats, then optional standardisation."""

    def __init__(self, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        super().__init__()
        self.standardise = mean is not None
        if self.standardise:  # not in the state dict: constants of the data, not of the model
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = unit_floats(x)
        if self.standardise:
            x = (x - self.mean) / self.std
        return x


class Prepared(nn.Module):
    """A model with its input preparation in front (what the run trains and checkpoints)."""

    def __init__(self, prepare: nn.Module, net: nn.Module):
        super().__init__()
        self.prepare, self.net = prepare, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))


def permute(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] images with the pixels of every channel reordered by `permutation` (of H * W)."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h * w)[:, :, permutation].reshape(n, c, h, w)


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """[N, C, H, W] float images rotated about their centre (bilinear, zero fill)."""
    if degrees % 360 == 0:
        return images
    theta = math.radians(degrees)
    matrix = torch.tensor(
        [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
        dtype=images.dtype, device=images.device,
    )
    out = torch.empty_like(images)
    for start in range(0, len(images), 10_000):  # bounded memory for the sampling grid
        chunk = images[start : start + 10_000]
        grid = F.affine_grid(matrix.expand(len(chunk), 2, 3), list(chunk.shape), align_corners=False)
        out[start : start + 10_000] = F.grid_sample(chunk, grid, align_corners=False)
    return out


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded images back to their size, and a random horizontal flip
    (each with probability 1/2), one draw per image."""
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    rows = (top + torch.arange(h, device=device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cols = left + torch.arange(w, device=device)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)  # a flipped crop: its columns reversed
    picked = padded.gather(2, rows)  # [n, c, h, w + 2 * padding]: the crop's rows
    return picked.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
