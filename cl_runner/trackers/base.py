"""What an experiment tracker implements, and the table of trackers (`logger=<name>`).

A tracker module registers its class with the dataclass of its config node (a
`TrackerConfig`), which lives under `logger.<name>` (`logger.mlflow.experiment`); choosing the
tracker (`logger=mlflow`) sets its `enabled`:

    @TRACKERS.register("mlflow", MLflowConfig)
    class MLflowTracker(Tracker): ...

A tracker is one run in that tracker's world: `__init__` opens it (or reopens it when the
cl-run run is resumed, from the `state()` it saved), `log` receives one step's scalars,
`finish` the outcome (status, summary metrics, figures) and closes it. The scalars are
already named and grouped (`cl_runner.trackers.session` turns the CSV rows into them), so
a tracker only speaks its library. An enabled tracker's config node checks, cheaply and
before anything runs, that the packages it needs are importable (`require`), so a missing
one is one line and exit code 2.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import Node
from ..errors import EXIT_CONFIG, UserError
from ..registry import Registry

TRACKERS = Registry("experiment tracker")

# summary.json's metrics, logged at the end under these tags (where the run defines them).
SUMMARY_METRICS = ("average_accuracy", "forgetting", "backward_transfer", "forward_transfer")
SUMMARY_TAGS = tuple(f"summary/{name}" for name in SUMMARY_METRICS)


class TrackerError(UserError):
    """A tracker that is not installed or cannot start: one line, exit code 2, nothing trained."""

    exit_code = EXIT_CONFIG


def require(tracker: str, packages: dict[str, str]) -> None:
    """Raise TrackerError naming what to install when a module of `packages` (module -> the
    pip package that provides it) cannot be imported."""
    missing = [pip for module, pip in packages.items() if not _importable(module)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise TrackerError(f"logger={tracker} needs {', '.join(missing)}, which {verb} not installed: "
                           f'pip install "cl-runner[{tracker}]" (or pip install {" ".join(missing)})')


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails to import, or a module without a spec
        return False


@dataclass
class TrackerConfig(Node):
    """Base of a tracker's config node; its checks run only when it is chosen."""

    enabled: bool = False  # true when chosen: logger=<name>, or one of a list logger=[...]

    def check(self) -> None:
        if self.enabled:
            self.check_enabled()

    def check_enabled(self) -> None:
        """Raise TrackerError (or ConfigError) where the tracker could not start: cheap checks only."""


def flat_config(config: dict) -> dict:
    """{"train": {"lr": 0.001}} -> {"train.lr": 0.001}: the form hyperparameter tables take;
    lists stay values."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in flat_config(value).items()})
        else:
            flat[str(key)] = value
    return flat


@dataclass(frozen=True)
class RunInfo:
    """The cl-run run a tracker run stands for."""

    folder: Path  # the run folder, absolute
    name: str  # the tracker run's name: the run folder's parent and name, e.g. "2026-11-24/17-40-12"
    config: dict  # the resolved config, nested (what the run used, as in config.yaml)
    sweep: str | None = None  # the sweep folder, absolute, when the run is a job of a Hydra multirun
    job: int | None = None  # its job number (hydra.job.num)
    resumed_at: int | None = None  # resuming: the last global epoch kept; None for a new run
    saved: dict = field(default_factory=dict)  # this tracker's state() from trackers.json (resuming)


@dataclass(frozen=True)
class Outcome:
    """How the run ended, for `Tracker.finish`."""

    status: str  # completed | failed | interrupted (summary.json's status)
    step: int  # the last global epoch logged
    metrics: dict[str, float]  # summary/<name> -> value: average accuracy, forgetting, BWT, FWT where defined
    figures: list[Path]  # the PNGs the run drew
    summary: dict  # summary.json as written


class Tracker:
    """Base class of a tracker run; see the module docstring for the life cycle."""

    def __init__(self, cfg, run: RunInfo):
        self.cfg, self.run = cfg, run

    def state(self) -> dict:
        """What reopening this tracker run needs (kept in the run folder's trackers.json)."""
        return {}

    def log(self, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, outcome: Outcome) -> None:
        raise NotImplementedError

    def where(self) -> str:
        """Where its data goes, for the run's log."""
        return ""
