"""A run's status is true however it ends: SIGINT and SIGTERM at every moment of a run.

`cl_runner.status` decides summary.json's final status in one place. Here it is attacked:

- in this process, a signal at the N-th call of the run's own code (a profiler hook counts the
  calls of the lifecycle's modules and sends the signal to this process), N spread over the
  whole of a new run, of a resumed one, and over the last task's checkpoint and final
  outputs: afterwards summary.json says `interrupted` (or `completed`, with every result
  whole, when the signal came as the record was written), never `running`; a folder without
  summary.json holds none of the run's files; no temporary file is left; and continuing
  (resume from the checkpoint, or the same run again where nothing was finished) gives
  metrics.csv byte for byte as an uninterrupted run;
- the decision itself: every way out of `status.recorded`, a second signal while the first
  is recorded, a full disk, and the holding of signals (`interrupts.holding`);
- through the real command line, on real MNIST: SIGINT and SIGTERM at moments spread over
  start-up, over a resume's start-up, and around the final checkpoint (exit 130, one line,
  a true status), and SIGKILL before the first epoch ends (the folder is used again).

`COUNTS` adds up what was tried (faults, survived with nothing lost, statuses read); the
last test prints it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from cl_runner import interrupts, status
from cl_runner.errors import WriteError
from cl_runner.rundir import RESULT_FILES

from .conftest import compose_cfg, interrupted_at

TINY = ["data.verify=false", "train.iterations=3", "train.progress=false", "dataset.tasks=[[0,1],[2,3]]", "device=cpu",
        "strategy=ewc_replay", "ewc.alpha=100"]
# The modules whose calls mark the moments of a run (not the per-batch training code).
MOMENT_MODULES = {"cl_runner.run", "cl_runner.status", "cl_runner.outputs", "cl_runner.records", "cl_runner.checkpoint",
                  "cl_runner.continuation", "cl_runner.trackers.session", "cl_runner.config", "cl_runner.plots",
                  "cl_runner.metrics", "cl_runner.diagnose", "cl_runner.run_info", "cl_runner.interrupts",
                  "cl_runner.benchmarks.build", "cl_runner.models", "cl_runner.schedule"}
COUNTS: Counter = Counter()


class Moments:
    """Counts the calls of the functions (and methods) defined in MOMENT_MODULES, wherever they
    are called from; `at`: send `signum` to this process at that call. Installed by wrapping
    each such function in every cl_runner module that holds it (`from x import f` too)."""

    def __init__(self, signum: int | None = None, at: int | None = None):
        self.signum, self.at, self.count, self.fired = signum, at, 0, False
        self.calls: dict[str, list[int]] = {}  # function's qualified name -> the counts at its calls

    def tick(self) -> None:
        self.count += 1
        if self.count == self.at:
            self.fired = True
            os.kill(os.getpid(), self.signum)

    def __enter__(self) -> Moments:
        self.undo = []
        targets = {}
        for name in MOMENT_MODULES:
            module = importlib.import_module(name)
            for attr, value in vars(module).items():
                if inspect.isfunction(value) and value.__module__ == name:
                    targets[value] = self._wrap(value)
                elif inspect.isclass(value) and value.__module__ == name:
                    for key, method in vars(value).items():
                        if inspect.isfunction(method):
                            self._set(value, key, self._wrap(method))
        for module in [m for n, m in sys.modules.items() if n.startswith("cl_runner") and m is not None]:
            for attr, value in list(vars(module).items()):
                if inspect.isfunction(value) and value in targets:
                    self._set(module, attr, targets[value])
        return self

    def _wrap(self, function):
        name = function.__qualname__

        @functools.wraps(function)
        def counted(*args, **kwargs):
            self.tick()
            self.calls.setdefault(name, []).append(self.count)
            return function(*args, **kwargs)
        return counted

    def _set(self, owner, attr: str, value) -> None:
        self.undo.append((owner, attr, getattr(owner, attr) if not inspect.isclass(owner) else vars(owner)[attr]))
        setattr(owner, attr, value)

    def __exit__(self, *exc) -> None:
        for owner, attr, value in reversed(self.undo):
            setattr(owner, attr, value)


@pytest.fixture(autouse=True)
def sigterm_raises():
    """SIGTERM raises Interrupted in this process, as cl-run's first line makes it."""
    previous = signal.signal(signal.SIGTERM, interrupts.raise_interrupted)
    yield
    signal.signal(signal.SIGTERM, previous)


def _run(tiny_mnist, folder: Path, *extra: str) -> dict:
    from cl_runner.run import run

    return run(compose_cfg([*TINY, f"data.root={tiny_mnist}", *extra]), folder)


