"""The diagonal of the Fisher information from exact per-example gradients.

F_i = mean over examples of (d log p(y | x, theta) / d theta_i)^2, with the model in eval
mode (BatchNorm normalises with its running averages, so examples do not interact).

One forward and one backward pass per chunk of examples give, for every layer, its input a_n
and the gradient g_n of example n's loss with respect to its output (the loss is summed, so
each row of that gradient is the example's own). The per-example gradients of the layer's
parameters follow in closed form (`layer_fisher.py`): for a linear layer y = W a + b,

    sum_n (g_n a_n^T)^2 = (g^2)^T (a^2)      and for the bias  sum_n g_n^2,

a convolution the same with its input unfolded into patches, a BatchNorm from the normalised
input. This is exact, not an approximation; `fisher_diagonal_loop` is the plain
one-example-at-a-time reference (the notebook's method) used by the tests and the benchmark.
A model with any other parameterised layer, or one whose layer is called twice in a forward
pass (shared weights), falls back to torch.func's vmap over per-example gradients.

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

from .layer_fisher import fits, has_closed_form, squared_gradient_sums
from .models import evaluating

# Examples per forward pass: a model of linear layers only (an MLP) is cheap; conv layers keep
# activations for the backward pass far larger than the input.
FLAT_CHUNK, IMAGE_CHUNK = 4096, 256
# Per-example gradients the vmap fallback holds at once, in numbers (64 MiB of float32).
VMAP_BUDGET = 2**24


def _linear_only(model: nn.Module) -> bool:
    return all(isinstance(m, nn.Linear) for m in model.modules() if any(True for _ in m.parameters(recurse=False)))


def _default_chunk(model: nn.Module) -> int:
    return FLAT_CHUNK if _linear_only(model) else IMAGE_CHUNK


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor, logit_bias: torch.Tensor) -> torch.Tensor:
    """The model's predictive distribution (eval mode), chunk by chunk (an MLP: in one pass)."""
    chunk = max(len(x), 1) if _linear_only(model) else IMAGE_CHUNK
    logit_bias = logit_bias.expand(len(x), -1)
    with evaluating(model):
        return torch.cat([torch.softmax(model(x[i : i + chunk]) + logit_bias[i : i + chunk], dim=-1)
                          for i in range(0, len(x), chunk)])


def sample_labels(model: nn.Module, x: torch.Tensor, logit_bias: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Labels drawn from the model's own predictive distribution (one per example)."""
    probs = _probabilities(model, x, logit_bias)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _closed_form(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logit_bias: torch.Tensor, weights: torch.Tensor,
                 chunk: int) -> dict[str, torch.Tensor] | None:
    """Sums over examples of the squared per-example gradients, layer by layer in closed form;
    None if a layer turns out not to have one (its input, or a second call in one pass)."""
    layers = {name: m for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))}
    sums = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    inputs: dict[str, list[torch.Tensor]] = {}
    outputs: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(module, args, out):
            inputs.setdefault(name, []).append(args[0].detach())
            outputs[name] = out
            # A later in-place operation (ReLU(inplace=True), `out += shortcut`) changes the
            # tensor handed on, not the one whose gradient is asked for below.
            return out.clone()
        return hook

    handles = [m.register_forward_hook(capture(name)) for name, m in layers.items()]
    try:
        for start in range(0, len(x), chunk):
            inputs.clear()
            outputs.clear()
            xb, yb, bb = x[start : start + chunk], y[start : start + chunk], logit_bias[start : start + chunk]
            # Sum, not mean: each row of d(loss)/d(output) is then that example's own gradient.
            loss = F.cross_entropy(model(xb) + bb, yb, reduction="sum")
            if any(len(inputs.get(name, ())) != 1 or not fits(m, inputs[name][0]) for name, m in layers.items()):
                return None
            names = list(layers)
            grads = torch.autograd.grad(loss, [outputs[n] for n in names], allow_unused=True)
            for name, g in zip(names, grads):
                if g is None:  # the loss does not depend on this layer (e.g. a masked head)
                    continue
                for param, total in squared_gradient_sums(layers[name], inputs[name][0], g,
                                                          weights[start : start + chunk]).items():
                    sums[f"{name}.{param}" if name else param] += total
    finally:
        for h in handles:
            h.remove()
    return sums


