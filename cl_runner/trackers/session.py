"""The trackers of one run: started together, told each epoch's rows, finished together.

The run calls three things (see `cl_runner.run`): `start(cfg, out, resumed_at)` once the
resolved config.yaml is written; `Trackers.epoch(train_row, eval_rows)`, through
`RunLogs.epoch`, once an epoch's rows are on disk (the untrained model's evaluation too,
with no training row); `Trackers.finish(summary, out)` once summary.json and the figures
are written, whatever the status.

The rows become scalars named by what they are, grouped so that each task's curves sit
together: `train/<column>` for each loss term of train_log.csv (and `train/seconds`),
`<split>/<loss|acc>/task_<j>` for metrics.csv (`val/acc/task_0`, `test/loss/task_1`), all
with the run's global epoch as the step (0 = the untrained model); at the end
`summary/<metric>` from summary.json.

Failures: a tracker that cannot start stops the run before training (TrackerError: one line,
exit code 2; summary.json says failed). A tracker that fails later is switched off with one
warning line and the run goes on: the CSV files, summary.json and figures never depend on a
tracker. What `start` needs to reopen each tracker run on resume is kept in trackers.json.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from ..records import write_json
from .base import SUMMARY_METRICS, TRACKERS, Outcome, RunInfo, Tracker, TrackerError

log = logging.getLogger(__name__)

STATE = "trackers.json"
FIGURES = ("curves.png", "accuracy_matrix.png")
_INDEX_COLUMNS = ("train_task", "epoch", "global_epoch")


def start(cfg, out: Path, resumed_at: int | None = None) -> Trackers:
    """Open a tracker run for each tracker in `cfg.logger` (reopen them when `resumed_at`,
    the last global epoch kept, is given); raise TrackerError if one cannot start."""
    names = [name for name in TRACKERS if cfg.logger[name].enabled]
    if not names:
        return Trackers({}, 0)
    folder = Path(out).resolve()
    saved = json.loads((folder / STATE).read_text()) if resumed_at is not None and (folder / STATE).is_file() else {}
    sweep, job = (saved.get("sweep"), saved.get("job")) if saved else _sweep()
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    started: dict[str, Tracker] = {}
    for name in names:
        run = RunInfo(folder, f"{folder.parent.name}/{folder.name}", config, sweep, job, resumed_at, saved.get(name, {}))
        try:
            started[name] = TRACKERS[name].impl(cfg.logger[name], run)
        except Exception as err:  # noqa: BLE001 - any library's failure: one line, and the others closed
            Trackers(started, 0).finish({"status": "failed"}, folder)
            first = (str(err).strip().splitlines() or [""])[0]
            raise TrackerError(f"logger={name} could not start: {type(err).__name__}: {first}") from err
    write_json(folder / STATE, {"sweep": sweep, "job": job, **{name: t.state() for name, t in started.items()}})
    for name, tracker in started.items():
        log.info("logger=%s: %s", name, tracker.where())
    return Trackers(started, resumed_at or 0)


def _sweep() -> tuple[str | None, int | None]:
    """The sweep folder and job number when this run is a job of a Hydra multirun."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None, None
    hydra = HydraConfig.get()
    return str(Path(hydra.sweep.dir).resolve()), int(hydra.job.num)


def scalars_by_step(train_row: dict | None, eval_rows: list[dict]) -> dict[int, dict[str, float]]:
    """An epoch's CSV rows as {global epoch: {tag: value}}."""
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    if train_row is not None:
        steps[int(train_row["global_epoch"])].update(
            {f"train/{column}": float(value) for column, value in train_row.items() if column not in _INDEX_COLUMNS})
    for row in eval_rows:
        for measure in ("loss", "acc"):
            steps[int(row["global_epoch"])][f"{row['split']}/{measure}/task_{row['eval_task']}"] = float(row[measure])
    return dict(steps)


class Trackers:
    """The started trackers of a run; a tracker that raises is dropped with a warning."""

    def __init__(self, active: dict[str, Tracker], step: int):
        self.active = active
        self.step = step  # the last global epoch logged

    def epoch(self, train_row: dict | None, eval_rows: list[dict]) -> None:
        if not self.active:
            return
        for step, scalars in sorted(scalars_by_step(train_row, eval_rows).items()):
            self.step = max(self.step, step)
            self._each("log", step, scalars)

    def finish(self, summary: dict, out: Path) -> None:
        metrics = {f"summary/{name}": float(summary[name]) for name in SUMMARY_METRICS
                   if isinstance(summary.get(name), (int, float))}
        figures = [Path(out) / name for name in FIGURES if (Path(out) / name).is_file()]
        self._each("finish", Outcome(summary["status"], self.step, metrics, figures, summary))
        self.active = {}

    def _each(self, method: str, *args) -> None:
        for name, tracker in list(self.active.items()):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker's trouble must not cost the run
                first = (str(err).strip().splitlines() or [""])[0]
                log.warning("logger=%s failed (%s: %s) and is off for the rest of the run; the CSV files, "
                            "summary.json and figures are not affected", name, type(err).__name__, first)
                del self.active[name]
