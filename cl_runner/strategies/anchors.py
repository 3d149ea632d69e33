"""What the regularisation strategies share: a copy of the weights to hold on to.

- `quadratic_penalty`: sum_k sum_i w_k,i (theta_i - theta*_k,i)^2, the pull towards earlier
  weights theta*_k with per-weight importances w_k (EWC's Fisher, SI's omega).
- `Teacher`: a frozen copy of the model's weights and buffers, evaluated on the current model's
  structure with torch.func.functional_call (LwF's and iCaRL's old model for distillation), so
  a checkpoint holds tensors only. It is evaluated in eval mode, as the old model it is: in
  training mode BatchNorm would normalise with the batch's statistics and update the frozen
  running averages in place.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..models import evaluating


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def quadratic_penalty(model: nn.Module, pairs) -> torch.Tensor:
    """sum over (importance, anchor) pairs of sum_i importance_i (theta_i - anchor_i)^2."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for importance, anchor in pairs:
        for name, p in model.named_parameters():
            total = total + (importance[name] * (p - anchor[name]).square()).sum()
    return total


class Teacher:
    """The model as it was when `freeze` was called (empty until then)."""

    def __init__(self):
        self.state: dict[str, torch.Tensor] = {}

    def __bool__(self) -> bool:
        return bool(self.state)

    def freeze(self, model: nn.Module) -> None:
        self.state = {n: t.detach().clone() for n, t in model.state_dict().items()}

    @torch.no_grad()
    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The frozen weights' outputs for `x`, computed with `model`'s structure in eval mode
        (`model`'s own modes are left as they were)."""
        with evaluating(model):
            return functional_call(model, self.state, (x,))
