"""Bounded example memories shared by the rehearsal strategies (replay, A-GEM, DER, iCaRL, GDumb).

Two policies decide what a memory of `memory_size` examples keeps:

- `reservoir` (Vitter 1985; as in DER, Buzzega et al. 2020): every example of the stream
  has the same chance, memory_size / seen, of being in the memory, whatever its class or
  task. Vectorised: for a chunk of n new items after N seen, item i has global index
  t = N + i; it fills slot t while t < memory_size, else it draws j ~ U{0..t} and
  overwrites slot j when j < memory_size. All draws are made at once and collisions are
  resolved so that the last writer wins, which is exactly what the one-at-a-time
  algorithm does with the same draws (its choices do not depend on the memory's content).
- `class_balanced` (GDumb's greedy balanced sampler, Prabhu et al. 2020, in its final
  state): every class gets the same quota, at most `per_class` each when that is set,
  and at most `memory_size` in all when that is set (water-filling: a class with fewer
  examples than the level keeps them all and leaves the rest to the others). A class
  over its quota keeps a random subset; no per-example Python loop.

A class is (task, label) so that domain-IL's shared labels still count per task; for
split MNIST under class- or task-IL it is simply the digit (`Examples.class_keys`).
Everything is stored as tensors (`state_dict` holds only tensors) so that checkpoints load
with weights_only.
"""

from __future__ import annotations

import math

import torch

from ..checks import Choice, Node
from ..errors import ConfigError
from ..examples import FIELDS, Examples

Policy = Choice("Policy", {"reservoir": "reservoir", "class_balanced": "class_balanced"})


# --- reservoir ---------------------------------------------------------------


