"""The diagonal of the Fisher information from exact per-example gradients.

F_i = mean over examples of (d log p(y | x, theta) / d theta_i)^2.

For a linear layer y = W a + b, example n's gradient of W is the outer product g_n a_n^T
(g_n: gradient of that example's loss with respect to the layer's output), so

    sum_n (g_n a_n^T)^2 = (g^2)^T (a^2)      and for the bias  sum_n g_n^2,

elementwise squares, one matrix product per layer and one backward pass per chunk. This
is exact, not an approximation; `fisher_diagonal_loop` is the plain one-example-at-a-time
reference (the notebook's method) used by the tests and the benchmark. Models with other
parameterised layers fall back to torch.func's vmap over per-example gradients.

Which label y? The empirical Fisher uses the true labels. The Fisher proper is an expectation
over the model's own predictive distribution: `expected_fisher` computes it exactly, as
sum_c p(c|x) F(y=c), one weighted pass per output class that has any probability. Drawing
one label per example (`sample_labels`) estimates the same thing without bias, but with a
huge variance on a confident model: the rare low-probability labels carry almost all of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap


def sample_labels(model: nn.Module, x: torch.Tensor, logit_bias: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Labels drawn from the model's own predictive distribution (one per example)."""
    with torch.no_grad():
        probs = torch.softmax(model(x) + logit_bias, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _closed_form(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, logit_bias: torch.Tensor, weights: torch.Tensor, chunk: int
) -> dict[str, torch.Tensor] | None:
    """The closed form for models whose only parameters are Linear layers fed [N, features]
    (None when a Linear sees another shape)."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    sums = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(module, args, out):
            inputs[name], outputs[name] = args[0].detach(), out
        return hook

    handles = [m.register_forward_hook(capture(name)) for name, m in linears.items()]
    try:
        for start in range(0, len(x), chunk):
            xb, yb, bb = x[start : start + chunk], y[start : start + chunk], logit_bias[start : start + chunk]
            wb = weights[start : start + chunk, None]
            # Sum, not mean: each row of d(loss)/d(output) is then that example's own gradient.
            loss = F.cross_entropy(model(xb) + bb, yb, reduction="sum")
            if any(inputs[n].dim() != 2 for n in linears):  # e.g. a Linear over a sequence: not this formula
                return None
            names = list(linears)
            grads = torch.autograd.grad(loss, [outputs[n] for n in names])
            for name, g in zip(names, grads):
                g2, a2 = g.square() * wb, inputs[name].square()
                sums[f"{name}.weight"] += g2.T @ a2
                if linears[name].bias is not None:
                    sums[f"{name}.bias"] += g2.sum(0)
    finally:
        for h in handles:
            h.remove()
    return sums


def _vmapped(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, logit_bias: torch.Tensor, weights: torch.Tensor, chunk: int
) -> dict[str, torch.Tensor]:
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_one(p, xi, yi, bi):
        logits = functional_call(model, p, (xi.unsqueeze(0),)) + bi
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0, 0))
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    for start in range(0, len(x), chunk):
        grads = per_example(params, x[start : start + chunk], y[start : start + chunk], logit_bias[start : start + chunk])
        wb = weights[start : start + chunk]
        for n, g in grads.items():
            sums[n] += (g.square() * wb.view(-1, *[1] * (g.dim() - 1))).sum(0)
    return sums


def fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
    chunk: int = 4096,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Mean squared per-example gradient of -log p(y|x) for every parameter.

    `logit_bias` ([N, C], 0 or a large negative number) hides outputs, as under task-IL.
    `weights` ([N]) scales each example's squared gradient (default 1).
    """
    if logit_bias is None:
        logit_bias = torch.zeros(len(x), 1, device=x.device)
    logit_bias = logit_bias.expand(len(x), -1)
    if weights is None:
        weights = torch.ones(len(x), device=x.device)
    was_training = model.training
    model.eval()
    param_modules = {m for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
    sums = None
    if all(isinstance(m, nn.Linear) for m in param_modules):
        sums = _closed_form(model, x, y, logit_bias, weights, chunk)
    if sums is None:
        sums = _vmapped(model, x, y, logit_bias, weights, min(chunk, 256))
    model.train(was_training)
    return {n: s / len(x) for n, s in sums.items()}


def expected_fisher(model: nn.Module, x: torch.Tensor, logit_bias: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The Fisher proper: E over y ~ p(y|x) of the squared gradient, summed exactly over labels.

    As the reference code of van de Ven et al. computes it (its default `fisher_labels='all'`).
    Outputs with zero probability everywhere (hidden by `logit_bias`) cost nothing.
    """
    if logit_bias is None:
        logit_bias = torch.zeros(len(x), 1, device=x.device)
    with torch.no_grad():
        probs = torch.softmax(model(x) + logit_bias, dim=-1)
    total: dict[str, torch.Tensor] = {}
    for c in range(probs.shape[1]):
        if not probs[:, c].any():
            continue
        labels = torch.full((len(x),), c, dtype=torch.long, device=x.device)
        part = fisher_diagonal(model, x, labels, logit_bias, weights=probs[:, c])
        total = part if not total else {n: total[n] + f for n, f in part.items()}
    return total


def fisher_diagonal_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logit_bias: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Reference: one backward pass per example (the notebook's batch-size-1 loop)."""
    if logit_bias is None:
        logit_bias = torch.zeros(len(x), 1, device=x.device)
    logit_bias = logit_bias.expand(len(x), -1)
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]) + logit_bias[i : i + 1], y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            sums[n] += p.grad.detach().square()
    model.zero_grad()
    return {n: s / len(x) for n, s in sums.items()}


def normalize_by_max(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Divide each tensor by its own maximum, as the notebook does (so alpha=1e8 keeps its meaning)."""
    return {n: f / (f.max() + 1e-8) for n, f in fisher.items()}
