"""Weights & Biases (`logger=wandb`): one W&B run per cl-run run, files in `<run folder>/wandb/`.

Mode (`logger.wandb.mode`): `auto` (the default) follows `$WANDB_MODE` when it is set, and is
otherwise `online` when an API key is configured (`$WANDB_API_KEY`, or the `~/.netrc` entry
`wandb login` writes) and `offline` when none is: a run never waits for a login. `online`
without a key is refused before the run starts. An offline run is a folder
`<run folder>/wandb/offline-run-<time>-<id>/`, uploaded later with `wandb sync <that folder>`.

What: the config as the run's config; per epoch the scalars, plotted against `global_epoch`
(W&B's own step only counts calls); at the end the summary metrics in the run summary, the
figures as images, and the exit code (0 completed, 1 failed, 255 interrupted). The run is
named after the run folder; a sweep's runs form one W&B group named after the sweep folder.
Resuming passes the same run id with `resume="allow"` (offline: a second offline folder with
that id, which `wandb sync` adds to the same run).
"""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from ..checks import Choice
from .base import TrackerConfig, TRACKERS, Outcome, RunInfo, Tracker, require

Mode = Choice("WandbMode", {"auto": "auto", "online": "online", "offline": "offline"})
_EXIT_CODES = {"completed": 0, "failed": 1, "interrupted": 255}


@dataclass
class WandbConfig(TrackerConfig):
    project: str = "cl-runner"
    entity: Optional[str] = None  # null: the account's default entity
    mode: Mode = Mode.auto  # auto: $WANDB_MODE, else online with an API key, else offline

    def check_enabled(self) -> None:
        require("wandb", {"wandb": "wandb"})
        if resolve_mode(str(self.mode)) in ("online", "run") and not api_key_configured():
            source = "$WANDB_MODE" if self.mode == Mode.auto else "it"
            self.fail("mode", f"online mode ({source}) needs a W&B API key: run `wandb login` or set WANDB_API_KEY, "
                              "or use logger.wandb.mode=offline", "online")


def resolve_mode(mode: str) -> str:
    """The mode wandb.init gets: `auto` resolved, anything else as it is."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if api_key_configured() else "offline")


def api_key_configured() -> bool:
    """An API key in the environment, or in the netrc file for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


@TRACKERS.register("wandb", WandbConfig)
class WandbTracker(Tracker):
    def __init__(self, cfg, run: RunInfo):
        super().__init__(cfg, run)
        import wandb

        self.wandb = wandb
        sweep = Path(run.sweep) if run.sweep else None
        self.group = run.saved.get("group", f"{sweep.parent.name}/{sweep.name}" if sweep else None)
        self.wb = wandb.init(
            project=cfg.project, entity=cfg.entity, name=run.name, group=self.group, dir=str(run.folder),
            mode=resolve_mode(str(cfg.mode)), id=run.saved.get("id"), resume="allow" if run.saved else None,
            config=run.config, settings=wandb.Settings(console="off", silent=True),
        )
        self.wb.define_metric("global_epoch")
        self.wb.define_metric("*", step_metric="global_epoch")

    def state(self) -> dict:
        return {"id": self.wb.id, "group": self.group}

    def where(self) -> str:
        folder = Path(self.wb.dir).parent
        if self.wb.settings.mode == "offline":
            return f"offline run {self.wb.id} in {folder} (`wandb sync {folder}` uploads it)"
        return f"run {self.wb.id} ({self.wb.url})"

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.wb.log({**scalars, "global_epoch": step})

    def finish(self, outcome: Outcome) -> None:
        self.wb.summary.update(outcome.metrics)
        images = {f"figures/{path.stem}": self.wandb.Image(str(path)) for path in outcome.figures}
        if images:
            self.wb.log({**images, "global_epoch": outcome.step})
        self.wb.finish(exit_code=_EXIT_CODES[outcome.status])
