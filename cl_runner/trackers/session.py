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

Interrupts: Ctrl-C or SIGTERM arriving inside a tracker's call waits until the call returns
(`_interrupts_held`): cut short, a library may leave its state broken, e.g. an SQLite
transaction of MLflow's store left open, which locks the store so that the run could not be
recorded as interrupted there. A second signal does not wait.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from collections import defaultdict
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from .. import interrupts
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
            with _interrupts_held():
                started[name] = TRACKERS[name].impl(cfg.logger[name], run)
        except Exception as err:  # noqa: BLE001 - any library's failure: one line, and the others closed
            Trackers(started, 0).finish({"status": "failed"}, folder)
            raise TrackerError(f"logger={name} could not start: {_one_line(err)}") from err
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
                with _interrupts_held():
                    getattr(tracker, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker's trouble must not cost the run
                log.warning("logger=%s failed (%s) and is off for the rest of the run; the CSV files, "
                            "summary.json and figures are not affected", name, _one_line(err))
                del self.active[name]


def _one_line(err: Exception, limit: int = 300) -> str:
    """A library's error, multi-line as it may be (the cause is often not on the first line)."""
    text = " | ".join(line.strip() for line in str(err).splitlines() if line.strip())
    text = f"{type(err).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _interrupts_held():
    """Hold SIGINT and SIGTERM, where a Python handler takes them, until the block ends, then
    hand the first one to that handler; a second one is handed over at once."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    handlers = {sig: handler for sig, handler in handlers.items() if callable(handler)}  # not SIG_IGN, SIG_DFL
    pending = []

    def hold(signum, frame):
        if pending:  # the second: the call may hang (a server that does not answer), so do not wait
            pending.clear()
            handlers[signum](signum, frame)
        pending.append(signum)

    try:
        with interrupts.handlers_set({sig: hold for sig in handlers}):  # the main thread's only
            yield
    finally:
        if pending:
            handlers[pending[0]](pending[0], None)
