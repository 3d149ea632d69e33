"""The fault suite: nothing lost and nothing misleading, whatever happens to a run.

Through the real command line (subprocesses, as in tests/test_robustness.py):

- the disk fills up mid-run (a real 16 MB tmpfs; where mounting is not permitted, a simulated
  ENOSPC: an audit hook refuses to create files once the disk is "full"), the run folder is
  made read-only (chattr +i; simulated the same way) or removed mid-run: exit 5, one line,
  summary.json says `failed` where it can still be written, no temporary file, and the
  finished task's checkpoint resumes to the numbers of an uninterrupted run;
- SIGINT and SIGTERM at start-up (nothing left behind), mid-task and between tasks, and
  SIGKILL, each followed by a resume where there is something to resume;
- two runs into one folder, one after the other and at the same time; runs started together
  into the default folder; a sweep folder that already holds runs;
- a resume with overrides; an output folder this process may not read; a command that fails
  before training (nothing left); cl-run.log holds the run's lines.

`fault_log` records what ran (a real tmpfs and chattr, or the simulation) in the test report.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO
from .leftovers import temporary_files
from .test_robustness import EXIT_CONFIG, EXIT_DATA, EXIT_INTERRUPTED, _env, one_line, read_rows, summary_of

EXIT_WRITE = 5
# The small two-task run of test_robustness with a longer task 1 (60 epochs, about 6 s), so that
# a fault can be set off while it trains.
RUN = ["dataset.tasks=[[0,1],[2,3]]", "train.epochs=[1,60]", "strategy=ewc_replay", "ewc.alpha=100", "model.width=16",
       "train.batch_size=256", "device=cpu", "train.progress=false", "data.download=false"]
TINY = ["data.verify=false", "data.download=false", "train.iterations=3", "train.progress=false", "dataset.tasks=[[0,1],[2,3]]",
        "device=cpu"]
# Where mounting a tmpfs or chattr is not permitted: from the moment the file named by
# $CL_RUN_TEST_FAULT exists, creating or truncating a file under $CL_RUN_TEST_FOLDER fails.
SIMULATE = """
import errno, os, sys
trigger, folder = os.environ["CL_RUN_TEST_FAULT"], os.environ["CL_RUN_TEST_FOLDER"]
def hook(event, args):
    if event == "open" and os.path.exists(trigger) and str(args[0]).startswith(folder):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wx") or flags & (os.O_CREAT | os.O_TRUNC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))
sys.addaudithook(hook)
from cl_runner.cli import main
sys.argv[0] = "cl-run"
main()
"""


def start(args: list[str], cwd: Path = REPO, fault: tuple[Path, Path] | None = None) -> subprocess.Popen:
    """cl-run in the background; `fault`: (trigger, folder) of the simulated write failure."""
    env = {**_env(), "PYTHONPATH": str(REPO), "CL_RUNNER_MIRROR": str(REPO / "no-such-mirror")}
    if fault is None:
        command = [sys.executable, "-m", "cl_runner.cli", *args]
    else:
        env.update(CL_RUN_TEST_FAULT=str(fault[0]), CL_RUN_TEST_FOLDER=str(fault[1]))
        command = [sys.executable, "-c", SIMULATE, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_cl(args: list[str], cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return finish(start(args, cwd), timeout)


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"cl-run ended before {what}:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.01)


def training(out: Path, task: int):
    """True once `task` has logged an epoch."""
    def ready() -> bool:
        log = out / "train_log.csv"
        return log.exists() and any(line.startswith(f"{task},") for line in log.read_text().splitlines())
    return ready


def handler_installed(pid: int):
    """True once the process catches SIGTERM (cl-run's first step), from /proc/PID/status."""
    def ready() -> bool:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
        return False
    return ready


def assert_whole_pngs(folder: Path) -> None:
    for png in folder.glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), f"{png.name} is cut short"


def checkpoint_stage(folder: Path) -> int:
    import torch

    return torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["completed_stage"]


def assert_resumes_to(folder: Path, reference: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """resume=folder completes, and its metrics.csv is byte for byte the uninterrupted run's."""
    result = run_cl([f"resume={folder}", *extra])
    assert result.returncode == 0, result.stderr
    assert summary_of(folder)["status"] == "completed"
    assert (folder / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    _, train = read_rows(folder / "train_log.csv")
    _, ref_train = read_rows(reference / "train_log.csv")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in train] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in ref_train]
    assert not temporary_files(folder) and not (folder / ".cl-run.lock").exists()
    return result