def reservoir_draws(seen: int, count: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """For items with global index t = seen .. seen+count-1, a draw j ~ U{0..t} each (int64)."""
    t = seen + torch.arange(count, device=device, dtype=torch.float64)
    u = torch.rand(count, generator=generator, device=device, dtype=torch.float64)
    return (u * (t + 1)).floor().long().minimum(t.long())  # float64: exact well past 2**40 items


def reservoir_assign(seen: int, capacity: int, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(slots, items), one pair per new item: slot `slots[k]` takes new item `items[k]`, or
    keeps what it holds where `items[k]` is -1.

    Item i goes to slot seen+i while the memory is filling, else to its draw when that is
    below the capacity; where several items pick one slot the last of them wins. Every pair
    naming one slot names the same item, so the writes give one result in any order; their
    number is the number of new items, not of slots written, which would take a host-device
    sync to know (DER adds every training batch to its memory)."""
    count = len(draws)
    arange = torch.arange(count, device=draws.device)
    slot = torch.where(seen + arange < capacity, seen + arange, draws)
    keep = slot < capacity
    slots = torch.where(keep, slot, 0)  # an item not kept points at slot 0 and writes back its winner
    winner = torch.full((capacity,), -1, dtype=torch.long, device=draws.device)
    winner.scatter_reduce_(0, slots, torch.where(keep, arange, -1), reduce="amax")
    return slots, winner[slots]


# --- class-balanced ----------------------------------------------------------


def balanced_quota(counts: torch.Tensor, memory_size: int | None, per_class: int | None) -> torch.Tensor:
    """How many examples each class keeps, given how many it has (water-filling).

    With memory_size M: the largest level L with sum(min(count, L)) <= M, and what is left
    of M goes one each to the first classes still above L. Vectorised, without reading a
    value on the host: in ascending order of counts, class k gets the level share_k =
    (M - the counts before it) // (classes from it on) while its count fits under it, and
    the first that does not fit sets L = its share. Classes with no example change nothing."""
    cap = counts.clone() if per_class is None else counts.clamp(max=per_class)
    if memory_size is None or not len(cap):
        return cap
    ordered = torch.sort(cap).values
    left = memory_size - (torch.cumsum(ordered, 0) - ordered)
    share = torch.div(left, torch.arange(len(ordered), 0, -1, device=cap.device), rounding_mode="floor")
    first = (ordered > share).to(torch.uint8).argmax(0, keepdim=True)  # the first class that does not fit
    level = share.index_select(0, first)  # [1]: indexing with a 0-dim tensor would read it on the host
    quota = cap.clamp(max=level)
    above = cap > level
    quota += above & (torch.cumsum(above, 0) <= memory_size - quota.sum())  # the rest, one each, in class order
    return torch.where(cap.sum() <= memory_size, cap, quota)


def balanced_select(keys: torch.Tensor, quota: torch.Tensor, generator: torch.Generator, classes: torch.Tensor,
                    kept: int | None = None) -> torch.Tensor:
    """Indices of a random subset keeping quota[k] examples of class classes[k] (classes sorted;
    a class absent from keys must have quota 0); the result is grouped by class. `kept`, the
    quotas' sum when the caller knows it, saves a host-device sync."""
    n = len(keys)
    random_order = torch.randperm(n, generator=generator, device=keys.device)
    by_class = random_order[torch.sort(keys[random_order], stable=True).indices]
    sorted_keys = keys[by_class]
    position = torch.searchsorted(classes, sorted_keys)  # class index of each sorted example
    starts = torch.searchsorted(sorted_keys, classes)  # first sorted position of each class
    rank = torch.arange(n, device=keys.device) - starts[position]
    chosen = rank < quota[position]
    if kept is None:
        return by_class[chosen]
    return by_class[torch.sort((~chosen).to(torch.uint8), stable=True).indices[:kept]]  # the chosen, in order


def class_balanced(keys: torch.Tensor, generator: torch.Generator, memory_size: int | None, per_class: int | None,
                   num_keys: int | None = None) -> torch.Tensor:
    """Indices of a class-balanced random subset of the examples with these class keys.
    Given `num_keys` (every key is below it) and a memory_size without a per_class bound,
    the same subset without a host-device sync: counts over the whole key space, and the
    number kept is min(memory_size, examples)."""
    if num_keys is None or per_class is not None or memory_size is None:
        classes, counts = torch.unique(keys, return_counts=True)
        return balanced_select(keys, balanced_quota(counts, memory_size, per_class), generator, classes)
    classes = torch.arange(num_keys, device=keys.device)
    ordered = torch.sort(keys).values
    counts = torch.searchsorted(ordered, classes, right=True) - torch.searchsorted(ordered, classes)
    quota = balanced_quota(counts, memory_size, None)
    return balanced_select(keys, quota, generator, classes, kept=min(memory_size, len(keys)))


# --- the memory --------------------------------------------------------------


class Memory:
    """A bounded memory of training examples, optionally with extra per-example tensors
    (e.g. DER's logits), filled by one of the two policies."""

    def __init__(self, policy: str, memory_size: int | None, per_class: int | None = None, num_outputs: int | None = None):
        if policy not in ("reservoir", "class_balanced"):
            raise ValueError(f"unknown memory policy {policy!r}")
        if policy == "reservoir" and memory_size is None:
            raise ValueError("a reservoir needs a memory_size")
        if policy == "class_balanced" and memory_size is None and per_class is None:
            raise ValueError("a class-balanced memory needs a memory_size or per_class")
        self.policy, self.memory_size, self.per_class = str(policy), memory_size, per_class
        self.num_outputs = num_outputs  # set on first use when None
        self.store: dict[str, torch.Tensor] = {}
        self.size = 0
        self.seen = 0  # examples offered so far

    def __len__(self) -> int:
        return self.size

    @property
    def data(self) -> Examples:
        return Examples(*(self.store[f][: self.size] for f in FIELDS))

    def extra(self, name: str) -> torch.Tensor:
        return self.store[name][: self.size]

    def add(self, data: Examples, generator: torch.Generator, num_outputs: int, num_tasks: int | None = None,
            **extra: torch.Tensor) -> None:
        """Offer these examples (with their extra tensors) to the memory; `num_tasks` (more
        than any task id) lets a class-balanced one do it without a host-device sync."""
        self.num_outputs = num_outputs
        incoming = {**{f: getattr(data, f) for f in FIELDS}, **extra}
        if self.policy == "reservoir":
            self._add_reservoir(incoming, len(data), generator)
        else:
            self._add_balanced(incoming, generator, None if num_tasks is None else num_tasks * num_outputs)
        self.seen += len(data)

    def _add_reservoir(self, incoming: dict[str, torch.Tensor], count: int, generator: torch.Generator) -> None:
        capacity = self.memory_size
        if not self.store:
            self.store = {k: v.new_zeros((capacity, *v.shape[1:])) for k, v in incoming.items()}
        device = incoming["y"].device
        slots, items = reservoir_assign(self.seen, capacity, reservoir_draws(self.seen, count, generator, device))
        fresh = items >= 0
        for k, v in incoming.items():
            store = self.store[k]
            kept = fresh.view(-1, *[1] * (v.dim() - 1))
            store.index_copy_(0, slots, torch.where(kept, v.index_select(0, items.clamp(min=0)), store.index_select(0, slots)))
        self.size = min(capacity, self.seen + count)

    def _add_balanced(self, incoming: dict[str, torch.Tensor], generator: torch.Generator, num_keys: int | None) -> None:
        pool = {k: torch.cat([self.store[k][: self.size], v]) if self.store else v for k, v in incoming.items()}
        keys = Examples(*(pool[f] for f in FIELDS)).class_keys(self.num_outputs)
        keep = class_balanced(keys, generator, self.memory_size, self.per_class, num_keys)
        self.store = {k: v[keep] for k, v in pool.items()}
        self.size = len(keep)

    def sample(self, count: int, generator: torch.Generator) -> tuple[Examples, torch.Tensor]:
        """A random batch of up to `count` distinct stored examples, and their indices."""
        index = torch.randperm(self.size, generator=generator, device=self.store["y"].device)[:count]
        return self.data.subset(index), index

    def per_class_counts(self) -> dict[int, int]:
        if not self.size:
            return {}
        return label_counts(self.store["label"][: self.size])

    def state_dict(self) -> dict:
        return {"store": {k: v[: self.size] for k, v in self.store.items()},
                "size": torch.tensor(self.size), "seen": torch.tensor(self.seen)}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.seen = int(state["size"]), int(state["seen"])
        store = dict(state["store"])
        if "digit" in store:  # checkpoints written before the field was renamed
            store["label"] = store.pop("digit")
        if self.policy == "reservoir" and store:  # keep the preallocated capacity
            self.store = {k: v.new_zeros((self.memory_size, *v.shape[1:])) for k, v in store.items()}
            for k, v in store.items():
                self.store[k][: self.size] = v
        else:
            self.store = dict(store)


def label_counts(labels: torch.Tensor) -> dict[int, int]:
    """{source label: how many examples}, for summary.json."""
    values, counts = torch.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist())}


