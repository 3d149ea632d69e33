"""The floating-point precision of a run's forward passes: `train.precision`.

- `32` (default): float32 throughout, as before this key existed (the same numbers).
- `bf16`: forward passes and losses under `torch.autocast` with bfloat16 (matmuls and
  convolutions in bfloat16, reductions and losses in float32 as autocast decides); weights,
  gradients and the optimiser stay float32. No loss scale: bfloat16 has float32's range.
  Works on CPUs and GPUs (fast where the hardware has bfloat16 units: Ampere and later,
  recent Xeons).
- `16-mixed`: the same with float16, whose narrow range needs a loss scale: a GradScaler
  multiplies the loss before backward, divides the gradients back before the strategies'
  `before_step` hooks read them (A-GEM's projection, SI's path integral), and skips a step
  whose gradients overflowed, lowering the scale. Meant for GPUs; it runs on the CPU too,
  slowly (few CPUs have float16 arithmetic). The scaler reads whether gradients overflowed
  once per step (a host-device sync on a GPU, as in any GradScaler loop); its scale is not
  checkpointed, so a resumed 16-mixed run starts again from the initial scale.

The training loop and the evaluation run their forward passes inside `autocast()`, and so
do the strategies' extra forward passes (DER's memory batch, LwF's and iCaRL's teacher,
A-GEM's reference gradient); the end-of-task work (EWC's Fisher, iCaRL's exemplars) runs in
float32. Stored tensors stay float32: DER keeps its memory logits as float32.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

PRECISIONS = ("32", "bf16", "16-mixed")
_DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


class Precision:
    """How a training step runs its forward, backward and optimiser step in one precision."""

    def __init__(self, name, device: torch.device):
        self.name = str(name)
        self.dtype = _DTYPES.get(self.name)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "16-mixed" else None

    def autocast(self):
        """The context of a forward pass: autocast to bf16/float16, or nothing under `32`."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss as backward should see it (times the loss scale under 16-mixed)."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward of `loss`, leaving true (unscaled) gradients in the parameters."""
        self.scale(loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:  # skipped when the gradients overflowed; the scale adapts
            self.scaler.step(optimizer)
            self.scaler.update()
