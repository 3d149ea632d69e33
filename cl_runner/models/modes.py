"""Running a model in evaluation mode for a moment, as frozen-model computations need.

BatchNorm in training mode normalises with the batch's own statistics and updates its
running averages in place; a computation that reads the model without training it (a
teacher's outputs, features for exemplar selection, the Fisher information) must use the
running averages and leave them alone, i.e. run in eval mode, and then hand every module
its own mode back (a module kept in eval mode on purpose stays so).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; afterwards each submodule's mode as it was."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
