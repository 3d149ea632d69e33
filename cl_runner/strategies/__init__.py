"""Strategies as lists of plugins (see `base.Plugin` for the hooks).

`strategy=<name>` selects `conf/strategy/<name>.yaml`, which names the plugins it is made of
and its schedule; each plugin reads its own top-level config node (`replay.*`, `ewc.*`). A
combination is just a longer list, e.g. `ewc_replay` is `[ewc, replay]`. `joint` is a
schedule rather than a plugin (one model trained once on the union of the tasks, see
`cl_runner.schedule`).

One module per plugin, holding its config dataclass beside its code and registering both
(`@PLUGINS.register(name, Config)`); every module of this package is imported here, so a
new method is one module and one YAML file. The classic strategies (paper in each
docstring): `cumulative`, `si`, `mas`, `rwalk`, `lwf`, `agem`, `der` (DER and DER++), `icarl`, `gdumb`, plus
`replay` and `ewc`. The rehearsal ones share the bounded memories of `memory.py`, the
regularisation ones the anchors of `anchors.py`. Combinable where the method allows, e.g.
`strategy.plugins=[si,replay]` or `[lwf,der]`; `gdumb` replaces the training set and
re-initialises the model, so it is meant to be used alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import Choice, Node
from ..registry import discover
from .base import PLUGINS, Plugin

Schedule = Choice("Schedule", {"sequential": "sequential", "joint": "joint"})

__all__ = ["PLUGINS", "Plugin", "Schedule", "StrategyConfig", "build_plugins"]


@dataclass
class StrategyConfig(Node):
    name: str = "naive"
    # The parts a strategy is built from, in hook order.
    plugins: list[str] = field(default_factory=list)
    # sequential: one stage per task; joint: one stage on the union of the tasks.
    schedule: Schedule = Schedule.sequential

    def check(self) -> None:
        for name in self.plugins:
            if name not in PLUGINS:
                self.fail("plugins", f"unknown plugin {name!r}; allowed: {', '.join(PLUGINS.names())}", list(self.plugins))
        twice = sorted({n for n in self.plugins if self.plugins.count(n) > 1})
        if twice:
            self.fail("plugins", f"{', '.join(twice)} listed twice; each plugin at most once", list(self.plugins))


def build_plugins(cfg) -> list[Plugin]:
    """The plugins of `cfg.strategy.plugins`, each given its own config node."""
    return [PLUGINS[name].impl(cfg[name]) for name in cfg.strategy.plugins]


discover(__name__, __path__)
