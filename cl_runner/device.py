"""Which device a run uses, and the global torch settings that follow from the config."""

from __future__ import annotations

import os

import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when PyTorch sees it, else the CPU; `cuda` without CUDA is a config error."""
    name = str(name)
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available on this machine; use device=auto or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def setup_torch(seed: int, device: torch.device, tf32: bool, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
