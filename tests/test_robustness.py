"""Runs that survive mistakes, crashes and interruptions, and give the same numbers twice.

Everything here goes through the real command line (`python -m cl_runner.cli ...`) in a
subprocess, with `hydra.run.dir` under pytest's tmp_path:

- bad configurations fail before Hydra starts and before any data is read: exit 2, one line
  on stderr naming the key;
- a diverging run stops with the guard's message (task and epoch), exit 4, rows kept;
- SIGINT / SIGTERM mid-task: exit 130, complete rows, status `interrupted`, a checkpoint;
- `resume=PATH` finishes the interrupted run with the same metrics.csv as an uninterrupted one;
- the same seed gives a byte-identical metrics.csv (a different seed does not);
- damaged or missing MNIST files are refused with exit 3 and one line naming the file.

The training runs use a small, fast setting (digits 0-1 then 2-3, an MLP of width 16, one
thread) so the whole file stays well under three minutes on two cores.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO
from .leftovers import temporary_files

EXIT_CONFIG, EXIT_DATA, EXIT_FAILED, EXIT_INTERRUPTED = 2, 3, 4, 130
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# A two-task run that is cheap but not instant: task 0 is one epoch, task 1 is long enough
# (25 epochs) to be interrupted in the middle. EWC + replay, so that the checkpoint carries
# plugin state (Fisher, anchors, replay memory) that resume must restore.
SMALL = ["dataset.tasks=[[0,1],[2,3]]", "train.epochs=[1,25]", "strategy=ewc_replay", "ewc.alpha=100",
         "model.width=16", "train.batch_size=256", "device=cpu", "train.progress=false", "data.download=false"]


def _env() -> dict:
    # One thread: on a shared two-core machine several torch threads spin against each other.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cl_runner.cli", *args]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_env())


def one_line(stderr: str) -> str:
    """The single line the CLI printed on stderr (fails if it printed more, or a traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def assert_complete(path: Path) -> list[dict]:
    """Every row has every column filled in, and the numeric ones parse as finite numbers."""
    text = path.read_text()
    assert text.endswith("\n"), f"{path.name} ends in a partial row"
    columns, rows = read_rows(path)
    for row in rows:
        assert None not in row and all(row[c] not in (None, "") for c in columns), f"incomplete row in {path.name}: {row}"
        for c in columns:
            if c != "split":
                assert math.isfinite(float(row[c])), f"{path.name}: {c}={row[c]!r}"
    return rows


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def epochs_by_task(rows: list[dict]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for row in rows:
        task, epoch = int(row["train_task"]), int(row["epoch"])
        if task >= 0 and epoch not in out.setdefault(task, []):
            out[task].append(epoch)
    return out


# --- bad configurations: exit 2, one line naming the key, before any data is read -------------

BAD_CONFIGS = [
    # (overrides, the key the message must name)
    (["strategy=foo"], "strategy"),  # unknown group options
    (["model=nope"], "model"),
    (["dataset=nope"], "dataset"),
    (["ewc.alhpa=1"], "ewc.alhpa"),  # unknown keys
    (["train.epoch=3"], "train.epoch"),
    (["+foo=1"], "foo"),
    (["train.batch_size=abc"], "train.batch_size"),  # wrong types
    (["seed=x"], "seed"),
    (["model.width=1.5"], "model.width"),
    (["train.epochs=0"], "train.epochs"),  # out of range
    (["train.epochs=-2"], "train.epochs"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.lr=-1"], "train.lr"),
    (["train.epochs=[1,2,3]"], "train.epochs"),  # two tasks, three epoch counts
    (["dataset.tasks=[[0,1],[2,10]]"], "dataset.tasks"),  # label outside 0-9
    (["dataset.tasks=[[0,1],[1,2]]"], "dataset.tasks"),  # label in two tasks
    (["replay.share=0"], "replay.share"),  # checked even when strategy=naive does not use it
    (["replay.share=1.5"], "replay.share"),
    (["strategy=replay", "replay.share=0"], "replay.share"),
    (["ewc.alpha=-1"], "ewc.alpha"),
    (["ewc.fisher=foo"], "ewc.fisher"),
    (["ewc.fisher_samples=0"], "ewc.fisher_samples"),
    (["scenario=foo"], "scenario"),
    (["device=tpu"], "device"),
    (["dataset.val_share=1.5"], "dataset.val_share"),
    (["-m", "replay.share=0.1,2"], "replay.share"),  # a sweep with one bad value
    (["seed=0,1"], "seed"),  # a sweep without -m
    (["data.root=${oc.env:CL_RUNNER_TEST_SURELY_UNSET}"], "data.root"),  # unresolvable interpolation
    (["resume={tmp}/no-such-run"], "resume"),
]


@pytest.mark.parametrize("overrides, key", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_fails_fast_with_one_line(overrides, key, tmp_path):
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    args = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    # A data folder that does not exist: had the config passed, the run would stop with exit 3.
    result = cli(*args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={sweep_dir}",
                 f"data.root={tmp_path / 'no-data'}" if not any(a.startswith("data.root") for a in args) else "train.progress=false",
                 "data.download=false", timeout=120)
    assert result.returncode == EXIT_CONFIG, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("cl-run: error: invalid config:"), line
    assert key in line, line
    assert result.stdout == ""
    # Failed in the precheck: Hydra never started, so it never created an output folder.
    assert not run_dir.exists() and not sweep_dir.exists()


def test_unknown_key_names_the_allowed_keys_and_the_near_miss(tmp_path):
    line = one_line(cli("train.epoch=3", f"hydra.run.dir={tmp_path / 'run'}").stderr)
    assert "did you mean 'train.epochs'" in line and "batch_size" in line, line


def test_unknown_group_option_lists_the_choices(tmp_path):
    line = one_line(cli("strategy=foo", f"hydra.run.dir={tmp_path / 'run'}").stderr)
    assert "'foo'" in line and "naive" in line and "ewc" in line, line


def test_a_plugin_preset_without_its_extra_names_the_extra(tmp_path):
    """`hydra/sweeper=optuna` needs the optuna extra, which no make target installs: where it is
    missing, the line names the pip command; where a user installed it, the sweep is accepted."""
    result = cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "train.iterations=1",
                 "data.verify=false", f"hydra.sweep.dir={tmp_path / 'sweep'}", "data.root=/nonexistent")
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        assert result.returncode == 2
        assert one_line(result.stderr) == ("cl-run: error: invalid config: hydra/sweeper='optuna' needs the 'optuna' "
                                           "extra, not installed here: pip install 'cl-runner[optuna]' (from a "
                                           "clone: pip install -e '.[optuna]')")
    else:  # composed and started: the run then stops at the missing data folder
        assert "extra" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert "/nonexistent" in result.stderr, result.stderr


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_output_folder_that_cannot_be_created(where, tmp_path):
    if where == "under a file":  # a path under a regular file cannot be created, even by root
        (tmp_path / "afile").write_text("not a folder")
        folder = tmp_path / "afile" / "sub"
    else:
        folder = Path("/proc/cl-run-nope")
    result = cli(f"hydra.run.dir={folder}", "data.download=false", f"data.root={tmp_path / 'no-data'}", timeout=120)
    assert result.returncode == EXIT_CONFIG, result.stderr
    line = one_line(result.stderr)
    assert "hydra.run.dir" in line and "cannot create the output folder" in line, line


def test_resume_of_a_run_that_finished_no_task(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.yaml").write_text("seed: 0\n")
    result = cli(f"resume={folder}", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == EXIT_CONFIG, result.stderr
    line = one_line(result.stderr)
    assert "resume" in line and "checkpoint.pt" in line, line


# --- data integrity -----------------------------------------------------------------------------


def test_missing_data_folder_names_the_folder_and_the_files(tmp_path):
    missing = tmp_path / "nowhere"
    result = cli(f"data.root={missing}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == EXIT_DATA, result.stderr
    line = one_line(result.stderr)
    assert str(missing) in line
    for name in MNIST_FILES:
        assert name in line, line
    assert not (tmp_path / "run" / "metrics.csv").exists()


def _damage(path: Path, how: str) -> None:
    if how == "truncated gzip":  # the compressed stream ends early
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "truncated content":  # a valid gzip of a shortened file
        data = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(data[:-100]))
    elif how == "altered byte":  # same length, one bit flipped
        data = bytearray(gzip.decompress(path.read_bytes()))
        data[len(data) // 2] ^= 1
        path.write_bytes(gzip.compress(bytes(data)))


@pytest.mark.parametrize("name, how", [
    ("train-images-idx3-ubyte", "truncated gzip"),
    ("t10k-labels-idx1-ubyte", "truncated content"),
    ("train-labels-idx1-ubyte", "altered byte"),
])
def test_damaged_mnist_file_is_refused(name, how, mnist_root, tmp_path):
    copy = tmp_path / "mnist"
    copy.mkdir()
    for f in MNIST_FILES:
        shutil.copy(mnist_root / f"{f}.gz", copy / f"{f}.gz")
    _damage(copy / f"{name}.gz", how)
    run_dir = tmp_path / "run"
    result = cli(f"data.root={copy}", "data.download=false", f"hydra.run.dir={run_dir}", *SMALL[:1], timeout=180)
    assert result.returncode == EXIT_DATA, result.stderr
    line = one_line(result.stderr)
    assert f"{name}.gz" in line and ("checksum" in line or "unreadable" in line), line
    # Never trained on: no rows, no checkpoint.
    assert not (run_dir / "metrics.csv").exists() and not (run_dir / "checkpoint.pt").exists()


# --- training runs: divergence, interruption, resume, determinism ---------------------------------


@pytest.fixture(scope="module")
def reference(mnist_root, tmp_path_factory) -> Path:
    """The small run, uninterrupted, seed 0."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = cli(*SMALL, f"data.root={mnist_root}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr
    assert summary_of(out)["status"] == "completed"
    return out


def _interrupt(args: list[str], out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start the run, wait until it logs an epoch of task 1 (task 0 checkpointed), send `sig`."""
    proc = subprocess.Popen(_command(*args, f"hydra.run.dir={out}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=_env())
    deadline = time.monotonic() + 240
    try:
        while True:
            log = out / "train_log.csv"
            if log.exists() and any(line.startswith("1,") for line in log.read_text().splitlines()):
                break
            assert proc.poll() is None, f"the run ended before it could be interrupted:\n{proc.communicate()[1]}"
            assert time.monotonic() < deadline, "the run logged no epoch of task 1 in time"
            time.sleep(0.02)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def interrupted(mnist_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The small run, stopped by SIGINT (Ctrl-C) in the middle of task 1."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    return out, _interrupt([*SMALL, f"data.root={mnist_root}"], out, signal.SIGINT)


def _check_interrupted(out: Path, result: subprocess.CompletedProcess, signal_name: str) -> None:
    assert result.returncode == EXIT_INTERRUPTED, result.stderr
    assert "interrupted" in one_line(result.stderr)
    summary = summary_of(out)
    assert summary["status"] == "interrupted"
    assert signal_name in summary["error"]
    assert "final_test_acc" not in summary  # a partial result never looks complete

    train = assert_complete(out / "train_log.csv")
    metrics = assert_complete(out / "metrics.csv")
    # Finished epochs only, contiguous: task 0 whole (1 epoch), task 1 from epoch 1 on, not finished.
    train_epochs = epochs_by_task(train)
    assert train_epochs[0] == [1]
    assert train_epochs[1] == list(range(1, len(train_epochs[1]) + 1)) and 1 <= len(train_epochs[1]) < 25
    assert [int(r["global_epoch"]) for r in train] == list(range(1, len(train) + 1))
    metric_epochs = epochs_by_task(metrics)
    assert metric_epochs[0] == [1]
    # An epoch's rows are written to both logs together, after its evaluation.
    assert train_epochs[1][: len(metric_epochs.get(1, []))] == metric_epochs.get(1, [])
    assert len(train_epochs[1]) - len(metric_epochs.get(1, [])) <= 1
    for (task, epoch) in {(int(r["train_task"]), int(r["epoch"])) for r in metrics}:
        rows = [r for r in metrics if int(r["train_task"]) == task and int(r["epoch"]) == epoch]
        assert sorted(int(r["eval_task"]) for r in rows if r["split"] == "val") == [0, 1]

    # The checkpoint of task 0 is there, loadable with weights_only=True.
    import torch

    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["completed_stage"] == 0 and state["global_epoch"] == 1
    assert len(state["plugins"]) == 2  # ewc and replay state
    assert not temporary_files(out)


@pytest.mark.slow
def test_sigint_keeps_finished_rows_and_a_checkpoint(interrupted):
    out, result = interrupted
    _check_interrupted(out, result, "KeyboardInterrupt")


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(mnist_root, tmp_path):
    out = tmp_path / "run"
    result = _interrupt([*SMALL, f"data.root={mnist_root}"], out, signal.SIGTERM)
    _check_interrupted(out, result, "SIGTERM")


@pytest.mark.slow
def test_resume_gives_the_numbers_of_an_uninterrupted_run(interrupted, reference, tmp_path):
    source, _ = interrupted
    folder = tmp_path / "resumed"
    shutil.copytree(source, folder)  # leave the fixture's folder as it was for other tests
    first_record = (folder / ".hydra" / "overrides.yaml").read_bytes()
    elsewhere = sorted((REPO / "outputs").glob("*/*")) if (REPO / "outputs").exists() else []
    result = cli(f"resume={folder}")
    assert result.returncode == 0, result.stderr
    assert str(folder) in result.stdout and "ewc_replay done" in result.stdout

    summary, expected = summary_of(folder), summary_of(reference)
    assert summary["status"] == "completed" and "error" not in summary
    assert summary["final_test_acc"] == expected["final_test_acc"]
    assert summary["accuracy_matrix"] == expected["accuracy_matrix"]
    assert len(summary["task_seconds"]) == 2
    assert set(summary) == set(expected)

    # metrics.csv: the same rows, no duplicates of task 0's, numbers equal exactly (bytes too).
    columns, rows = read_rows(folder / "metrics.csv")
    ref_columns, ref_rows = read_rows(reference / "metrics.csv")
    assert columns == ref_columns and rows == ref_rows
    assert (folder / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    # train_log.csv: the same losses (the seconds differ, of course).
    _, train = read_rows(folder / "train_log.csv")
    _, ref_train = read_rows(reference / "train_log.csv")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in train] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in ref_train]
    # The resuming process made no folder of its own, and left the first run's record as it was.
    assert (sorted((REPO / "outputs").glob("*/*")) if (REPO / "outputs").exists() else []) == elsewhere
    assert (folder / ".hydra" / "overrides.yaml").read_bytes() == first_record


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_numbers(reference, mnist_root, tmp_path):
    again = tmp_path / "again"
    assert cli(*SMALL, f"data.root={mnist_root}", f"hydra.run.dir={again}").returncode == 0
    assert (again / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()

    # Another seed (with deterministic=true, which must not break a CPU run) gives other numbers.
    other = tmp_path / "other"
    result = cli(*SMALL, "seed=1", "deterministic=true", f"data.root={mnist_root}", f"hydra.run.dir={other}")
    assert result.returncode == 0, result.stderr
    _, rows = read_rows(other / "metrics.csv")
    _, ref_rows = read_rows(reference / "metrics.csv")
    assert len(rows) == len(ref_rows)
    assert [r["acc"] for r in rows] != [r["acc"] for r in ref_rows]
    assert [r["examples"] for r in rows] != [r["examples"] for r in ref_rows]  # another validation split


@pytest.mark.slow
def test_divergence_stops_the_run_and_keeps_the_rows(mnist_root, tmp_path):
    # alpha overflows float32 to inf; at task 1's first step the EWC penalty is inf * 0 = NaN.
    out = tmp_path / "run"
    result = cli("strategy=ewc", "ewc.alpha=1e300", "dataset.tasks=[[0,1],[2,3]]", "train.epochs=1", "model.width=16",
                 "train.batch_size=256", "device=cpu", "train.progress=false", "data.download=false",
                 f"data.root={mnist_root}", f"hydra.run.dir={out}")
    assert result.returncode == EXIT_FAILED, result.stderr
    line = one_line(result.stderr)
    assert "diverged in task 1, epoch 1" in line and "not finite" in line and str(out) in line, line
    summary = summary_of(out)
    assert summary["status"] == "failed" and "task 1, epoch 1" in summary["error"]
    # Task 0's rows are kept, complete; nothing of the diverged epoch was logged.
    metrics = assert_complete(out / "metrics.csv")
    train = assert_complete(out / "train_log.csv")
    assert epochs_by_task(train) == {0: [1]}
    assert epochs_by_task(metrics) == {0: [1]}
    assert {r["split"] for r in metrics if r["train_task"] == "0"} == {"val", "test"}
    assert (out / "checkpoint.pt").exists()


def test_a_cluster_launchers_failure_is_named_by_where_it_was_raised():
    """Ray reports a missing cluster with a builtin ConnectionError: the module that raised it
    names the launcher (the sbatch refusal, submitit's own error class, runs on a real Slurm
    cluster in test_clusters.py)."""
    from cl_runner.cli import _launcher_failure

    def raising_in(module: str):
        namespace = {"__name__": module}
        exec("def connect():\n    raise ConnectionError('Could not find any running Ray instance.\\nmore')", namespace)
        try:
            namespace["connect"]()
        except ConnectionError as err:
            return err

    assert _launcher_failure(raising_in("ray._private.worker")) == (
        "the Ray launcher could not run the sweep: Could not find any running Ray instance.")
    wrapped = RuntimeError("launch failed")
    wrapped.__cause__ = raising_in("ray.util")
    assert _launcher_failure(wrapped).startswith("the Ray launcher could not run the sweep")
    assert _launcher_failure(raising_in("cl_runner.run")) is None  # anything else stays a bug's traceback
