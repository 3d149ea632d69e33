"""Experiment trackers (logger=tensorboard / mlflow / wandb): each tracker's data, read back with
its own reader, holds the numbers of metrics.csv, train_log.csv and summary.json; a missing
package or a tracker that cannot start stops the run before training with one line and exit
code 2; a tracker failing mid-run costs nothing else; resume continues the same tracker runs;
a sweep's runs are grouped. Tiny generated data, 3 steps per task, no network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from cl_runner.errors import EXIT_CONFIG
from cl_runner.run import run

from .conftest import REPO, compose_cfg, config_error, interrupted_at
from .tracker_data import (
    expected_scalars, mlflow_runs, mlflow_scalars, summary_metrics, tensorboard_events, tensorboard_hparams,
    tensorboard_scalars, wandb_run, wandb_scalars,
)

ALL = "logger=[tensorboard,mlflow,wandb]"
TINY = ["data.verify=false", "train.iterations=3", "train.progress=false", "strategy=ewc"]


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    """No tracker account or server: W&B with no API key (so offline), MLflow with no URI."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        mp.setenv("NETRC", str(tmp_path_factory.mktemp("home") / "no-netrc"))
        yield mp


@pytest.fixture(scope="module")
def runs(offline_env, tmp_path_factory) -> Path:
    """One folder for this module's in-process runs: they share its MLflow store (mlruns/)."""
    return tmp_path_factory.mktemp("runs")


def _run(tiny_mnist, folder: Path, *overrides: str) -> dict:
    return run(compose_cfg([*TINY, f"data.root={tiny_mnist}", *overrides]), folder)


def _store(folder: Path) -> str:
    return f"sqlite:///{folder.parent / 'mlruns' / 'mlflow.db'}"


def _mlflow_run(folder: Path):
    found = [r for r in mlflow_runs(_store(folder)) if r.data.tags["cl_runner.run_folder"] == str(folder)]
    assert len(found) == 1, found
    return found[0]


def _last(values: dict[str, dict[int, list[float]]]) -> dict[str, dict[int, float]]:
    return {tag: {step: logged[-1] for step, logged in steps.items()} for tag, steps in values.items()}


@pytest.fixture(scope="module")
def tracked(tiny_mnist, runs) -> Path:
    """A completed run with all three trackers at once."""
    folder = runs / "all-three"
    assert _run(tiny_mnist, folder, ALL)["status"] == "completed"
    return folder


def test_tensorboard_holds_the_csv_numbers(tracked):
    acc = tensorboard_events(tracked / "tensorboard")
    expected, logged = expected_scalars(tracked), tensorboard_scalars(acc)
    assert {"train/loss", "train/ce", "train/ewc", "val/acc/task_0", "val/loss/task_1", "test/acc/task_1"} <= set(expected)
    assert set(logged) == set(expected) | set(summary_metrics(tracked))
    for tag, steps in expected.items():  # TensorBoard stores float32
        assert logged[tag] == {step: [pytest.approx(value, rel=1e-6, abs=1e-7)] for step, value in steps.items()}, tag
    last = max(expected["train/loss"])
    for tag, value in summary_metrics(tracked).items():
        assert logged[tag] == {last: [pytest.approx(value, rel=1e-6)]}, tag
    hparams = tensorboard_hparams(acc)
    assert hparams["train.lr"] == pytest.approx(1e-3) and hparams["strategy.name"] == "ewc"
    for name in ("curves", "accuracy_matrix"):
        (image,) = acc.Images(f"figures/{name}")
        assert (image.width, image.height) == Image.open(tracked / f"{name}.png").size


def test_mlflow_holds_the_csv_numbers(tracked):
    from mlflow.tracking import MlflowClient

    run_ = _mlflow_run(tracked)
    assert run_.info.status == "FINISHED" and run_.info.run_name == f"{tracked.parent.name}/{tracked.name}"
    logged = mlflow_scalars(_store(tracked), run_)
    expected = expected_scalars(tracked)
    assert set(logged) == set(expected) | set(summary_metrics(tracked))
    for tag, steps in expected.items():
        assert logged[tag] == {step: [value] for step, value in steps.items()}, tag
    for tag, value in summary_metrics(tracked).items():
        assert logged[tag] == {max(expected["train/loss"]): [value]}
    assert run_.data.params["train.lr"] == "0.001" and run_.data.params["strategy.plugins"] == "['ewc']"
    artifacts = {a.path for a in MlflowClient(_store(tracked)).list_artifacts(run_.info.run_id)}
    assert artifacts == {"curves.png", "accuracy_matrix.png"}
    assert json.loads((tracked / "trackers.json").read_text())["mlflow"]["run_id"] == run_.info.run_id


