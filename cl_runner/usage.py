"""Settings that take effect: a key set on the command line that the run would not read is refused.

`cl-run replay.share=0.5` without a replay strategy would train naive and ignore the share;
a sweep over it would give identical results that look like a finding. Which keys a run
reads is declared where the parts are declared, and nowhere else:

- a strategy plugin reads its own node, named after it (`PLUGINS`: `replay.*` by the replay
  plugin), so that node counts only when the plugin is in `strategy.plugins`;
- `joint.*` is read by the joint schedule only (`strategy.schedule=joint`);
- a tracker's node `logger.<name>.*` only when that tracker is chosen (`TRACKERS`, `enabled`);
- within a node, keys that count only with certain values of the others (`ewc.gamma` needs
  `ewc.mode=online`, `train.epochs` is not read while `train.iterations` is set): each
  node's own `unused()` (cl_runner/checks.py). A model's keys are its own schema, so another
  model's key is already unknown when the config is composed.

`unused(cfg, overrides)` lists the keys that `overrides` set and `cfg` does not read, each
with what to select instead. `check` (called by the precheck) refuses one with exit code 2
(`UnusedSetting`); in a sweep only a key that no job reads is refused, and each job records
the keys it does not read in its summary.json (`unused_overrides`). Only what was typed is
checked: a preset (`experiment=split_mnist_protocol`) may set keys that some strategies ignore.
"""

from __future__ import annotations

import functools
import itertools
import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from . import overrides as override_syntax
from .checks import Node
from .config import CONF_DIR
from .errors import ConfigError, UserError
from .strategies import PLUGINS
from .trackers import TRACKERS

PRODUCT_LIMIT = 32  # sweep jobs composed at most to find one that reads a key (beyond: the jobs say so)
_deferred: ContextVar[bool] = ContextVar("cl_runner_usage_deferred", default=False)


class UnusedSetting(ConfigError):
    """A key set on the command line that the run would not read: names it and what to select."""

    def __init__(self, key: str, value: str, reason: str):
        super().__init__(key, value, reason)
        UserError.__init__(self, f"invalid config: {key}={value} is {reason}")


def unused(cfg: DictConfig, overrides: list[str]) -> dict[str, str]:
    """{key: why it is not read} for the config keys `overrides` set that `cfg` does not read
    (config group choices such as `strategy=replay`, Hydra's own keys and deletions aside)."""
    found = {}
    for key in set_keys(cfg, overrides):
        why = reason(cfg, key)
        if why is not None:
            found[key] = why
    return found


def set_keys(cfg: DictConfig, overrides: list[str]) -> dict[str, str]:
    """{config key: the value as typed} of the overrides that set a key of `cfg`."""
    keys = {}
    for text, parsed in zip(overrides, override_syntax.parse(overrides)):
        key = parsed.key_or_group
        if parsed.is_delete() or parsed.package is not None or key.split(".")[0] == "hydra" or "/" in key:
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            continue  # a group that is not a key (experiment=ewc)
        if isinstance(parent._get_node(leaf), DictConfig) and not isinstance(parsed.value(), dict):
            continue  # a group's option (strategy=replay, logger=[mlflow,wandb]), not the node's values
        keys[key] = text.partition("=")[2]
    return keys


def reason(cfg: DictConfig, key: str) -> str | None:
    """Why a run of `cfg` does not read `key` ("used only by ..., add ..."), or None if it does."""
    top, _, rest = key.partition(".")
    if top in PLUGINS and top not in cfg.strategy.plugins:
        return f"used only by strategies with the {top} plugin: {_add_plugin(cfg, top)}"
    if top == "joint" and str(cfg.strategy.schedule) != "joint":
        joint = [name for name, (_, schedule) in _strategies().items() if schedule == "joint"]
        return f"used only by joint training: add strategy={joint[0] if joint else 'joint'}"
    tracker, _, leaf = rest.partition(".")
    if top == "logger" and tracker in TRACKERS and leaf != "enabled" and not cfg.logger[tracker].enabled:
        return f"used only with the {tracker} tracker: add logger={tracker}"
    parent_key, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent_key) if parent_key else None
    node_type = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if isinstance(node_type, type) and issubclass(node_type, Node):
        return OmegaConf.to_object(node).unused().get(leaf)
    return None


