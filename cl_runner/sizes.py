"""What a run will hold on its device, added up from its config before the model is built, and
the refusal of a run that its device could never hold.

`check_fits(cfg, bench, device)` runs once the benchmark is on the device and before the model is
built (run.py). It adds up what the run is sure to keep there:
- the data, as `benchmarks.build` placed it (which refused tasks too large to make);
- the model's weights, their gradients and the optimiser's state (Adam: two moments; SGD with
  momentum: one), from the parameter count the model's config computes without building it
  (`models.size`; a model that does not say is left out);
- the reservoir memories of the rehearsal plugins (`policy=reservoir`: replay, A-GEM, DER),
  which take all their `memory_size` rows at once, DER's with each row's logits;
- the activations of a training batch (every layer's output, kept for the backward pass) or
  of an evaluation batch (a layer's input and output at a time), whichever is larger.
It is a lower bound (no allocator slack, no workspace, no strategy's copies of the weights),
so it refuses only what cannot fit: an estimate above the device's total memory is a
ConfigError (exit 2), one line naming the key behind its largest part, the estimate part by
part and the device's memory. Above what is free now, it warns and runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from . import models
from .capacity import device_memory, format_bytes
from .errors import ConfigError
from .examples import FIELDS

notice = logging.getLogger("cl_runner.notice")  # shown on the terminal too
VALUE_BYTES = 4  # float32: the weights, their gradients, the optimiser's state and activations
OPTIMIZER_SLOTS = {"adam": 2}  # values the optimiser keeps per parameter (sgd: 1 with momentum, else 0)
ROW_EXTRAS = {"der": lambda outputs: VALUE_BYTES * outputs}  # DER's memory keeps each example's logits


@dataclass(frozen=True)
class Part:
    what: str  # in words, for the message
    bytes: int
    key: str  # the config key it grows with
    value: object
    batch: bool = False  # a batch's activations, which grow with the model too


def check_fits(cfg, bench, device: torch.device) -> None:
    """Refuse (ConfigError) a run whose estimate exceeds `device`'s memory; warn above what is free."""
    parts = estimate(cfg, bench)
    total = sum(part.bytes for part in parts)
    memory = device_memory(device)
    ordered = sorted(parts, key=lambda part: part.bytes, reverse=True)
    listed = "; ".join(f"{part.what} {format_bytes(part.bytes)}" for part in ordered if part.bytes)
    if total > memory.total:
        # The key to name: a part too large on its own that is not a batch (a batch of a model too
        # wide is the model's fault), else the largest part.
        alone = [part for part in ordered if part.bytes > memory.total and not part.batch]
        top = (alone or ordered)[0]
        raise ConfigError(top.key, top.value, f"the run needs at least {format_bytes(total)} on {device} ({listed}), "
                          f"more than its {format_bytes(memory.total)} ({format_bytes(memory.available)} free); lower "
                          f"it (this is a lower bound: a run near the device's memory may still run out of it)")
    data = parts[0].bytes  # estimate() lists the data first
    if total - data > memory.available:  # the data is there already, and no longer counted as free
        notice.warning("this run needs at least %s on %s (%s), more than the %s free now: it may run out of memory",
                       format_bytes(total), device, listed, format_bytes(memory.available))


def estimate(cfg, bench) -> list[Part]:
    """The run's parts that the device will hold, each with the key it grows with."""
    tasks = bench.tasks
    data = sum(getattr(getattr(t, split), f).nbytes for t in tasks for split in ("train", "val", "test") for f in FIELDS)
    parts = [Part("data", data, "dataset", str(cfg.dataset.name))]
    size = models.size(cfg.model, bench.input_shape, bench.num_outputs, heads=[t.classes for t in tasks])
    if size is not None:
        parts += _model(cfg, size, bench)
    parts += _memories(cfg, bench)
    return parts


def _model(cfg, size: models.Size, bench) -> list[Part]:
    """The weights with their training state, and the larger of a training or evaluation batch."""
    optimizer = cfg.optimizer
    copies = 2 + OPTIMIZER_SLOTS.get(str(optimizer.name), 1 if optimizer.get("momentum") else 0)
    knob = models.size_knob(cfg.model)
    weights = Part(f"model: {size.parameters:,} parameters x{copies} (gradients, {optimizer.name}'s state)",
                   VALUE_BYTES * copies * size.parameters, knob, OmegaConf.select(cfg, knob))
    train, tasks = cfg.train, bench.tasks
    most_train = max(len(t.train) for t in tasks)
    most_split = max(len(getattr(t, split)) for t in tasks for split in ("train", "val", "test"))
    training = min(int(train.batch_size), most_train)
    evaluation = min(int(train.eval_batch_size), most_split)
    batches = [Part(f"a training batch: {training:,} examples' activations", VALUE_BYTES * training * size.activations,
                    "train.batch_size", int(train.batch_size), batch=True),
               Part(f"an evaluation batch of {evaluation:,}", VALUE_BYTES * evaluation * 2 * size.largest,
                    "train.eval_batch_size", int(train.eval_batch_size), batch=True)]
    return [weights, max(batches, key=lambda part: part.bytes)]


def _memories(cfg, bench) -> list[Part]:
    """The reservoir memories, allocated whole when their first examples come."""
    example = bench.tasks[0].train
    row = sum(getattr(example, f)[:1].nbytes for f in FIELDS)  # one example, as stored
    parts = []
    for name in cfg.strategy.plugins:
        node = cfg[name]
        if str(node.get("policy")) == "reservoir" and node.get("memory_size"):
            rows = int(node.memory_size)
            extra = ROW_EXTRAS.get(name, lambda outputs: 0)(bench.num_outputs)
            parts.append(Part(f"{name}'s memory ({rows:,} examples)", rows * (row + extra), f"{name}.memory_size", rows))
    return parts