def test_wandb_offline_run_holds_the_csv_numbers(tracked):
    (folder,) = (tracked / "wandb").glob("offline-run-*")
    data = wandb_run(folder)
    assert data["run"].display_name == f"{tracked.parent.name}/{tracked.name}" and data["run"].run_group == ""
    assert data["config"]["train"]["lr"] == pytest.approx(1e-3) and data["config"]["strategy"]["name"] == "ewc"
    logged = {tag: steps for tag, steps in wandb_scalars(data["history"]).items() if not tag.startswith("figures/")}
    expected = expected_scalars(tracked)
    assert set(logged) == set(expected)
    for tag, steps in expected.items():
        assert logged[tag] == {step: [value] for step, value in steps.items()}, tag
    for tag, value in summary_metrics(tracked).items():
        assert data["summary"][tag] == value
    assert {"figures/curves", "figures/accuracy_matrix"} <= {key.split("/_")[0] for row in data["history"] for key in row}
    assert len(list((folder / "files" / "media" / "images").rglob("*.png"))) == 2
    assert data["exit"] == 0


def test_mlflow_honours_the_tracking_uri_and_a_sweep_job_creating_the_experiment_first(tracked, tiny_mnist, runs,
                                                                                         monkeypatch):
    from mlflow.tracking import MlflowClient

    shared = _store(tracked)  # an existing store, standing for a tracking server the jobs share
    real_get = MlflowClient.get_experiment_by_name
    looked = []

    def not_there_yet(self, name):  # another job creates the experiment between our look and our create
        looked.append(name)
        return None if len(looked) == 1 else real_get(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", not_there_yet)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared)
    folder = runs / "elsewhere" / "run"
    assert _run(tiny_mnist, folder, "logger=mlflow")["status"] == "completed"
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", real_get)
    assert len(looked) == 2  # creating it failed (it exists), and the second look found it
    assert not (folder.parent / "mlruns").exists()
    (found,) = [r for r in mlflow_runs(shared) if r.data.tags["cl_runner.run_folder"] == str(folder)]
    assert found.info.status == "FINISHED" and found.info.experiment_id == _mlflow_run(tracked).info.experiment_id
    assert json.loads((folder / "trackers.json").read_text())["mlflow"]["tracking_uri"] == shared


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("tracker, module, package", [
    ("tensorboard", "tensorboard", "tensorboard"), ("mlflow", "mlflow", "mlflow-skinny"),
    ("mlflow", "sqlalchemy", "sqlalchemy"), ("wandb", "wandb", "wandb"),
])
def test_missing_package_is_a_config_error(tracker, module, package, monkeypatch, offline_env):
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    err = config_error([f"logger={tracker}"])
    assert err is not None and err.exit_code == EXIT_CONFIG
    assert str(err) == (f"logger={tracker} needs {package}, which is not installed: "
                        f'pip install "cl-runner[{tracker}]" (or pip install {package})')
    assert config_error([]) is None  # not chosen: not needed


def test_mlflow_server_needs_no_sql_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    assert config_error(["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:5000"]) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert config_error(["logger=mlflow"]) is None


def test_wandb_online_without_an_api_key_is_refused(monkeypatch, offline_env):
    err = config_error(["logger=wandb", "logger.wandb.mode=online"])
    assert err is not None and err.exit_code == EXIT_CONFIG and "logger.wandb.mode='online'" in str(err)
    assert "wandb login" in str(err)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert "($WANDB_MODE)" in str(config_error(["logger=wandb"]))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert config_error(["logger=wandb"]) is None


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    """cl-run in a subprocess, with no tracker account or server configured, plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE", "MLFLOW_TRACKING_URI")}
    return subprocess.run([sys.executable, "-m", "cl_runner.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**base, "OMP_NUM_THREADS": "1", **env})


def test_missing_package_on_the_command_line_one_line_exit_2(tiny_mnist, tmp_path):
    # A sitecustomize that makes `import tensorboard` fail, as if it were not installed.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboard'] = None\n")
    path = os.pathsep.join([str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = _cli("logger=[mlflow,tensorboard]", f"data.root={tiny_mnist}", *TINY, f"hydra.run.dir={tmp_path / 'run'}",
                  env={"PYTHONPATH": path})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        'cl-run: error: logger=tensorboard needs tensorboard, which is not installed: '
        'pip install "cl-runner[tensorboard]" (or pip install tensorboard)']
    assert not (tmp_path / "run").exists()  # stopped before Hydra made the run folder


@pytest.mark.slow
def test_tracker_that_cannot_start_fails_the_run_before_training(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    result = _cli("logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9", f"data.root={tiny_mnist}", *TINY,
                  f"hydra.run.dir={out}", env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cl-run: error: logger=mlflow could not start: "), result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "logger=mlflow could not start" in summary["error"]
    assert (out / "train_log.csv").read_text().count("\n") == 1  # the header: nothing was trained
    assert (out / "metrics.csv").read_text().count("\n") == 1


def test_trackers_started_before_one_that_fails_are_closed(tiny_mnist, runs):
    from cl_runner.trackers import TrackerError

    folder = runs / "tensorboard-blocked"
    folder.mkdir()
    (folder / "tensorboard").write_text("a file where TensorBoard wants its folder")
    with pytest.raises(TrackerError, match="logger=tensorboard could not start"):
        _run(tiny_mnist, folder, "logger=[mlflow,tensorboard]")
    assert json.loads((folder / "summary.json").read_text())["status"] == "failed"
    assert _mlflow_run(folder).info.status == "FAILED"  # mlflow started first, and was closed


def test_tracker_failing_mid_run_is_switched_off_and_the_run_goes_on(tiny_mnist, runs, monkeypatch, caplog):
    from cl_runner.trackers.tensorboard import TensorBoardTracker

    calls = []

    def flaky_log(self, step, scalars):
        calls.append(step)
        if len(calls) == 2:
            raise OSError("disk quota exceeded")
        self.writer.add_scalar("probe", 1.0, step)

    monkeypatch.setattr(TensorBoardTracker, "log", flaky_log)
    folder = runs / "flaky"
    summary = _run(tiny_mnist, folder, "logger=[tensorboard,wandb]")
    assert summary["status"] == "completed" and len(calls) == 2  # never called again
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("cl_runner")
                and "logger=" in r.getMessage()]  # (the end-of-run check may warn about this short run too)
    assert warnings == ["logger=tensorboard failed (OSError: disk quota exceeded) and is off for the rest of the run; "
                        "the CSV files, summary.json and figures are not affected"]
    assert len((folder / "train_log.csv").read_text().splitlines()) == 1 + 6  # 2 tasks x 3 epochs
    (wandb_folder,) = (folder / "wandb").glob("offline-run-*")  # the other tracker carried on
    logged = wandb_scalars(wandb_run(wandb_folder)["history"])
    assert _last(logged)["val/acc/task_1"] == expected_scalars(folder)["val/acc/task_1"]


class _SignalsItself:
    """A tracker whose `log` receives `signals` SIGINTs (Ctrl-C) from itself."""

    def __init__(self, signals: int):
        self.signals, self.logged = signals, []

    def log(self, step, scalars):
        for _ in range(self.signals):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # time for the handler to run, were it to interrupt here
        self.logged.append(step)


def test_ctrl_c_inside_a_tracker_call_waits_for_it_and_a_second_does_not():
    from cl_runner.trackers import Trackers

    row = {"train_task": 0, "epoch": 1, "global_epoch": 1, "loss": 0.5, "ce": 0.5, "seconds": 0.1}
    once = _SignalsItself(1)
    with pytest.raises(KeyboardInterrupt):
        Trackers({"probe": once}, 0).epoch(row, [])
    assert once.logged == [1]  # the call finished; the interrupt came after it
    twice = _SignalsItself(2)
    with pytest.raises(KeyboardInterrupt):
        Trackers({"probe": twice}, 0).epoch(row, [])
    assert twice.logged == []  # the second Ctrl-C cut the call short
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers as they were


# --- resume and sweeps ----------------------------------------------------------------------


def test_resume_continues_the_same_tracker_runs(tiny_mnist, runs, monkeypatch):
    import cl_runner.run as run_module

    real_train_epoch = run_module.train_epoch
    folder = runs / "resumed"
    monkeypatch.setattr(run_module, "train_epoch", interrupted_at(task=1, epoch=2))
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_mnist, folder, ALL)
    monkeypatch.setattr(run_module, "train_epoch", real_train_epoch)
    first = json.loads((folder / "trackers.json").read_text())
    assert _mlflow_run(folder).info.status == "KILLED"

    assert _run(tiny_mnist, runs / "ignored", f"resume={folder}")["status"] == "completed"
    assert json.loads((folder / "trackers.json").read_text()) == first  # the same runs, reopened
    expected = expected_scalars(folder)
    assert sorted(expected["train/loss"]) == list(range(1, 7))  # task 1's epoch 1 ran twice, kept once

    # TensorBoard: the same folder; purge_step hides the interrupted epoch's first values.
    logged = tensorboard_scalars(tensorboard_events(folder / "tensorboard"))
    for tag, steps in expected.items():
        assert logged[tag] == {step: [pytest.approx(value, rel=1e-6, abs=1e-7)] for step, value in steps.items()}, tag
    # MLflow: one run, finished, whose last value at each step is the CSV's.
    run_ = _mlflow_run(folder)
    assert run_.info.status == "FINISHED" and run_.info.run_id == first["mlflow"]["run_id"]
    logged = _last(mlflow_scalars(_store(folder), run_))
    for tag, steps in expected.items():
        assert logged[tag] == steps, tag
    # W&B: a second offline folder with the same run id; together they hold every epoch.
    offline = [wandb_run(f) for f in (folder / "wandb").glob("offline-run-*")]
    assert [data["run"].run_id for data in offline] == [first["wandb"]["id"]] * 2
    offline.sort(key=lambda data: data["exit"] == 0)  # the interrupted run's folder first
    assert [data["exit"] for data in offline] == [255, 0]
    history = [row for data in offline for row in data["history"]]
    assert _last(wandb_scalars(history))["val/acc/task_1"] == expected["val/acc/task_1"]


@pytest.mark.slow
def test_parallel_sweep_groups_its_runs_in_every_tracker(tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = _cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", ALL, "seed=0,1", f"data.root={tiny_mnist}",
                  *TINY, f"hydra.sweep.dir={sweep}", env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    jobs = [sweep / "0", sweep / "1"]
    for job in jobs:  # TensorBoard: the runs' event folders side by side in the sweep folder
        logged = tensorboard_scalars(tensorboard_events(job / "tensorboard"))["val/acc/task_1"]
        assert logged == {step: [pytest.approx(v, rel=1e-6)] for step, v in expected_scalars(job)["val/acc/task_1"].items()}
    # MLflow: one store in the sweep folder, both runs tagged with the sweep and their job.
    found = mlflow_runs(f"sqlite:///{sweep / 'mlruns' / 'mlflow.db'}")
    assert sorted((r.data.tags["cl_runner.sweep"], r.data.tags["cl_runner.job"], r.info.run_name) for r in found) == [
        (str(sweep), "0", "sweep/0"), (str(sweep), "1", "sweep/1")]
    assert all(r.info.status == "FINISHED" for r in found)
    # W&B: one group, named after the sweep folder.
    groups = {wandb_run(next((job / "wandb").glob("offline-run-*")))["run"].run_group for job in jobs}
    assert groups == {f"{tmp_path.name}/sweep"}


@pytest.mark.slow
def test_sigterm_while_trackers_log_ends_the_run_as_interrupted(tiny_mnist, tmp_path):
    """A signal that lands inside a tracker's call (most of a tiny epoch's time) still stops the
    run: the interrupt is not mistaken for a tracker failure, nor swallowed by the library."""
    out = tmp_path / "run"
    base = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "MLFLOW_TRACKING_URI")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cl_runner.cli", "logger=[mlflow,wandb]", "train.epochs=100000", f"data.root={tiny_mnist}",
         *[o for o in TINY if not o.startswith("train.iterations")], f"hydra.run.dir={out}"],
        cwd=REPO, env={**base, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "train_log.csv").is_file() or len((out / "train_log.csv").read_text().splitlines()) < 20:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1] if proc.poll() else "slow"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert "failed" not in (out / "cl-run.log").read_text()  # no tracker was switched off by it
    assert mlflow_runs(_store(out))[0].info.status == "KILLED"
    assert wandb_run(next((out / "wandb").glob("offline-run-*")))["exit"] == 255


# --- a tracker's store failing under the run: one line, quickly ----------------------------------


def _tracker_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("cl_runner")
            and "logger=" in r.getMessage()]


def test_tensorboard_writer_thread_failing_is_one_warning_line(tiny_mnist, runs, monkeypatch, caplog, capfd):
    """A full disk or a folder made read-only under TensorBoard's writer thread: the thread's
    error is said once, by the run, and no thread traceback is printed."""
    import errno

    from tensorboard.summary.writer.record_writer import RecordWriter

    real, writes = RecordWriter.write, []

    def write(self, data):
        writes.append(1)
        if len(writes) > 20:  # in the writer's thread, some epochs in
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    printed = []  # what Python's thread hook (which prints the traceback) is handed
    monkeypatch.setattr(threading, "excepthook", printed.append)
    summary = _run(tiny_mnist, runs / "tensorboard-full", "logger=tensorboard")
    assert summary["status"] == "completed" and len(writes) > 20
    (warning,) = _tracker_warnings(caplog)
    assert warning.startswith("logger=tensorboard failed (OSError: [Errno 28] No space left on device)"), warning
    assert printed == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err, err


def test_mlflow_store_failing_mid_run_is_one_warning_line(tiny_mnist, runs, monkeypatch, caplog, capfd):
    """The SQLite store full (or made read-only) mid-run: MLflow's own ~90-line log of the
    database error is not printed; the run says it in one line and goes on."""
    import sqlite3

    from sqlalchemy.engine.default import DefaultDialect

    from cl_runner.trackers.mlflow import MLflowTracker

    logged, real_log = [], MLflowTracker.log
    real_many, real_one = DefaultDialect.do_executemany, DefaultDialect.do_execute

    def full(real):
        def execute(self, cursor, statement, *args, **kwargs):
            if len(logged) >= 3 and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
                raise sqlite3.OperationalError("database or disk is full")
            return real(self, cursor, statement, *args, **kwargs)
        return execute

    monkeypatch.setattr(MLflowTracker, "log", lambda self, *a: logged.append(1) or real_log(self, *a))
    monkeypatch.setattr(DefaultDialect, "do_executemany", full(real_many))
    monkeypatch.setattr(DefaultDialect, "do_execute", full(real_one))
    summary = _run(tiny_mnist, runs / "mlflow-full", "logger=mlflow")
    assert summary["status"] == "completed"
    (warning,) = _tracker_warnings(caplog)
    assert warning.startswith("logger=mlflow failed (") and "database or disk is full" in warning, warning
    assert not [r for r in caplog.records if r.name.startswith("mlflow") and r.levelno >= 40]  # no ERROR + traceback
    err = capfd.readouterr().err
    assert "SQLAlchemy database error" not in err and "Traceback" not in err, err[:2000]


def test_an_mlflow_store_that_cannot_be_written_is_refused_at_once(tiny_mnist, tmp_path, monkeypatch):
    import time

    from cl_runner.trackers import TrackerError

    (tmp_path / "a-file").write_text("a file where the store's folder would be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")
    started = time.monotonic()
    with pytest.raises(TrackerError, match=r"logger=mlflow could not start: OSError: the store .*a-file/mlflow.db "
                                           r"cannot be written"):
        _run(tiny_mnist, tmp_path / "run", "logger=mlflow")
    read_only = tmp_path / "read-only" / "mlflow.db"  # a store MLflow could read but not write
    read_only.parent.mkdir()
    import sqlite3

    sqlite3.connect(read_only).execute("CREATE TABLE t (x)").connection.commit()
    made = subprocess.run(["chattr", "+i", str(read_only)], capture_output=True).returncode == 0
    if not made and os.geteuid() != 0:
        read_only.chmod(0o444)
        made = True
    try:
        if made:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{read_only}")
            with pytest.raises(TrackerError, match="cannot be written .*readonly database"):
                _run(tiny_mnist, tmp_path / "run2", "logger=mlflow")
    finally:
        subprocess.run(["chattr", "-i", str(read_only)], capture_output=True)
    assert time.monotonic() - started < 60  # MLflow alone retries for about 100 s
