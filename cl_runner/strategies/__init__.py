"""Strategies as lists of plugins (see `base.Plugin` for the hooks).

`strategy=<name>` selects `conf/strategy/<name>.yaml`, which names the plugins it is made
of; each plugin reads its own top-level config node (`replay.*`, `ewc.*`). A combination
is just a longer list, e.g. `ewc_replay` is `[ewc, replay]`; a new method is a new plugin
registered in `PLUGINS`. `joint` is not a plugin but a different schedule (one model
trained once on the union of the tasks), handled by `cl_runner.run`.

The classic strategies, one module each (paper in its docstring): `cumulative`, `si`,
`lwf`, `agem`, `der` (DER and DER++), `icarl`, `gdumb`, plus `replay` and `ewc`. The
rehearsal ones share the bounded memories of `memory.py` (reservoir or class-balanced).
Combinable where the method allows, e.g. `strategy.plugins=[si,replay]` or
`[lwf,der]`; `gdumb` replaces the training set and re-initialises the model, so it is
meant to be used alone.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ..errors import ConfigError
from .base import Plugin, TrainContext, TrainSet
from .agem import AGEMPlugin
from .cumulative import CumulativePlugin
from .der import DERPlugin
from .ewc import EWCPlugin
from .gdumb import GDumbPlugin
from .icarl import ICaRLPlugin
from .lwf import LwFPlugin
from .replay import ReplayPlugin
from .si import SIPlugin

PLUGINS: dict[str, type[Plugin]] = {
    "replay": ReplayPlugin,
    "ewc": EWCPlugin,
    "cumulative": CumulativePlugin,
    "si": SIPlugin,
    "lwf": LwFPlugin,
    "agem": AGEMPlugin,
    "der": DERPlugin,
    "icarl": ICaRLPlugin,
    "gdumb": GDumbPlugin,
}
SCHEDULES = ("sequential", "joint")

__all__ = ["PLUGINS", "Plugin", "TrainContext", "TrainSet", "build_plugins", "validate_strategy"]


def build_plugins(cfg: DictConfig) -> list[Plugin]:
    return [PLUGINS[name](cfg[name]) for name in cfg.strategy.plugins]


def validate_strategy(cfg: DictConfig, num_tasks: int) -> None:
    for name in cfg.strategy.plugins:
        if name not in PLUGINS:
            raise ConfigError("strategy.plugins", list(cfg.strategy.plugins), f"unknown plugin {name!r}; allowed: {', '.join(PLUGINS)}")
    # Every node is checked, used or not: `ewc.alpha=-1` is a mistake even under strategy=naive.
    for plugin in PLUGINS.values():
        plugin.validate(cfg, num_tasks)
    shares = cfg.joint.task_shares
    if shares is not None:
        if len(shares) != num_tasks:
            raise ConfigError("joint.task_shares", list(shares), f"expected {num_tasks} shares, one per task")
        if any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 1 for s in shares) or not any(s > 0 for s in shares):
            raise ConfigError("joint.task_shares", list(shares), "expected shares in [0, 1], at least one above 0")
