"""A run's status in summary.json, true however the run ends.

`recorded(out, summary, body, close, tell)` is the one place that decides it. It writes
summary.json with status `running` -- from then on the run has started -- and calls `body()`,
the training and the final outputs. However it leaves `body` -- body returns (`completed`),
SIGINT or SIGTERM arrives at any moment (`interrupted`), or an exception is raised: a
divergence, a failed write, a tracker that could not start, a bug (`failed`, with the error)
-- it calls `close(summary)` (the logs closed, the summary's last fields), rewrites
summary.json with the status, and then calls `tell(summary)` (what may come after the record:
the figures of an unfinished run, the trackers). A full disk with no room for a new copy gets
summary.json rewritten in place. From the moment the way out is known until `tell` returns,
further signals wait (`interrupts.holding`); the first of them is raised then, if the run had
completed, and the exception the run ended with goes on up, so the caller's exit code and
the status agree.

Only SIGKILL, or the machine going down, leaves `running`. `untrained(folder)` tells the
folders of runs that ended, in whatever way, before their first epoch finished: they hold
nothing that cannot be computed again, and a new run may take them over (`cl_runner.rundir`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Callable

from . import interrupts
from .records import write_json

SUMMARY = "summary.json"
TRAIN_LOG = "train_log.csv"
CHECKPOINT = "checkpoint.pt"


def verdict(ended: BaseException | None) -> dict:
    """summary.json's status (and error) for a run that ended with `ended` (None: it completed)."""
    if ended is None:
        return {"status": "completed"}
    if isinstance(ended, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (interrupts.Interrupted)
        return {"status": "interrupted", "error": f"interrupted ({interrupts.describe(ended)})"}
    return {"status": "failed", "error": f"{type(ended).__name__}: {ended}"}


def recorded(out: Path, summary: dict, body: Callable[[], None], close: Callable[[dict], None],
             tell: Callable[[dict], None]) -> dict:
    """Run `body` under a status that is true on every way out (see the module docstring);
    return the summary of a completed run, raise what an unfinished one ended with."""
    path = Path(out) / SUMMARY
    ended = None
    with interrupts.holding() as hold:
        try:
            try:
                write_json(path, {**summary, "status": "running"})
                body()
                hold.start()
            except BaseException as err:  # noqa: BLE001 - every way out is recorded, then raised again
                hold.start()
                ended = err
        except BaseException as err:  # noqa: BLE001 - a signal raised in the instant before the holding began
            ended = err
        summary.update(verdict(ended))
        try:
            _record(path, summary, close, started=ended is None or path.exists())
        finally:
            tell(summary)
    if ended is not None:
        raise ended
    if hold.signals:  # arrived while the completed run was being recorded: the command's, not the run's
        raise interrupts.interrupt(hold.signals[0])
    return summary


def _record(path: Path, summary: dict, close: Callable[[dict], None], started: bool) -> None:
    """close(summary), then summary.json rewritten with it, in place if the disk is full. A run
    whose first summary.json could not be written (no room, a folder it may not write) has no
    record to rewrite: its error goes up as it is."""
    try:
        close(summary)
    finally:
        if started:
            write_json(path, summary, in_place_if_full=True)


def untrained(folder: Path) -> bool:
    """True for a run folder whose run ended before its first epoch finished: summary.json
    says it never completed, no epoch is logged in train_log.csv and there is no checkpoint.
    (The evaluation of the untrained model in metrics.csv is computed again by the next run.)"""
    folder = Path(folder)
    try:
        status = json.loads((folder / SUMMARY).read_text()).get("status")
    except (OSError, ValueError, AttributeError):  # none, or not a summary cl-run wrote
        return False
    if status == "completed" or os.path.lexists(folder / CHECKPOINT):
        return False
    try:
        with open(folder / TRAIN_LOG, newline="") as f:
            return sum(1 for _ in csv.reader(f)) <= 1  # the header alone
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def kept(folder: Path) -> str:
    """What an interrupted command leaves in its run folder, said in its last line."""
    folder = Path(folder)
    try:
        status = json.loads((folder / SUMMARY).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return "before training started; nothing was kept"
    if status == "completed":
        return f"the run had completed; its results are in {folder}"
    if untrained(folder):
        return f"no epoch had finished, so {folder} holds nothing to continue: a new run may use it"
    if os.path.lexists(folder / CHECKPOINT):
        return f"finished epochs kept in {folder}; continue with resume={folder}"
    return f"finished epochs kept in {folder}"
