"""The exact EWC Fisher of the convolutional models (cnn, resnet18), part of `make bench`.

For each model (its default config: cnn 4x64 channels, resnet18 nf=20; 10 outputs) on the
same MNIST validation images [N, 1, 28, 28] and labels, three ways of computing the empirical
Fisher diagonal, in seconds:

- loop   - `fisher_diagonal_loop`: one forward and backward pass per example (the reference);
- closed - `fisher_diagonal(method="closed")`: one backward pass per chunk, then per-layer
           closed forms (unfolded convolutions, BatchNorm from the normalised input);
- vmap   - `fisher_diagonal(method="vmap")`: torch.func's vmap over per-example gradients,
           the fallback for layers without a closed form.

The weights are the seeded initial ones, with BatchNorm's running averages taken from one
training-mode pass over the examples (so the eval-mode normalisation is not the identity).
As in bench.py, `warmup` untimed rounds come first, then `repeats` timed rounds in which the
three take turns, so a busy neighbour slows all alike; the median is reported.

Agreement: both fast results are compared with the loop's (largest difference over a
tensor's largest entry, max over tensors), computed again, untimed, on a float64 copy of the
model: there they must agree to 1e-5. In float32 (also recorded) they may not, and rightly:
a ReLU whose input lies within float32 rounding of zero (one at 1e-9 among resnet18's on 300
MNIST images, measured) falls on either side depending on the order of a sum, so one
example's gradient changes by a percent whichever way it is computed; the batched forward
pass of the closed form and vmap rounds differently from the loop's one-example passes.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from cl_runner import models
from cl_runner.fisher import fisher_diagonal, fisher_diagonal_loop
from cl_runner.models.cnn import CNNConfig
from cl_runner.models.resnet import ResNetConfig

SEED = 0
CONFIGS = {"cnn": CNNConfig(), "resnet18": ResNetConfig()}


def _model(name: str, x: torch.Tensor) -> nn.Module:
    torch.manual_seed(SEED)
    model = models.build(CONFIGS[name], tuple(x.shape[1:]), 10, x.device)
    with torch.no_grad():
        model(x)  # training mode: BatchNorm's running averages move to the data's
    return model


def _relative_difference(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    return max(((ours[n].double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-300)).item()
               for n, ref in reference.items())


def _fishers(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    return {
        "loop": lambda: fisher_diagonal_loop(model, x, y),
        "closed": lambda: fisher_diagonal(model, x, y, method="closed"),
        "vmap": lambda: fisher_diagonal(model, x, y, method="vmap"),
    }


def _differences(results: dict) -> dict[str, float]:
    return {k: _relative_difference(results[k], results["loop"]) for k in ("closed", "vmap")}


def time_model_fisher(name: str, x: torch.Tensor, y: torch.Tensor, repeats: int, warmup: int, sync) -> dict:
    """Seconds (median of `repeats`) of the loop, the closed form and vmap for model `name`."""
    model = _model(name, x)
    impls = _fishers(model, x, y)
    for _ in range(warmup):
        for fn in impls.values():
            fn()
    seconds = {k: [] for k in impls}
    results = {}
    for r in range(repeats):
        for k, fn in impls.items():
            sync()
            started = time.perf_counter()
            results[k] = fn()
            sync()
            seconds[k].append(time.perf_counter() - started)
        print(f"  fisher {name} repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.4f} s" for k, v in seconds.items()),
              flush=True)
    exact = {k: fn() for k, fn in _fishers(copy.deepcopy(model).double(), x.double(), y).items()}
    return {
        "model": name, "samples": len(y), "parameters": models.count_parameters(model),
        "seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "all_seconds": seconds,
        "max_relative_difference": _differences(exact),  # float64: checked
        "max_relative_difference_float32": _differences(results),
    }