def _temporary(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


def _whole_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")


def check_true_status(folder: Path, signal_name: str, earlier: str | None = None) -> str:
    """What an interrupted run left says what happened; returns its status ('' when none).
    `earlier`: the interruption a resumed folder recorded before (still there when the
    signal came before the resume rewrote summary.json)."""
    assert not _temporary(folder), _temporary(folder)
    if not (folder / "summary.json").exists():  # the run had not started: none of its files
        assert [name for name in RESULT_FILES if (folder / name).exists()] == []
        return ""
    summary = json.loads((folder / "summary.json").read_text())
    COUNTS["statuses checked"] += 1
    assert summary["status"] in ("interrupted", "completed"), summary
    if summary["status"] == "interrupted":
        assert summary["error"] in (f"interrupted ({signal_name})", earlier)
    else:  # the signal came as the completed run was recorded: every result is there, whole
        assert len(summary["accuracy_matrix"]) == 2 and all(len(row) == 2 for row in summary["accuracy_matrix"])
        assert (folder / "accuracy_matrix.csv").exists()
        assert all(_whole_png(folder / name) for name in ("curves.png", "accuracy_matrix.png"))
    return summary["status"]


def continue_run(tiny_mnist, folder: Path, reference: bytes) -> None:
    """Resume from the checkpoint, or where no task finished run again: the same numbers."""
    if (folder / "metrics.csv").exists():  # the rows kept are whole, and those of an uninterrupted run
        assert reference.startswith((folder / "metrics.csv").read_bytes())
    started = (folder / "summary.json").exists()
    if not started or json.loads((folder / "summary.json").read_text())["status"] != "completed":
        if (folder / "checkpoint.pt").exists():
            _run(tiny_mnist, folder / "ignored", f"resume={folder}")
        else:  # no task finished: the run again (cl-run takes such a folder over when no epoch finished)
            _run(tiny_mnist, folder)
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
    assert (folder / "metrics.csv").read_bytes() == reference
    COUNTS["survived with nothing lost"] += 1


@pytest.fixture(scope="module")
def reference(tiny_mnist, tmp_path_factory) -> tuple[bytes, Moments]:
    """An uninterrupted run's metrics.csv, and its counted calls."""
    folder = tmp_path_factory.mktemp("reference") / "run"
    with Moments() as moments:
        _run(tiny_mnist, folder)
    return (folder / "metrics.csv").read_bytes(), moments


def _spread(first: int, last: int, count: int) -> set[int]:
    return {round(first + (last - first) * i / (count - 1)) for i in range(count)}


def _interrupt_at(tiny_mnist, folder: Path, sig: int, at: int, *extra: str) -> None:
    """The run, with `sig` sent at its `at`-th counted call: it ends in KeyboardInterrupt."""
    COUNTS["faults tried"] += 1
    with pytest.raises(KeyboardInterrupt), Moments(sig, at) as moments:
        _run(tiny_mnist, folder, *extra)
    assert moments.fired


def _attack(tiny_mnist, tmp_path: Path, moments: list[int], expected: bytes, template: Path | None = None) -> Counter:
    """A signal at each of `moments` (SIGINT and SIGTERM in turn) of a new run, or of a
    resume of a copy of `template`; each folder checked, then continued. The statuses found."""
    found = Counter()
    for i, at in enumerate(sorted(moments)):
        sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
        folder = tmp_path / f"at-{at}"
        if template is None:
            _interrupt_at(tiny_mnist, folder, sig, at)
        else:
            shutil.copytree(template, folder)
            _interrupt_at(tiny_mnist, folder / "ignored", sig, at, f"resume={folder}")
        name = "KeyboardInterrupt" if sig == signal.SIGINT else "SIGTERM"
        # A resumed folder says what its first run left until the resume rewrites summary.json.
        found[check_true_status(folder, name, earlier="interrupted (KeyboardInterrupt)" if template else None)] += 1
        if (folder / "summary.json").exists():  # else nothing was written: nothing to continue
            continue_run(tiny_mnist, folder, expected)
    return found


@pytest.mark.slow
def test_a_signal_at_any_moment_of_a_run_leaves_a_true_status(tiny_mnist, tmp_path, reference):
    """Every call from the first to the end of the first epoch's rows, then moments spread to the end."""
    expected, calls = reference
    first_epoch = calls.calls["RunLogs.epoch"][1]  # [0] is the untrained model's evaluation
    found = _attack(tiny_mnist, tmp_path, set(range(1, first_epoch + 4)) | _spread(first_epoch + 4, calls.count, 8),
                    expected)
    assert found[""] and found["interrupted"] and set(found) <= {"", "interrupted", "completed"}, found


@pytest.fixture(scope="module")
def interrupted_folder(tiny_mnist, tmp_path_factory) -> Path:
    """A run interrupted when task 1 began (its checkpoint after task 0)."""
    import cl_runner.run as run_module

    folder = tmp_path_factory.mktemp("interrupted") / "run"
    real = run_module.train_epoch
    run_module.train_epoch = interrupted_at(task=1, epoch=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_mnist, folder)
    finally:
        run_module.train_epoch = real
    return folder


@pytest.mark.slow
def test_a_signal_at_any_moment_of_a_resume_leaves_a_true_status(tiny_mnist, tmp_path, reference, interrupted_folder):
    """Every call of the resume up to its first epoch's rows, then moments spread to the end."""
    expected, _ = reference
    probe = tmp_path / "probe"
    shutil.copytree(interrupted_folder, probe)
    with Moments() as calls:
        _run(tiny_mnist, tmp_path / "ignored", f"resume={probe}")
    first_epoch = calls.calls["RunLogs.epoch"][0]
    found = _attack(tiny_mnist, tmp_path, set(range(1, first_epoch + 4)) | _spread(first_epoch + 4, calls.count, 6),
                    expected, template=interrupted_folder)
    assert "" not in found and found["interrupted"], found


@pytest.mark.slow
def test_a_signal_around_the_last_checkpoint_and_the_final_outputs(tiny_mnist, tmp_path, reference):
    """Every call of the last task's checkpoint and of the record at the end, moments between."""
    expected, calls = reference
    last_save, record = calls.calls["save"][-1], calls.calls["Hold.start"][-1]
    moments = set(range(last_save - 1, last_save + 5)) | _spread(last_save + 5, record - 3, 6) | \
        set(range(record - 3, calls.count + 1))
    found = _attack(tiny_mnist, tmp_path, moments, expected)
    assert found["interrupted"] and found["completed"] and set(found) <= {"interrupted", "completed"}, found
