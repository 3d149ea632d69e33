"""Squared per-example gradients of one layer's parameters, summed over examples, in closed form.

Given a layer's input a (batch first) and the gradient g of the summed per-example losses
with respect to its output (row n: example n's own gradient), example n's parameter
gradients follow without another backward pass:

- Linear, y = W a + b over inputs [N, in]: grad W_n = g_n a_n^T, so the sum over n of its
  square is (g^2)^T (a^2), one matrix product; grad b_n = g_n. Over inputs [N, ..., in] (a
  sequence of positions p): grad W_n = sum_p g_np a_np^T, formed per example.
- Conv2d (zero padding, one group): a convolution is a linear layer over patches, so with
  A_n = unfold(a_n) [C_in k k, P] and g_n [C_out, P] over the P output positions,
  grad W_n = g_n A_n^T and grad b_n = sum_p g_np.
- BatchNorm in eval mode, y = gamma x_hat + beta with x_hat normalised by the running
  averages: grad gamma_n = sum over positions of g_n x_hat_n, grad beta_n = sum of g_n.

Each example's squared gradient is weighted (`w`, [N]) before summing. Per-example products
are formed a slice of examples at a time, so memory stays bounded whatever the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Numbers held at once by a slice's unfolded patches and per-example gradients (256 MiB of float32).
SLICE_BUDGET = 2**26
# Convolutions whose output has at least this many positions get their per-example gradients
# from a grouped convolution (no unfolded copy of the input); below it, unfold and bmm is
# faster (measured on CPU with resnet18's layers: 3x faster at 28x28 and 14x14, 2x slower at 7x7).
GROUPED_MIN_POSITIONS = 100
_PARAMS = {"weight", "bias"}  # what each of these layers may hold
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _kind(module: nn.Module) -> str | None:
    """The closed form a layer has, by its type and settings (None: none)."""
    if type(module) is nn.Linear:
        return "linear"
    if type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros" \
            and not isinstance(module.padding, str):
        return "conv2d"
    if type(module) in _BATCHNORMS and module.running_mean is not None:
        return "batchnorm"
    return None


def has_closed_form(model: nn.Module) -> bool:
    """Every layer that holds parameters is one with a closed form, holding only its own."""
    for module in model.modules():
        names = {n for n, _ in module.named_parameters(recurse=False)}
        if names and (_kind(module) is None or not names <= _PARAMS):
            return False
    return True


def fits(module: nn.Module, a: torch.Tensor) -> bool:
    """Whether the closed form applies to this input: batched, and BatchNorm in eval mode."""
    kind = _kind(module)
    if kind == "conv2d":
        return a.dim() == 4
    if kind == "batchnorm":
        return not module.training and a.dim() >= 2
    return a.dim() >= 2


def _outer_sums(g: torch.Tensor, patches, in_dim: int, w: torch.Tensor) -> torch.Tensor:
    """sum_n w_n (g_n A_n^T)^2 for g [N, O, P] and A_n = patches(slice)[n] [in_dim, P]."""
    n, out_dim, positions = g.shape
    step = max(1, SLICE_BUDGET // (in_dim * positions + out_dim * in_dim))
    total = g.new_zeros(out_dim, in_dim)
    for start in range(0, n, step):
        part = slice(start, start + step)
        per_example = torch.bmm(g[part], patches(part).transpose(1, 2))  # [n, O, I]
        total += torch.einsum("n,noi->oi", w[part], per_example.square())
    return total


def _linear(module: nn.Linear, a: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    if a.dim() == 2:
        g2 = g.square() * w[:, None]
        return {"weight": g2.T @ a.square(), "bias": g2.sum(0)}
    a, g = a.flatten(1, -2), g.flatten(1, -2)  # [N, P, in], [N, P, out]
    weight = _outer_sums(g.transpose(1, 2), lambda part: a[part].transpose(1, 2), a.shape[-1], w)
    return {"weight": weight, "bias": w @ g.sum(1).square()}


def _conv2d(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    bias = w @ g.flatten(2).sum(2).square()
    if g[0, 0].numel() >= GROUPED_MIN_POSITIONS:
        return {"weight": _grouped_conv_sums(module, a, g, w), "bias": bias}

    def patches(part: slice) -> torch.Tensor:  # [n, C_in k k, P], in the weight's layout
        return F.unfold(a[part], module.kernel_size, module.dilation, module.padding, module.stride)

    weight = _outer_sums(g.flatten(2), patches, module.weight[0].numel(), w).view_as(module.weight)
    return {"weight": weight, "bias": bias}


def _grouped_conv_sums(module: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The per-example weight gradients as one grouped convolution's weight gradient: the
    examples of a slice side by side as channel groups of one image."""
    c_out, c_in = module.weight.shape[:2]
    step = max(1, SLICE_BUDGET // module.weight.numel())
    total = torch.zeros_like(module.weight)
    for start in range(0, len(a), step):
        part = slice(start, start + step)
        n = len(a[part])
        per_example = torch.nn.grad.conv2d_weight(
            a[part].reshape(1, n * c_in, *a.shape[2:]), (n * c_out, *module.weight.shape[1:]),
            g[part].reshape(1, n * c_out, *g.shape[2:]), module.stride, module.padding, module.dilation, groups=n)
        total += torch.einsum("n,n...->...", w[part], per_example.view(n, *module.weight.shape).square())
    return total


def _batchnorm(module: nn.Module, a: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    shape = (1, -1) + (1,) * (a.dim() - 2)
    x_hat = (a - module.running_mean.view(shape)) * torch.rsqrt(module.running_var.view(shape) + module.eps)
    return {"weight": w @ _per_channel(g * x_hat).square(), "bias": w @ _per_channel(g).square()}


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """[N, C, *positions] summed over the positions: [N, C]."""
    return t.flatten(2).sum(2) if t.dim() > 2 else t


_RULES = {"linear": _linear, "conv2d": _conv2d, "batchnorm": _batchnorm}


def squared_gradient_sums(module: nn.Module, a: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """{parameter name: sum_n w_n (d loss_n / d parameter)^2} of one layer, for its input `a`
    and output gradient `g` (the layer must have a closed form, see `has_closed_form`, `fits`)."""
    sums = _RULES[_kind(module)](module, a, g, w.to(g.dtype))
    return {name: sums[name] for name, _ in module.named_parameters(recurse=False)}
