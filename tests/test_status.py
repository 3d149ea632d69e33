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


# --- the decision itself ----------------------------------------------------------------------


def _recorded(tmp_path: Path, body, close=lambda s: None, tell=lambda s: None) -> dict:
    return status.recorded(tmp_path, {"status": "running", "tasks": ["a"]}, body, close, tell)


def _status(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_every_way_out_of_a_run_is_recorded(tmp_path):
    from cl_runner.run import Diverged

    assert _recorded(tmp_path, lambda: None)["status"] == "completed" and _status(tmp_path)["status"] == "completed"
    for raised, expected in ((KeyboardInterrupt(), ("interrupted", "interrupted (KeyboardInterrupt)")),
                             (interrupts.Interrupted("SIGTERM"), ("interrupted", "interrupted (SIGTERM)")),
                             (Diverged("loss not finite"), ("failed", "Diverged: loss not finite")),
                             (WriteError(tmp_path / "x", OSError(28, "No space left on device")),
                              ("failed", f"WriteError: results could not be written: {tmp_path / 'x'}: No space left on device")),
                             (ZeroDivisionError("a bug"), ("failed", "ZeroDivisionError: a bug"))):
        def body(raised=raised):
            assert _status(tmp_path)["status"] == "running"  # written first
            raise raised
        told = []
        with pytest.raises(type(raised)):
            _recorded(tmp_path, body, tell=told.append)
        assert (_status(tmp_path)["status"], _status(tmp_path)["error"]) == expected
        assert told and told[0]["status"] == expected[0]  # the trackers hear the same


def test_a_second_signal_never_cuts_the_record_short(tmp_path):
    def close(summary):  # Ctrl-C twice more while the first is being recorded
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
        summary["closed"] = True

    def body():
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(interrupts.Interrupted):
        _recorded(tmp_path, body, close=close)
    assert _status(tmp_path)["status"] == "interrupted" and _status(tmp_path)["closed"] is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers as they were


def test_a_signal_while_a_completed_run_is_recorded_comes_after_the_record(tmp_path):
    told = []
    with pytest.raises(KeyboardInterrupt):
        _recorded(tmp_path, lambda: None, close=lambda s: os.kill(os.getpid(), signal.SIGINT), tell=told.append)
    assert _status(tmp_path)["status"] == "completed" and told  # the run was done; the command is interrupted


def test_a_full_disk_gets_the_status_in_place(tmp_path, monkeypatch):
    from cl_runner import records

    real = records.replaced

    def body():
        monkeypatch.setattr(records.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _recorded(tmp_path, body)
    assert records.replaced is real and _status(tmp_path)["status"] == "interrupted"
    assert not _temporary(tmp_path)


def test_a_run_whose_first_record_cannot_be_written_raises_its_error(tmp_path, monkeypatch):
    from cl_runner import records

    monkeypatch.setattr(records.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(WriteError, match="No space left"):
        _recorded(tmp_path, lambda: None)
    assert not (tmp_path / "summary.json").exists() and not _temporary(tmp_path)


def test_holding_keeps_later_signals_and_leaves_an_ignored_one_ignored():
    with interrupts.holding() as hold:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        os.kill(os.getpid(), signal.SIGTERM)  # held: the first one's handling is under way
        for _ in range(1000):
            pass
        assert hold.signals == [signal.SIGTERM]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.holding():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_untrained_tells_a_folder_with_no_finished_epoch(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert not status.untrained(folder)  # no summary.json: not a run's folder
    (folder / "summary.json").write_text('{"status": "running"}')
    (folder / "train_log.csv").write_text("train_task,epoch,global_epoch,loss,ce,seconds\n")
    assert status.untrained(folder)
    (folder / "train_log.csv").write_text("train_task,epoch,global_epoch,loss,ce,seconds\n0,1,1,0.5,0.5,0.1\n")
    assert not status.untrained(folder)
    (folder / "train_log.csv").unlink()
    assert status.untrained(folder)
    (folder / "checkpoint.pt").write_bytes(b"")
    assert not status.untrained(folder)
    (folder / "checkpoint.pt").unlink()
    (folder / "summary.json").write_text('{"status": "completed"}')
    assert not status.untrained(folder)


# --- through the command line, on real MNIST ------------------------------------------------------

CLI_RUN = ["dataset.tasks=[[0,1],[2,3]]", "train.epochs=1", "model=mlp64", "strategy=ewc_replay", "ewc.alpha=100",
           "device=cpu", "train.progress=false", "data.download=false"]


def _signal_at(args: list[str], out: Path, anchor, delay: float, sig: int):
    """cl-run `args`, sent `sig` `delay` seconds after `anchor(proc)` first holds; its result."""
    import time

    from .test_faults import finish, start, wait_for

    proc = start(args)
    wait_for(proc, lambda: anchor(proc), "the moment's anchor")
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    return finish(proc)


def _check_cli(result, out: Path, sig: int, reference: Path) -> str:
    """One line, exit 130 (0 if the run ended first), and a status that says what happened."""
    from .test_robustness import one_line

    COUNTS["faults tried"] += 1
    if result.returncode == 0:  # the signal came after the run had ended
        assert _status(out)["status"] == "completed"
        COUNTS["statuses checked"] += 1
        return "completed"
    assert result.returncode == 130, result.stderr
    resuming = [line for line in result.stderr.splitlines() if line.startswith("cl-run: resuming ")]
    line = one_line("\n".join(line for line in result.stderr.splitlines() if line not in resuming))
    assert len(resuming) <= 1
    name = "SIGTERM" if sig == signal.SIGTERM else "KeyboardInterrupt"
    assert line.startswith(f"cl-run: interrupted ({name})"), line
    if not out.exists():
        assert "nothing was kept" in line, line
        return ""
    found = check_true_status(out, name, earlier="interrupted (KeyboardInterrupt)")
    assert found, "a run folder left without summary.json"
    if (out / "metrics.csv").exists():  # whole rows, those of an uninterrupted run
        assert (reference / "metrics.csv").read_bytes().startswith((out / "metrics.csv").read_bytes())
        COUNTS["survived with nothing lost"] += 1
    if found == "completed":
        assert "the run had completed" in line, line
    elif status.untrained(out):
        assert "no epoch had finished" in line and "a new run may use it" in line, line
    else:  # (a resume interrupted before it claimed the folder left it as it was)
        assert f"finished epochs kept in {out}" in line or f"before the resume started; {out} is as it was" in line, line
    return found


@pytest.fixture(scope="module")
def cli_reference(mnist_root, tmp_path_factory) -> Path:
    from .test_faults import run_cl

    out = tmp_path_factory.mktemp("cli") / "reference"
    result = run_cl([*CLI_RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr
    return out


def _exists(path: Path):
    return lambda proc: path.exists()


def _sweep(cases, make_args, out_of, reference: Path, template: Path | None = None) -> Counter:
    """Each (anchor, delay) case twice at a time, SIGINT and SIGTERM in turn; the statuses found."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i_case):
        i, (anchor, delay) = i_case
        out = out_of(i)
        if template is not None:
            shutil.copytree(template, out)
        sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
        return _check_cli(_signal_at(make_args(out), out, anchor(out), delay, sig), out, sig, reference)

    with ThreadPoolExecutor(2) as pool:
        return Counter(pool.map(one, enumerate(cases)))


@pytest.mark.slow
def test_signals_through_start_up_leave_a_true_status(mnist_root, tmp_path, cli_reference):
    """SIGINT and SIGTERM at 17 moments: from the handler's first second to the first epoch."""
    from .test_faults import handler_installed

    handler = lambda out: lambda proc: handler_installed(proc.pid)()  # noqa: E731
    summary = lambda out: _exists(out / "summary.json")  # noqa: E731
    cases = [(handler, d) for d in (0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)] + \
        [(summary, d) for d in (0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.7, 1.5)]  # the run ends ~0.6 s after summary.json
    found = _sweep(cases, lambda out: [*CLI_RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"],
                   lambda i: tmp_path / f"case-{i}" / "run", cli_reference)
    assert found["interrupted"] >= 6, found  # most moments after summary.json was written
    # A folder whose run was interrupted before its first epoch ended is taken over by the next run.
    from .test_faults import run_cl

    untrained = next(p.parent for p in sorted(tmp_path.glob("case-*/run/summary.json")) if status.untrained(p.parent))
    result = run_cl([*CLI_RUN, f"data.root={mnist_root}", f"hydra.run.dir={untrained}"])
    assert result.returncode == 0, result.stderr
    assert (untrained / "metrics.csv").read_bytes() == (cli_reference / "metrics.csv").read_bytes()
    COUNTS["survived with nothing lost"] += 1


@pytest.fixture(scope="module")
def cli_interrupted(mnist_root, tmp_path_factory) -> Path:
    """A run interrupted between its tasks (its checkpoint after task 0)."""
    from .test_faults import finish, start, wait_for

    out = tmp_path_factory.mktemp("cli") / "interrupted"
    proc = start([*CLI_RUN, "train.epochs=[1,30]", f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    wait_for(proc, lambda: (out / "checkpoint.pt").exists(), "checkpoint of task 0")
    proc.send_signal(signal.SIGINT)
    assert finish(proc).returncode == 130
    return out


@pytest.mark.slow
def test_signals_through_a_resumes_start_up_leave_a_true_status(cli_interrupted, tmp_path, mnist_root):
    """10 moments of `cl-run resume=FOLDER`'s first seconds: an interrupted run stays interrupted."""
    from .test_faults import handler_installed, run_cl

    reference = tmp_path / "reference"  # the interrupted run's own settings, uninterrupted
    assert run_cl([*CLI_RUN, "train.epochs=[1,30]", f"data.root={mnist_root}", f"hydra.run.dir={reference}"]).returncode == 0
    handler = lambda out: lambda proc: handler_installed(proc.pid)()  # noqa: E731

    def rewritten(out):  # the resume wrote its own summary.json: status running
        return lambda proc: '"running"' in (out / "summary.json").read_text()

    cases = [(handler, d) for d in (0.5, 1.5, 2.5, 3.5)] + [(rewritten, d) for d in (0, 0.05, 0.2, 0.5, 1.0, 2.0)]
    found = _sweep(cases, lambda out: [f"resume={out}"], lambda i: tmp_path / f"case-{i}", reference,
                   template=cli_interrupted)
    assert set(found) <= {"interrupted", "completed"} and found["interrupted"], found
    done = tmp_path / "case-9"  # and what was interrupted still resumes to the uninterrupted numbers
    if found["interrupted"]:
        result = run_cl([f"resume={done}"]) if _status(done)["status"] != "completed" else None
        assert result is None or result.returncode == 0, result.stderr
        assert (done / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()


@pytest.mark.slow
def test_signals_around_the_final_checkpoint_leave_a_true_status(mnist_root, tmp_path, cli_reference):
    """9 moments from the last epoch's rows, through the last checkpoint, to the end."""
    def last_epoch(out):
        log = out / "train_log.csv"
        return lambda proc: log.exists() and any(line.startswith("1,") for line in log.read_text().splitlines())

    cases = [(last_epoch, d) for d in (0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6)]
    found = _sweep(cases, lambda out: [*CLI_RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"],
                   lambda i: tmp_path / f"case-{i}" / "run", cli_reference)
    assert set(found) <= {"interrupted", "completed"}, found


@pytest.mark.slow
def test_sigkill_before_the_first_epoch_ends_leaves_a_folder_the_next_run_uses(mnist_root, tmp_path, cli_reference):
    from .test_faults import finish, run_cl, start, wait_for

    out = tmp_path / "run"
    proc = start([*CLI_RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    wait_for(proc, lambda: (out / "summary.json").exists(), "summary.json")
    proc.kill()
    finish(proc)
    COUNTS["faults tried"] += 1
    assert _status(out)["status"] == "running" and status.untrained(out)  # nothing records a SIGKILL
    result = run_cl([*CLI_RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr  # no epoch had finished: nothing to protect
    assert (out / "metrics.csv").read_bytes() == (cli_reference / "metrics.csv").read_bytes()
    COUNTS["survived with nothing lost"] += 1
    COUNTS["statuses checked"] += 2


def test_zz_counts(capsys):
    """What this file tried (shown with -s; adds up only when the slow tests ran)."""
    with capsys.disabled():
        print(f"\ntest_status: {dict(COUNTS)}")