def _add_plugin(cfg: DictConfig, plugin: str) -> str:
    """What to select to run `plugin` as well: a strategy made of exactly that, or the list."""
    wanted = [*cfg.strategy.plugins, plugin]
    strategies = _strategies()
    exact = [name for name, (plugins, _) in strategies.items() if plugins == wanted]
    exact += [name for name, (plugins, _) in strategies.items() if name not in exact and sorted(plugins) == sorted(wanted)]
    if not exact:
        return f"add strategy.plugins=[{','.join(wanted)}]"
    exact.sort(key=lambda name: name != plugin)  # strategy=der before derpp
    return f"add strategy={exact[0]}" + (f" (or {', '.join(exact[1:])})" if exact[1:] else "")


@functools.cache
def _strategies() -> dict[str, tuple[list[str], str]]:
    """{strategy name: (its plugins, its schedule)}, from conf/strategy/ (a `_global_` file
    such as derpp.yaml holds them under `strategy`)."""
    found = {}
    for path in sorted((CONF_DIR / "strategy").glob("*.yaml")):
        node = OmegaConf.load(path)
        node = node.get("strategy", node)
        found[path.stem] = (list(node.get("plugins", [])), str(node.get("schedule", "sequential")))
    return found


@contextmanager
def deferred():
    """Within this block `check` refuses nothing: the caller decides over several runs (api.sweep)."""
    token = _deferred.set(True)
    try:
        yield
    finally:
        _deferred.reset(token)


def check(first: DictConfig, variants: list[list[str]], compose: Callable[[list[str]], DictConfig]) -> None:
    """Refuse (UnusedSetting) a key the command line sets that no configuration it asks for
    reads. `first` is the config of `variants[0]`, as the precheck composed it; `compose(variant)`
    composes another the same way, called only while a key has found no reader: first for the
    other variants (each value of each sweep once), then for the sweep's remaining combinations
    (a key read only where two swept values meet). Only the overrides that can change whether a
    key is read tell combinations apart (group choices, the key's own node, `strategy.*`,
    `logger.*`; a swept seed cannot); with more than PRODUCT_LIMIT such combinations nothing is
    refused, and the jobs that do not read the key say so in their summary.json."""
    if _deferred.get() or first.get("resume") is not None:  # a resumed run's overrides: resume.prepare
        return
    pending = unused(first, variants[0])
    if not pending:
        return
    keys = [parsed.key_or_group for parsed in override_syntax.parse(variants[0])]
    nodes = {key.split(".")[0] for key in pending} | {"strategy", "logger"}
    matters = [key.split(".")[0] in nodes or key not in set_keys(first, [text]) for key, text in zip(keys, variants[0])]
    options = [list(dict.fromkeys(v[i] for v in variants)) if matters[i] else [text] for i, text in enumerate(variants[0])]
    tried = {tuple(variants[0])}
    projected = [[v[i] if matters[i] else variants[0][i] for i in range(len(keys))] for v in variants]
    combinations = math.prod(len(o) for o in options)
    candidates = projected + ([list(c) for c in itertools.product(*options)] if combinations <= PRODUCT_LIMIT else [])
    for variant in candidates:
        if tuple(variant) in tried:
            continue
        tried.add(tuple(variant))
        cfg = compose(variant)
        for key in [k for k in pending if reason(cfg, k) is None]:
            del pending[key]
        if not pending:
            return
    if combinations <= PRODUCT_LIMIT:
        key, why = next(iter(pending.items()))
        values = dict.fromkeys(v[keys.index(key)].partition("=")[2] for v in variants)
        raise UnusedSetting(key, ",".join(values), why)
