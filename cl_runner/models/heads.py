"""The output layer, shared by every model: one linear layer over all outputs, or one per task.

A model's builder ends in one `nn.Linear` over all `num_outputs` outputs: its output layer,
and its input is the model's shared representation (iCaRL's features). `model.head=multi`
replaces that layer by a `MultiHead`: one `nn.Linear` per task (as Avalanche's
MultiHeadClassifier), each producing its task's outputs, scattered into one
[batch, num_outputs] logits tensor, so that the loop, every strategy and the task-IL masks
see the same logits as with one layer. Every head is computed for every example (the mask
then keeps each example's own task's outputs), so replayed examples of other tasks and
distillation targets need no special case.

Under scenario=task a single layer whose other tasks' logits are masked is the same function
with the same gradients (van de Ven et al. 2022 implement task-IL heads that way): each head
starts from the rows of the layer it replaces, so the two choices train identically and
differ in structure only (parameter names, one module per task).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


class MultiHead(nn.Module):
    """One linear head per task over the shared features; head t's outputs land at the
    output indices `heads[t]`; outputs of no task's head are 0."""

    def __init__(self, in_features: int, heads: list[list[int]], num_outputs: int, bias: bool = True):
        super().__init__()
        self.in_features, self.num_outputs = in_features, num_outputs
        self.heads = nn.ModuleList(nn.Linear(in_features, len(outputs), bias=bias) for outputs in heads)
        # Where each head's outputs go; derived from the benchmark, so not part of checkpoints.
        self.register_buffer("index", torch.tensor([i for outputs in heads for i in outputs]), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        scores = torch.cat([head(features) for head in self.heads], dim=1)
        return scores.new_zeros(len(features), self.num_outputs).index_copy(1, self.index, scores)


def output_layer(model: nn.Module) -> nn.Module:
    """The model's output layer: its MultiHead, or else its last nn.Linear."""
    heads = [m for m in model.modules() if isinstance(m, MultiHead)]
    if heads:
        return heads[0]
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def check_head(head: str, scenario: str) -> None:
    """One head per task needs the task identity at test time: only scenario=task has it."""
    if str(head) == "multi" and str(scenario) != "task":
        raise ConfigError("model.head", "multi", f"one output layer per task needs the task identity: use "
                          f"scenario=task, or model.head=single (scenario={scenario})")


def split_output_layer(model: nn.Module, heads: list[list[int]], num_outputs: int) -> None:
    """Replace the model's output layer (its last nn.Linear) by a MultiHead for `heads`
    (the output indices of each task), each head starting from the layer's rows."""
    flat = [i for outputs in heads for i in outputs]
    if not heads or not all(heads) or len(set(flat)) != len(flat) or not all(0 <= i < num_outputs for i in flat):
        raise ConfigError("model.head", "multi", f"needs disjoint, non-empty outputs per task in 0..{num_outputs - 1} "
                          f"(scenario=task); the tasks' outputs are {heads}")
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    layer = model.get_submodule(name)
    if layer.out_features != num_outputs:
        raise ValueError(f"the last nn.Linear ({name}) of a model is its output layer: it has {layer.out_features} "
                         f"outputs, not {num_outputs}")
    multi = MultiHead(layer.in_features, heads, num_outputs, bias=layer.bias is not None)
    multi.to(layer.weight.device, layer.weight.dtype)
    with torch.no_grad():
        for head, outputs in zip(multi.heads, heads):
            head.weight.copy_(layer.weight[outputs])
            if head.bias is not None:
                head.bias.copy_(layer.bias[outputs])
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, multi)
