"""Where a run's time goes: seconds per phase, from the `cl-run` process's start to its end.

The phases are those `bench/startup.py` compares with a plain PyTorch script: `import`
(Python modules), `config` (composing and checking the command line, claiming the folder),
`data` (reading the data set onto the device), `model` (building the model and optimisers,
with the modules torch loads lazily for them), `training` (the epochs and the strategies'
end-of-task work, such as EWC's Fisher), `evaluation`, `outputs` (logs, checkpoints,
summary, figures). `config` is what is left of the time between the process start and the
start of the run once imports are taken out. The CLI writes `summary()` as the last line of
cl-run.log.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

PHASES = ("import", "config", "data", "model", "training", "evaluation", "outputs")
STARTED = time.perf_counter()  # when the CLI first imported this module: the process's start, give or take
_spent: dict[str, float] = defaultdict(float)
_run_started: float | None = None
_counted = 0.0  # seconds counted by all phases so far: what an outer phase leaves to inner ones


@contextmanager
def phase(name: str):
    """Count the time inside the block as `name` (nested blocks count only as the inner one)."""
    global _counted
    started, counted_before = time.perf_counter(), _counted
    try:
        yield
    finally:
        own = time.perf_counter() - started - (_counted - counted_before)
        _spent[name] += own
        _counted += own


def new_job() -> None:
    """A sweep's next job in the same process starts its own count (the first keeps the
    process's start, imports included)."""
    global STARTED, _run_started
    if _run_started is not None:
        STARTED, _run_started = time.perf_counter(), None
        _spent.clear()


def run_started() -> None:
    """The run itself begins: what came before that, less imports, was `config`."""
    global _run_started
    if _run_started is None:
        _run_started = time.perf_counter()


def seconds() -> dict[str, float]:
    """Seconds per phase so far, and `total` since the process started."""
    now = time.perf_counter()
    spent = dict(_spent)
    before_run = (_run_started or now) - STARTED
    spent["config"] = spent.get("config", 0.0) + max(0.0, before_run - spent.get("import", 0.0))
    return {**{name: round(spent.get(name, 0.0), 3) for name in PHASES}, "total": round(now - STARTED, 3)}


def summary() -> str:
    """One line: `time: import 2.61 s, config 0.40 s, ..., total 8.05 s`."""
    return "time: " + ", ".join(f"{name} {value:.2f} s" for name, value in seconds().items())
