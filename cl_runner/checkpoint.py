"""Checkpoints after each finished task: model, optimiser, strategy state and progress.

Saved atomically (write to a temporary file, then rename) so a crash mid-save leaves the
previous checkpoint intact; loaded with `weights_only=True`, so a checkpoint can only
hold tensors and plain containers, never code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ConfigError, UserError

FILENAME = "checkpoint.pt"


def save(folder: Path, state: dict) -> None:
    path = folder / FILENAME
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(folder: Path, device: torch.device) -> dict:
    path = Path(folder) / FILENAME
    if not path.is_file():
        raise UserError(f"resume={folder}: no {FILENAME} there (the run finished no task, or it is not a run folder)")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated file, or an object weights_only refuses
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError("resume", str(folder), f"{path} is unreadable ({first}); resume from another run folder") from None
