"""Checkpoints after each finished task: model, optimiser, strategy state and progress.

Saved atomically (write to a temporary file, then rename; `records.replaced`) so a crash
or a full disk mid-save leaves the previous checkpoint intact and no temporary file; loaded with `weights_only=True`, so a checkpoint can only
hold tensors and plain containers, never code. `resumable(folder)` is the one check that a
folder can be resumed (the command line's precheck and the run both use it).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from . import timing
from .errors import ConfigError, DamagedRunError
from .examples import unit_floats
from .records import replaced

FILENAME = "checkpoint.pt"
CONFIG = "config.yaml"


def resumable(folder: str | os.PathLike) -> Path:
    """The folder of `resume=folder`, checked to hold a run that finished at least one task."""
    path = Path(os.path.abspath(Path(folder).expanduser()))
    for name, why in ((CONFIG, "expected a cl-run output folder"),
                      (FILENAME, "the run finished no task, so there is nothing to resume; start it again")):
        try:
            found = (path / name).is_file()
        except OSError as err:  # e.g. a folder it may not read
            raise ConfigError("resume", str(folder), f"cannot read {path / name}: {err.strerror}") from None
        if not found:
            raise ConfigError("resume", str(folder), f"no {name} in {path}: {why}")
    return path


@timing.phase("outputs")
def save(folder: Path, state: dict) -> None:
    # Serialised in memory first: torch.save's own file writer reports a full disk as a
    # RuntimeError; Python's write gives the OSError that records.replaced turns into WriteError.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with replaced(folder / FILENAME) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load(folder: Path, device: torch.device, float_images: bool = False) -> dict:
    """The checkpoint's state. With `float_images` (the run holds its images as floats), the
    uint8 images of memories saved before small data sets were stored as floats are
    converted too: joined with float examples, torch would take 0-255 for the values."""
    path = resumable(folder) / FILENAME
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated file, or an object weights_only refuses
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DamagedRunError(folder, f"{path.name} is unreadable ({first})") from None
    if float_images and isinstance(state, dict) and isinstance(state.get("plugins"), list):
        state["plugins"] = _with_float_images(state["plugins"])
    return state


def _with_float_images(state):
    """`state` with the `x` of every set of examples saved in it (a dict of x, y, task, label) as floats."""
    if isinstance(state, dict):
        if "x" in state and "y" in state and torch.is_tensor(state["x"]):
            return {**state, "x": unit_floats(state["x"])}
        return {key: _with_float_images(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_with_float_images(value) for value in state)
    return state
