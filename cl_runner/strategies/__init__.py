"""Strategies as lists of plugins (see `base.Plugin` for the hooks).

`strategy=<name>` selects `conf/strategy/<name>.yaml`, which names the plugins it is made
of; each plugin reads its own top-level config node (`replay.*`, `ewc.*`). A combination
is just a longer list, e.g. `ewc_replay` is `[ewc, replay]`; a new method is a new plugin
registered in `PLUGINS`. `joint` is not a plugin but a different schedule (one model
trained once on the union of the tasks), handled by `cl_runner.run`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ..errors import ConfigError
from .base import Plugin, TrainContext, TrainSet
from .ewc import EWCPlugin
from .replay import ReplayPlugin

PLUGINS: dict[str, type[Plugin]] = {
    "replay": ReplayPlugin,
    "ewc": EWCPlugin,
}
SCHEDULES = ("sequential", "joint")

__all__ = ["PLUGINS", "Plugin", "TrainContext", "TrainSet", "build_plugins", "validate_strategy"]


def build_plugins(cfg: DictConfig) -> list[Plugin]:
    return [PLUGINS[name](cfg[name]) for name in cfg.strategy.plugins]


def validate_strategy(cfg: DictConfig, num_tasks: int) -> None:
    for name in cfg.strategy.plugins:
        if name not in PLUGINS:
            raise ConfigError("strategy.plugins", list(cfg.strategy.plugins), f"unknown plugin {name!r}; allowed: {', '.join(PLUGINS)}")
        PLUGINS[name].validate(cfg, num_tasks)
    if cfg.strategy.name == "joint":
        shares = cfg.joint.task_shares
        if shares is not None:
            if len(shares) != num_tasks:
                raise ConfigError("joint.task_shares", list(shares), f"expected {num_tasks} shares, one per task")
            if any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 1 for s in shares) or not any(s > 0 for s in shares):
                raise ConfigError("joint.task_shares", list(shares), "expected shares in [0, 1], at least one above 0")