def vmapped_gradients(model: nn.Module, loss_one, inputs: tuple, chunk: int | None = None):
    """Per-example gradients by torch.func (vmap over grad of `loss_one(params, *example)`, each
    input's rows one example), chunk by chunk (default: as the Fisher's) within VMAP_BUDGET: yields (start, {name: [n, *shape]}).
    Also MAS's importance (`strategies/mas.py`)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    per_example = vmap(grad(loss_one), in_dims=(None, *[0] * len(inputs)))
    chunk = max(1, min(chunk or _default_chunk(model), VMAP_BUDGET // max(1, sum(p.numel() for p in params.values()))))
    originals = list(model.named_parameters(remove_duplicate=False))
    try:
        for start in range(0, len(inputs[0]), chunk):
            yield start, per_example(params, *[t[start : start + chunk] for t in inputs])
    finally:
        # functional_call leaves a plain tensor in place of the parameter of a layer reachable
        # by two paths (pytorch/pytorch#164759); the optimiser would no longer train it.
        for name, p in originals:
            owner, _, leaf = name.rpartition(".")
            model.get_submodule(owner)._parameters[leaf] = p


def _vmapped(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logit_bias: torch.Tensor, weights: torch.Tensor,
             chunk: int) -> dict[str, torch.Tensor]:
    def loss_one(p, xi, yi, bi):
        logits = functional_call(model, p, (xi.unsqueeze(0),)) + bi
        return F.cross_entropy(logits, yi.unsqueeze(0))

    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for start, grads in vmapped_gradients(model, loss_one, (x, y, logit_bias), chunk):
        wb = weights[start : start + len(next(iter(grads.values())))]
        for n, g in grads.items():
            sums[n] += (g.square() * wb.view(-1, *[1] * (g.dim() - 1))).sum(0)
    return sums


def fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
    chunk: int | None = None,
    weights: torch.Tensor | None = None,
    method: str = "auto",
) -> dict[str, torch.Tensor]:
    """Mean squared per-example gradient of -log p(y|x) for every parameter, in eval mode
    (the model's modes and BatchNorm's running averages are left as they were).

    `logit_bias` ([N, C], 0 or a large negative number) hides outputs, as under task-IL.
    `weights` ([N]) scales each example's squared gradient (default 1). `chunk`: examples
    per forward pass (default 4096 for flat inputs, 256 for images). `method`: "auto" (the
    closed form when every layer has one, else vmap), "closed" (ValueError if a layer has
    none) or "vmap".
    """
    if logit_bias is None:
        logit_bias = torch.zeros(len(x), 1, device=x.device)
    logit_bias = logit_bias.expand(len(x), -1)
    if weights is None:
        weights = torch.ones(len(x), device=x.device)
    chunk = chunk or _default_chunk(model)
    sums = None
    with evaluating(model):
        if method != "vmap" and has_closed_form(model):
            sums = _closed_form(model, x, y, logit_bias, weights, chunk)
        if sums is None and method == "closed":
            raise ValueError("fisher_diagonal(method='closed'): a layer of this model has no closed form here")
        if sums is None:
            sums = _vmapped(model, x, y, logit_bias, weights, chunk)
    return {n: s / len(x) for n, s in sums.items()}


def expected_fisher(model: nn.Module, x: torch.Tensor, logit_bias: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The Fisher proper: E over y ~ p(y|x) of the squared gradient, summed exactly over labels.

    As the reference code of van de Ven et al. computes it (its default `fisher_labels='all'`).
    Outputs with zero probability everywhere (hidden by `logit_bias`) cost nothing.
    """
    if logit_bias is None:
        logit_bias = torch.zeros(len(x), 1, device=x.device)
    probs = _probabilities(model, x, logit_bias)
    total: dict[str, torch.Tensor] = {}
    for c in range(probs.shape[1]):
        if not probs[:, c].any():
            continue
        labels = torch.full((len(x),), c, dtype=torch.long, device=x.device)
        part = fisher_diagonal(model, x, labels, logit_bias, weights=probs[:, c])
        total = part if not total else {n: total[n] + f for n, f in part.items()}
    return total


def fisher_diagonal_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logit_bias: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Reference: one backward pass per example (the notebook's batch-size-1 loop), in eval mode."""
    if logit_bias is None:
        logit_bias = torch.zeros(len(x), 1, device=x.device)
    logit_bias = logit_bias.expand(len(x), -1)
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with evaluating(model):
        for i in range(len(x)):
            model.zero_grad()
            F.cross_entropy(model(x[i : i + 1]) + logit_bias[i : i + 1], y[i : i + 1]).backward()
            for n, p in model.named_parameters():
                if p.grad is not None:  # None: the loss does not depend on it
                    sums[n] += p.grad.detach().square()
    model.zero_grad()
    return {n: s / len(x) for n, s in sums.items()}


def normalize_by_max(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Divide each tensor by its own maximum, as the notebook does (so alpha=1e8 keeps its meaning)."""
    return {n: f / (f.max() + 1e-8) for n, f in fisher.items()}
