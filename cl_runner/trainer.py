"""One epoch of training and the evaluation of every task, without host-device syncs.

Losses and correct counts accumulate in device tensors and are read once per epoch by
the caller; the training set is resident on the device and a batch is an index
selection of it, so no per-example Python work happens anywhere. Forward passes and losses
run in the run's precision (`ctx.precision`: float32, or autocast to bf16 / float16 with
a loss scale), plugins' hooks included.

`Diverged` is how training says it cannot go on: a non-finite loss or weight at the end of an
epoch (cl_runner.run checks), or an optimiser step that cannot be applied at all (a learning
rate or weight decay beyond the weights' float range, which PyTorch refuses as an overflow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .benchmarks import augment
from .context import RunContext
from .examples import Examples

# How PyTorch refuses a step scale (alpha = -lr) that the weights' dtype cannot represent
# (c10's checked_convert: "value cannot be converted to type float without overflow").
OVERFLOW = "without overflow"


class Diverged(RuntimeError):
    """A non-finite loss or weight, or a step that overflows the weights: the run cannot go on."""


def train_epoch(ctx: RunContext, data: Examples, batch_size: int, generator: torch.Generator,
                max_steps: int | None = None) -> tuple[torch.Tensor, int]:
    """Train one pass over `data` in random order (or until `max_steps` steps in the task).

    Returns the sum over examples of each loss term (device tensor, order `ctx.term_names`)
    and the number of examples seen. Where the benchmark asks for it, each batch is augmented
    (random crop and flip, drawn from `generator` after the epoch's order) before anything
    sees it, plugins included.
    """
    bench, plugins, names, precision = ctx.benchmark, ctx.plugins, ctx.term_names, ctx.precision
    order = torch.randperm(len(data), generator=generator, device=data.y.device)
    sums = torch.zeros(len(names), device=data.y.device)
    zero = torch.zeros((), device=data.y.device)
    seen = 0
    for start in range(0, len(data), batch_size):
        if max_steps is not None and ctx.step >= max_steps:
            break
        batch = data.subset(order[start : start + batch_size])
        if bench.augment:
            batch.x = augment(batch.x, generator)
        with precision.autocast():
            logits = ctx.forward(batch.x)
            terms = {"ce": F.cross_entropy(ctx.train_scores(logits, batch.task), batch.y)}
            for plugin in plugins:
                terms.update(plugin.loss_terms(ctx, batch, logits))
            loss = sum(terms.values())
        ctx.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss, ctx.optimizer)
        for plugin in plugins:
            plugin.before_step(ctx, batch)
        try:
            precision.step(ctx.optimizer)
        except RuntimeError as err:
            if OVERFLOW not in str(err):
                raise
            raise Diverged(f"training diverged in task {ctx.task}, epoch {ctx.epoch}: the optimiser's step overflows the "
                           f"weights' float range (lower train.lr, or optimizer.weight_decay)") from None
        ctx.step += 1
        for plugin in plugins:
            plugin.after_step(ctx, batch)
        sums += torch.stack([terms[n].detach() if n in terms else zero for n in names]) * len(batch)
        seen += len(batch)
    return sums, seen


@torch.no_grad()
def evaluate(ctx: RunContext, split: str, batch_size: int) -> torch.Tensor:
    """[num_tasks, 3] device tensor: summed loss, correct count, example count per task."""
    bench, forward = ctx.benchmark, ctx.forward
    was_training = forward.training
    forward.eval()
    rows = []
    for task in bench.tasks:
        data = getattr(task, split)
        loss = torch.zeros((), device=data.y.device)
        correct = torch.zeros((), device=data.y.device)
        for start in range(0, len(data), batch_size):
            x, y = data.x[start : start + batch_size], data.y[start : start + batch_size]
            logits = None
            with ctx.precision.autocast():
                for plugin in ctx.plugins:
                    logits = plugin.eval_logits(ctx, x, task.index)
                    if logits is not None:
                        break
                if logits is None:
                    logits = forward(x)
            logits = bench.mask_logits(logits.float(), task.index)
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
        # full_like fills on the device; torch.tensor(..., device=cuda) would be a blocking host copy.
        rows.append(torch.stack([loss, correct, torch.full_like(loss, len(data))]))
    forward.train(was_training)
    return torch.stack(rows)