@pytest.fixture(scope="module")
def reference(mnist_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    result = run_cl([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr
    return out


# --- the file system fails mid-run ---------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path, record_property):
    """(folder, real): a 16 MB tmpfs when mounting is permitted (real=True), else a plain folder
    whose "disk full" is simulated (see SIMULATE)."""
    folder = tmp_path / "fs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode == 0
    record_property("fault_log", "real tmpfs" if mounted else "simulated ENOSPC (mount not permitted)")
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as err:
            assert err.errno == 28, err  # ENOSPC
    for size in (65536, 4096, 1):  # the last pages too
        try:
            with open(filler, "ab", buffering=0) as f:
                while True:
                    f.write(b"\0" * size)
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_disk_full_mid_run_fails_cleanly_and_resumes(small_fs, mnist_root, reference):
    fs, real = small_fs
    out, trigger = fs / "run", fs.parent / "disk-full"
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"], fault=None if real else (trigger, out))
    wait_for(proc, training(out, 1), "epoch of task 1")
    filler = _fill(fs) if real else trigger
    if not real:
        trigger.write_text("")
    result = finish(proc)
    assert result.returncode == EXIT_WRITE, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("cl-run: error: results could not be written:") and str(out) in line, line
    assert "No space left on device" in line and f"resume={out}" in line, line
    summary = summary_of(out)  # rewritten in place: there was no room for a new copy
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    assert not temporary_files(out) and not (out / ".cl-run.lock").exists()
    assert_whole_pngs(out)
    assert checkpoint_stage(out) == 0  # task 0 finished before the disk filled: it is kept
    filler.unlink()
    assert_resumes_to(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("free_pages", [0, 3])
def test_disk_full_before_the_run_starts(free_pages, small_fs, tiny_mnist):
    """No room for the lock file (0 pages), or for Hydra's own .hydra/ files (3 pages)."""
    fs, real = small_fs
    out = fs / "new" / "run"
    if real:
        filler = _fill(fs)
        os.truncate(filler, filler.stat().st_size - free_pages * 4096)
    else:
        (fs / "disk-full").write_text("")
    proc = start([*TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={out}"], fault=None if real else (fs / "disk-full", fs))
    result = finish(proc)
    assert result.returncode == EXIT_WRITE, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"cl-run: error: results could not be written: {out}"), line
    assert "No space left on device" in line, line
    assert not (fs / "new").exists()


@pytest.mark.slow
def test_folder_made_read_only_mid_run_fails_cleanly_and_resumes(tmp_path, mnist_root, reference, record_property):
    out, trigger = tmp_path / "run", tmp_path / "read-only"
    probe = tmp_path / "probe"
    probe.mkdir()
    real = subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    record_property("fault_log", "chattr +i" if real else "simulated (chattr not permitted)")
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"], fault=None if real else (trigger, out))
    try:
        wait_for(proc, training(out, 1), "epoch of task 1")
        if real:
            subprocess.run(["chattr", "+i", str(out)], check=True)
        else:
            trigger.write_text("")
        result = finish(proc)
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
    assert result.returncode == EXIT_WRITE, result.stderr
    line = one_line(result.stderr)
    assert "results could not be written" in line and str(out / "checkpoint.pt") in line, line
    assert summary_of(out)["status"] == "failed"  # an existing file can still be rewritten in place
    assert not temporary_files(out)
    assert_whole_pngs(out)
    assert checkpoint_stage(out) == 0
    assert_resumes_to(out, reference)


@pytest.mark.slow
def test_folder_removed_mid_run(tmp_path, mnist_root):
    out = tmp_path / "run"
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    wait_for(proc, training(out, 1), "epoch of task 1")
    shutil.rmtree(out)
    result = finish(proc)
    assert result.returncode == EXIT_WRITE, result.stderr
    line = one_line(result.stderr)
    assert "results could not be written" in line and str(out) in line and "no longer exists" in line, line
    assert not out.exists()  # nothing written back into a removed folder


# --- signals --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["imports", "hydra started"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_at_start_up_exits_130_and_leaves_nothing(sig, moment, tmp_path, mnist_root):
    out = tmp_path / "new" / "run"  # two folders this run creates, both removed again
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    if moment == "imports":  # the handler is in place; Hydra, torch and the config are still loading
        wait_for(proc, handler_installed(proc.pid), "SIGTERM handler")
    else:  # Hydra wrote .hydra/; cl-run is importing the training code
        wait_for(proc, lambda: (out / ".hydra").exists(), ".hydra folder")
    proc.send_signal(sig)
    result = finish(proc)
    assert result.returncode == EXIT_INTERRUPTED, result.stderr
    line = one_line(result.stderr)
    assert "interrupted" in line and "nothing was kept" in line, line
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_between_tasks_then_resume(sig, tmp_path, mnist_root, reference):
    out = tmp_path / "run"
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    wait_for(proc, lambda: (out / "checkpoint.pt").exists(), "checkpoint of task 0")
    proc.send_signal(sig)
    result = finish(proc)
    assert result.returncode == EXIT_INTERRUPTED, result.stderr
    assert "interrupted" in one_line(result.stderr)
    assert summary_of(out)["status"] == "interrupted" and checkpoint_stage(out) == 0
    assert not temporary_files(out)
    assert_resumes_to(out, reference)


@pytest.mark.slow
def test_sigterm_mid_task_then_resume_with_overrides(tmp_path, mnist_root, reference):
    out = tmp_path / "run"
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    wait_for(proc, training(out, 1), "epoch of task 1")
    proc.send_signal(signal.SIGTERM)
    result = finish(proc)
    assert result.returncode == EXIT_INTERRUPTED and "SIGTERM" in summary_of(out)["error"]
    # Overrides that would change the results are refused, naming them; the folder is untouched.
    before = (out / "metrics.csv").read_bytes()
    refused = run_cl([f"resume={out}", "train.epochs=20", "seed=3"])
    assert refused.returncode == EXIT_CONFIG
    line = one_line(refused.stderr)
    assert "train.epochs=20" in line and "seed=3" in line and str(out) in line, line
    assert (out / "metrics.csv").read_bytes() == before
    # Those that cannot are applied, and said so in one line (a repeated saved value is no change).
    moved = tmp_path / "mnist-elsewhere"
    moved.symlink_to(mnist_root, target_is_directory=True)
    extra = ("device=cpu", f"data.root={moved}", "checkpoint.every_task=false")
    resumed = assert_resumes_to(out, reference, extra=extra)
    assert resumed.stderr.strip().splitlines() == [
        f"cl-run: resuming {out} after task 0; applied data.root={moved} checkpoint.every_task=false"]
    saved = (out / "config.yaml").read_text()
    assert "resume: null" in saved and f"root: {moved}" in saved and "every_task: false" in saved
    assert f"resuming {out} after task 0" in (out / "cl-run.log").read_text()


@pytest.mark.slow
def test_sigkill_mid_task_then_resume(tmp_path, mnist_root, reference):
    out = tmp_path / "run"
    proc = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    wait_for(proc, training(out, 1), "epoch of task 1")
    proc.kill()
    assert finish(proc).returncode == -signal.SIGKILL
    assert summary_of(out)["status"] == "running"  # nothing can record a SIGKILL...
    # ...but the kernel released its lock: the folder is refused as a finished run's, not as busy.
    line = one_line(run_cl([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"]).stderr)
    assert "already holds a run" in line and f"resume={out}" in line, line
    assert_resumes_to(out, reference)


@pytest.mark.slow
def test_sigkill_at_start_up_leaves_a_folder_the_next_run_reuses(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    proc = start([*TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={out}"])
    wait_for(proc, lambda: (out / ".hydra").exists(), ".hydra folder")
    proc.kill()
    finish(proc)
    result = run_cl([*TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr  # Hydra's files alone are no results to protect
    assert summary_of(out)["status"] == "completed"


# --- two runs, one folder -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_finished_run_is_never_overwritten_without_overwrite(tmp_path, tiny_mnist):
    args = [*TINY, f"data.root={tiny_mnist}", "hydra.run.dir=runs/one"]  # relative: messages name it absolute
    out = tmp_path / "runs" / "one"
    assert run_cl(args, cwd=tmp_path).returncode == 0
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run_cl([*args, "seed=1"], cwd=tmp_path)
    assert result.returncode == EXIT_CONFIG
    line = one_line(result.stderr)
    assert f"{out} already holds a run" in line and f"resume={out}" in line and "overwrite=true" in line, line
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # .hydra/ too
    result = run_cl([*args, "seed=1", "overwrite=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "metrics.csv").read_bytes() != files[Path("metrics.csv")]
    assert "seed: 1" in (out / "config.yaml").read_text() and "overwrite: false" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_a_second_process_never_writes_a_folder_in_use(tmp_path, mnist_root):
    out = tmp_path / "run"
    first = start([*RUN, f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    # Task 0's first epoch: .hydra/ is whole by then (Hydra writes its files in place, so a
    # read as soon as one exists may find it empty).
    wait_for(first, training(out, 0), "first run's first epoch")
    record = (out / ".hydra" / "overrides.yaml").read_bytes()
    assert b"data.root=" in record
    second = run_cl([*RUN, "seed=5", f"data.root={mnist_root}", f"hydra.run.dir={out}"])
    assert second.returncode == EXIT_CONFIG
    line = one_line(second.stderr)
    assert f"{out} is in use by another cl-run (process {first.pid})" in line, line
    assert finish(first).returncode == 0
    assert (out / ".hydra" / "overrides.yaml").read_bytes() == record
    assert "seed: 0" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_runs_started_together_get_their_own_default_folders(tmp_path, tiny_mnist):
    procs = [start([*TINY, f"data.root={tiny_mnist}"], cwd=tmp_path) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    folders = [Path(r.stdout.strip().rsplit("results in ", 1)[1]) for r in results]
    assert folders[0] != folders[1] and all(summary_of(f)["status"] == "completed" for f in folders)
    assert all(f.parent.parent == tmp_path / "outputs" for f in folders)


def test_sweep_folder_holding_runs_is_refused(tmp_path, tiny_mnist):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "0" / "summary.json").write_text('{"status": "completed"}\n')
    result = run_cl(["-m", "seed=0,1", *TINY, f"data.root={tiny_mnist}", f"hydra.sweep.dir={sweep}"])
    assert result.returncode == EXIT_CONFIG
    line = one_line(result.stderr)
    assert f"{sweep} already holds runs (0/)" in line and "overwrite=true" in line, line
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "multirun.yaml"]


# --- the first hour -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["missing data", "damaged data", "device=cuda"])
def test_failure_before_training_leaves_nothing(fault, tmp_path, tiny_mnist):
    import torch

    if fault == "device=cuda" and torch.cuda.is_available():
        fault = "missing data"  # the machine has CUDA: the same check with another failure
    data = tmp_path / "data"
    if fault == "damaged data":
        shutil.copytree(tiny_mnist, data)
        (data / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    args = [*TINY, f"data.root={data if fault != 'device=cuda' else tiny_mnist}"] + (["device=cuda"] if "cuda" in fault else [])
    work = tmp_path / "work"
    work.mkdir()
    result = run_cl(args, cwd=work)  # the default, timestamped folder
    assert result.returncode == (EXIT_CONFIG if "cuda" in fault else EXIT_DATA), result.stderr
    one_line(result.stderr)
    assert list(work.iterdir()) == []  # no outputs/ left, nor anything in it
    mine = tmp_path / "mine"  # a folder the user made: kept, and left as it was
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert run_cl([*args, f"hydra.run.dir={mine}"]).returncode == result.returncode
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_cl_run_log_holds_the_runs_lines(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    result = run_cl([*TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the terminal shows the summary line only
    lines = (out / "cl-run.log").read_text().splitlines()
    assert re.search(rf"run folder {re.escape(str(out))}; device cpu \(\d+ CPU threads\); strategy naive", lines[0]), lines[0]
    assert "task 0 (0-1) done in" in lines[1] and "test acc per task [" in lines[1]
    assert "task 1 (2-3) done in" in lines[2]
    assert "] time: import " in lines[3] and ", total " in lines[3]  # where the run's seconds went
    assert lines[4].endswith(result.stdout.strip()) and len(lines) == 5
    assert summary_of(out)["warnings"] == []


@pytest.mark.slow
def test_the_headline_ewc_command_says_why_task_1_was_not_learnt(tmp_path, mnist_root):
    out = tmp_path / "run"
    result = run_cl(["strategy=ewc", "ewc.alpha=1e8", "train.epochs=3", "train.progress=false", f"data.root={mnist_root}",
                     f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("cl-run: warning: task 1 (5-6-7-8-9) was not learnt:"), line
    assert "ewc term outweighed the cross-entropy" in line and "ewc.alpha=1e7" in line, line
    assert summary_of(out)["warnings"] == [line.removeprefix("cl-run: ")]
    assert "[WARNING] warning: task 1" in (out / "cl-run.log").read_text()


def test_values_that_round_to_zero_print_without_a_sign():
    from cl_runner.cli import _number

    assert [_number(v) for v in (-0.0001, -0.0, 0.0004, -0.0006, 0.5)] == ["0.000", "0.000", "0.000", "-0.001", "0.500"]


# --- folders this process may not read ------------------------------------------------------------


def _as_unprivileged() -> list[str] | None:
    """A prefix that runs a command without root's right to ignore file permissions: [] when
    the tests run without it already, None when there is no way (root without setpriv)."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"] if shutil.which("setpriv") else None


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["hydra.run.dir", "resume"])
def test_folder_that_may_not_be_read_is_one_line(setting, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    target = locked / "run"
    prefix = _as_unprivileged()
    try:
        if prefix is None:  # root without setpriv: the same refusal, simulated in this process
            _refused_in_process(setting, target, monkeypatch)
            return
        command = [*prefix, sys.executable, "-m", "cl_runner.cli", f"{setting}={target}"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
    finally:
        locked.chmod(0o700)
    assert result.returncode == EXIT_CONFIG, result.stderr
    line = one_line(result.stderr)
    assert setting in line and str(target) in line and "Permission denied" in line, line


def _refused_in_process(setting: str, target: Path, monkeypatch) -> None:
    from cl_runner.errors import ConfigError
    from cl_runner.precheck import precheck

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_file", denied)
    monkeypatch.setattr(os, "mkdir", denied)
    with pytest.raises(ConfigError) as caught:
        if setting == "resume":
            precheck([f"resume={target}"])
        else:
            from cl_runner import rundir

            rundir.claim(rundir.Target(setting, str(target)))
    assert str(target) in str(caught.value) and "Permission denied" in str(caught.value)


# --- in this process: the folder claim, resume's decisions, the end-of-run check ------------------


def test_claims_of_one_timestamped_name_get_their_own_folders(tmp_path):
    from cl_runner import rundir

    target = rundir.Target("hydra.run.dir", str(tmp_path / "outputs" / "day" / "12-00-00"), unique=True)
    first, second = rundir.claim(target), rundir.claim(target)
    assert (first.folder.name, second.folder.name) == ("12-00-00", "12-00-00-2")
    for claim in (second, first):  # nothing was written: both go, and the folders they made
        rundir.release(claim)
    assert not (tmp_path / "outputs").exists()


def test_a_folder_is_locked_while_claimed(tmp_path):
    from cl_runner import rundir
    from cl_runner.errors import ConfigError

    target = rundir.Target("hydra.run.dir", str(tmp_path / "run"))
    claim = rundir.claim(target)
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'run'} is in use by another cl-run \(process {os.getpid()}\)"):
        rundir.claim(target)  # flock: a second open of the lock file conflicts even in one process
    (claim.folder / "summary.json").write_text('{"status": "completed"}')
    rundir.release(claim)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["summary.json"]  # results stay, the lock goes
    with pytest.raises(ConfigError, match="already holds a run"):
        rundir.claim(target)


def test_overwrite_of_a_sweep_folder_removes_only_run_files(tmp_path):
    from cl_runner import rundir

    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / "metrics.csv").write_text("x")
    (sweep / "1" / "mine.txt").write_text("a user's file")
    (sweep / "multirun.yaml").write_text("{}")
    claim = rundir.claim(rundir.Target("hydra.sweep.dir", str(sweep), overwrite=True, sweep=True))
    assert sorted(str(p.relative_to(sweep)) for p in sweep.rglob("*")) == [".cl-run.lock", "1", "1/mine.txt"]
    rundir.release(claim)


@pytest.fixture
def resumable(tmp_path):
    """A folder resume= accepts: the saved config of `naive` on real-looking settings, and a checkpoint."""
    from omegaconf import OmegaConf

    from .conftest import compose_cfg

    folder = tmp_path / "run"
    folder.mkdir()
    OmegaConf.save(compose_cfg(["device=cpu", "data.root=/data/mnist"]), folder / "config.yaml", resolve=True)
    (folder / "checkpoint.pt").write_bytes(b"")  # only its presence is checked before the run
    return folder


def test_resume_refuses_overrides_that_change_results(resumable):
    from .conftest import config_error

    err = config_error([f"resume={resumable}", "train.epochs=20", "seed=3", "model=mlp256", "experiment=ewc"])
    assert "train.epochs=20 seed=3 model=mlp256 experiment=ewc" in str(err) and str(resumable) in str(err)
    assert config_error([f"resume={resumable}", "seed=0", "strategy=naive"]) is None  # the saved values
    assert "overwrite=true would replace it" in str(config_error([f"resume={resumable}", "overwrite=true"]))
    assert "without -m" in str(config_error(["-m", f"resume={resumable}", "seed=0"]))
    assert "leave hydra.run.dir out" in str(config_error([f"resume={resumable}", "hydra.run.dir=/elsewhere"]))


def test_resume_applies_overrides_that_cannot_change_results(resumable):
    from cl_runner import resume

    from .conftest import compose_cfg

    given = [f"resume={resumable}", "device=auto", "train.progress=false", "data.root=/other/mnist", "data.download=false"]
    cfg, folder, applied = resume.prepare(compose_cfg(given), given)
    assert folder == resumable and applied == given[1:]
    assert (str(cfg.device), cfg.train.progress, cfg.data.root, cfg.data.download) == ("auto", False, "/other/mnist", False)
    assert cfg.resume == str(resumable) and cfg.strategy.name == "naive"


def test_resume_of_a_damaged_config_is_one_line(resumable):
    from .conftest import config_error

    saved = resumable / "config.yaml"
    text = saved.read_text()
    for damage, expected in (("seed: [0\n", "is damaged"), ("seed: 0\n", "lacks dataset, model.name"),
                             (text.replace("batch_size: 1024", "batch_size: many"), "holds a bad value"),
                             (text.replace("verify: true", "verify: false"), None)):
        saved.write_text(damage)
        err = config_error([f"resume={resumable}", "data.root=/moved"])
        if expected is None:  # data nothing checks: data.root may not move
            assert "data.root=/moved" in str(err)
            continue
        assert expected in str(err) and str(saved) in str(err) and "\n" not in str(err), err


def test_resume_of_a_completed_run_is_refused(resumable):
    from .conftest import config_error

    (resumable / "summary.json").write_text('{"status": "completed"}')
    assert "is complete: there is nothing to resume" in str(config_error([f"resume={resumable}"]))


def test_end_of_run_check_names_a_dominating_penalty():
    import numpy as np
    import pandas as pd

    from cl_runner.diagnose import warnings

    # The figures of `cl-run strategy=ewc ewc.alpha=1e8` on mlp64 (real MNIST, 50 epochs).
    log = pd.DataFrame({"train_task": [0, 0, 1, 1], "epoch": [1, 2, 1, 2], "ce": [1.3, 0.3, 12.4, 10.2],
                        "ewc": [0.0, 0.0, 18100.0, 1293.6]})
    stuck = warnings(np.array([[0.989, 0.0], [0.987, 0.129]]), log, ["0-4", "5-9"], [0.2, 0.2])
    assert len(stuck) == 1 and "task 1 (5-9) was not learnt: 0.129" in stuck[0]
    assert "ewc term outweighed the cross-entropy 1,460 times" in stuck[0] and "ewc.alpha=1e7" in stuck[0]
    assert "model=mlp256" in stuck[0]
    # The notebook's EWC (mlp256) has as large a first epoch, but learns task 1: no warning.
    assert warnings(np.array([[0.992, 0.0], [0.869, 0.765]]), log, ["0-4", "5-9"], [0.2, 0.2]) == []
    # Nor a task that was not learnt without a dominating term.
    assert warnings(np.array([[0.99, 0.0], [0.9, 0.1]]), log.assign(ewc=log.ce), ["0-4", "5-9"], [0.2, 0.2]) == []