# --- config checks -----------------------------------------------------------


def check_memory(node: Node, policies: tuple[str, ...] = ("reservoir", "class_balanced")) -> None:
    """Check a memory-backed plugin's `policy`, `memory_size` and `per_class` (when it has one)."""
    name, policy = node.node, str(node.policy)
    if policy not in policies:
        raise ConfigError(f"{name}.policy", policy, f"allowed: {', '.join(policies)}")
    node.positive_int("memory_size", allow_none=True, none_means="(no total bound)")
    per_class = getattr(node, "per_class", None)
    if hasattr(node, "per_class"):
        node.positive_int("per_class", allow_none=True, none_means="(no per-class bound)")
    if policy == "reservoir" and node.memory_size is None:
        raise ConfigError(f"{name}.memory_size", None, f"{name}.policy=reservoir needs a memory size (an integer >= 1)")
    if policy == "class_balanced" and node.memory_size is None and per_class is None:
        raise ConfigError(f"{name}.memory_size", None, f"{name}.policy=class_balanced needs {name}.memory_size or {name}.per_class")


class MemoryPlugin:
    """For a plugin whose state is its `Memory`, `self.memory`: the checkpoint's part of it
    (mixed in before `Plugin`, so these replace its no-op methods)."""

    memory: Memory

    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
