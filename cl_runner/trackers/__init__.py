"""Experiment trackers: `logger=tensorboard`, `logger=mlflow`, `logger=wandb`, or several at
once (`logger=[tensorboard,mlflow]`); none by default. The CSV files, summary.json and the
figures are written either way; the trackers receive the same numbers as they are written.

`logger` is a config group whose options each fill their own node under `logger.` (Hydra's
"selecting multiple configs from a config group"): `conf/logger/mlflow.yaml` holds
`mlflow: {enabled: true, ...}`. Every tracker's node is always there with its defaults (like
a strategy plugin's), so its keys can be set on any command line; `enabled` says whether it
runs. One
module per tracker holds its config dataclass and its `Tracker` (see `base`), registered in
`TRACKERS`; every module here is imported, so a new tracker is a module and a YAML file.
`session` turns the run's rows into scalars and drives the trackers.
"""

from __future__ import annotations

import functools
from dataclasses import field, make_dataclass

from ..checks import Node
from ..registry import discover
from .base import TRACKERS, Tracker, TrackerError
from .session import Trackers, start

__all__ = ["TRACKERS", "Tracker", "TrackerError", "Trackers", "logger_config", "start"]


@functools.cache
def logger_config() -> type:
    """The dataclass of the `logger` node: one node per registered tracker."""
    for name in TRACKERS:
        TRACKERS[name].config.node = f"logger.{name}"  # the key its checks name in messages
    return make_dataclass("LoggerConfig", [(name, TRACKERS[name].config, field(default_factory=TRACKERS[name].config))
                                           for name in TRACKERS], bases=(Node,))


discover(__name__, __path__)
