"""Config nodes that check their own values, and the closed choices they offer.

Every node of the config schema (`train`, `model`, each strategy's `ewc`, `replay`, ...) is a
dataclass deriving from `Node`. Composition already enforces the types and the closed
choices (`Choice` enums); the ranges are declared once, in the node's `check()`, which
`__post_init__` runs when `cl_runner.config.validate` turns the composed node into its
dataclass. A failed check raises `ConfigError` naming the full key (`ewc.alpha`), the value
and what is allowed: one line, exit code 2. Keys that only count with certain values of
the others (`ewc.gamma` with `ewc.mode=online`) are declared in the node's `unused()`.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, ClassVar

from .errors import ConfigError

# The largest count any key takes (epochs, iterations, widths, depths, batch and memory sizes):
# 2^31 - 1, far beyond any run (a model or memory that large is refused by its size first), and
# what keeps a mistyped 2^63 from overflowing the libraries' arithmetic or looping for ever.
MAX_COUNT = 2**31 - 1


class Choice(str, Enum):
    """A closed set of string options; members are named after their values, so a YAML or
    command-line value selects them by name and prints as itself."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def names(cls) -> str:
        return ", ".join(m.value for m in cls)


class Node:
    """Base of the config dataclasses: `node` is the key it lives under (`ewc`, `model`)."""

    node: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError for a value out of range; override in each node."""

    def unused(self) -> dict[str, str]:
        """The keys of this node that its other values make a run ignore, each with what
        would make it count, e.g. {"gamma": "used only with ewc.mode=online"}; override in a
        node whose keys depend on each other. `cl_runner.usage` refuses a key set on the
        command line that is listed here. Default: every key is read."""
        return {}

    def key(self, field: str) -> str:
        return f"{self.node}.{field}" if self.node else field

    def fail(self, field: str, allowed: str, value: Any = ...) -> None:
        raise ConfigError(self.key(field), getattr(self, field) if value is ... else value, allowed)

    def positive_int(self, field: str, allow_none: bool = False, none_means: str = "", describe: str | None = None) -> None:
        check_positive_int(self.key(field), getattr(self, field), allow_none, none_means, describe)

    def number(self, field: str, low: float = 0.0, low_open: bool = False, high: float | None = None,
               describe: str | None = None) -> None:
        check_number(self.key(field), getattr(self, field), low, low_open, high, describe)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(key: str, value: Any, allow_none: bool = False, none_means: str = "",
                       describe: str | None = None) -> None:
    if value is None and allow_none:
        return
    if not is_int(value) or value < 1:
        raise ConfigError(key, value, describe or "expected an integer >= 1" + (f", or null {none_means}" if allow_none else ""))
    check_at_most(key, value)


def check_at_most(key: str, value: int, high: int = MAX_COUNT) -> None:
    """Refuse a count above `high` (by default MAX_COUNT, the bound of every count)."""
    if value > high:
        raise ConfigError(key, value, f"too large: at most {high}" + (" (2^31 - 1)" if high == MAX_COUNT else ""))


def check_number(key: str, value: Any, low: float = 0.0, low_open: bool = False, high: float | None = None,
                 describe: str | None = None) -> None:
    # NaN fails every comparison and would pass the range test below: require finite first.
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if not bad:
        bad = value <= low if low_open else value < low
        bad = bad or (high is not None and value > high)
    if bad:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ConfigError(key, value, describe or f"expected a finite number {bound}" + (f" and <= {high:g}" if high is not None else ""))
