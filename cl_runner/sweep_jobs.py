"""A sweep's job folders when the sweep stops early: no job is left `running` that is not.

A sweep ends early when it is interrupted (Ctrl-C, SIGTERM) or its launcher fails under it
(joblib's TerminatedWorkerError: a worker process was killed, and the launcher ended the
others). Its jobs' processes may then end before they could record it, leaving summary.json
at `running`. `settle(sweep, ended)` goes through the sweep's job folders; each whose
summary.json still says `running` is waited for a moment, until its process lets go of its
lock (`.cl-run.lock`, as `cl_runner.rundir` takes it: the kernel lets go of a killed
process's lock) -- one still running keeps its own record -- and then gets the status of
what happened to the sweep: `interrupted`, or `failed` naming the launcher's error.
`kept(sweep, jobs)` says, for the command's last line, which job folders hold finished epochs.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from . import status
from .errors import WriteError
from .records import write_json
from .rundir import LOCK

WAIT = 10.0  # seconds a job's process gets to record its own end before the sweep records it


def settle(sweep: Path, ended: BaseException, wait: float = WAIT) -> list[Path]:
    """Record `ended` in the sweep's jobs left `running` by a process that is gone; return
    the job folders holding finished epochs."""
    jobs = sorted((p for p in Path(sweep).iterdir() if p.is_dir() and (p / status.SUMMARY).is_file()), key=_number)
    deadline = time.monotonic() + wait
    for job in jobs:
        if _status(job) == "running":
            _record_if_gone(job, ended, deadline)
    return [job for job in jobs if not status.untrained(job)]


def _number(path: Path):
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def _status(job: Path) -> str | None:
    try:
        return json.loads((job / status.SUMMARY).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _record_if_gone(job: Path, ended: BaseException, deadline: float) -> None:
    try:
        fd = os.open(job / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a folder made read-only or removed: nothing can be recorded there
        return
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # its process still runs: it may yet record its own end
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)
        if _status(job) == "running":  # it did not: the process ended with the sweep
            summary = json.loads((job / status.SUMMARY).read_text())
            summary.update(_verdict(ended))
            write_json(job / status.SUMMARY, summary, in_place_if_full=True)
        os.unlink(job / LOCK)  # let go as rundir.release does: the file goes with the lock
    except (OSError, ValueError, WriteError):  # the folder itself is the problem
        pass
    finally:
        os.close(fd)


def _verdict(ended: BaseException) -> dict:
    found = status.verdict(ended)
    first = (found["error"].splitlines() or [""])[0].strip()
    how = "the sweep was interrupted" if found["status"] == "interrupted" else "the sweep's launcher failed"
    return {"status": found["status"], "error": f"{first} ({how}; this job's process ended with it)"}


def kept(sweep: Path, jobs: list[Path]) -> str:
    """What the sweep's folder holds, for the command's last line."""
    if not jobs:
        return "no job had finished an epoch; nothing was kept"
    names = ", ".join(job.name for job in jobs)
    resumable = [job.name for job in jobs if (job / status.CHECKPOINT).exists()]
    hint = f"; continue a job with resume={Path(sweep) / resumable[0]}" if resumable else ""
    return f"finished epochs kept in {len(jobs)} job folder(s) of {sweep} ({names}){hint}"
