"""Sweeps: Hydra multirun over any key, the local launchers (joblib and submitit_local, run
here for real), the Optuna preset as far as can be checked without its extra, and the
`make sweep-*` targets. The cluster presets run on real clusters in test_clusters.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pandas as pd
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from omegaconf import OmegaConf

from cl_runner.config import CONF_DIR
from cl_runner.precheck import precheck
from cl_runner.errors import ConfigError, UserError

from .conftest import REPO, cl_run, compose_cfg

TINY = ("data.verify=false", "train.iterations=3", "train.progress=false")


def job_configs(sweep) -> dict[str, tuple]:
    """job folder -> (replay.share, seed) of the config the run wrote, for completed runs."""
    out = {}
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        assert json.loads((job / "summary.json").read_text())["status"] == "completed", job
        cfg = OmegaConf.load(job / "config.yaml")
        out[job.name] = (cfg.replay.share, cfg.seed)
    return out


# --- multirun over any key -----------------------------------------------------


def test_precheck_composes_every_value_of_a_multirun():
    # The example, and the launcher presets: all compose (nothing raised).
    precheck(["-m", "strategy=replay", "replay.share=0.01,0.05,0.1,0.5", "seed=0,1,2"])
    precheck(["-m", "hydra/launcher=joblib", "model=mlp64,mlp256", "ewc.alpha=1e6,1e8", "strategy=ewc"])
    precheck(["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "seed=0,1"])
    precheck(["-m", "hydra/launcher=submitit_local", "train.epochs=1,2"])
    # A bad value anywhere in a sweep fails before any job starts, naming key and value.
    with pytest.raises(ConfigError, match=r"replay\.share=1\.5"):
        precheck(["-m", "strategy=replay", "replay.share=0.1,1.5", "seed=0,1"])
    with pytest.raises(UserError, match="hydra/launcher='slurmm'"):
        precheck(["-m", "hydra/launcher=slurmm", "seed=0,1"])


def test_bad_sweep_value_starts_no_job(tmp_path):
    result = cl_run("-m", "strategy=replay", "replay.share=0.1,1.5", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["cl-run: error: invalid config: replay.share=1.5: "
                                                  "expected a share in (0, 1]"]
    assert not (tmp_path / "sweep").exists()


# --- launchers ------------------------------------------------------------------


def test_joblib_launcher_runs_the_sweep_in_parallel(tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = cl_run("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "strategy=replay",
                    "replay.share=0.1,0.5", "seed=0,1", f"data.root={tiny_mnist}", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    assert sorted(job_configs(sweep).values()) == [(0.1, 0), (0.1, 1), (0.5, 0), (0.5, 1)]
    assert OmegaConf.load(sweep / "multirun.yaml").hydra.launcher._target_.endswith("JoblibLauncher")


def test_submitit_local_launcher_end_to_end(tiny_mnist, tmp_path):
    """The same launcher plugin as Slurm, with local processes in place of Slurm jobs."""
    sweep = tmp_path / "sweep"
    result = cl_run("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "strategy=replay",
                    "replay.share=0.1,0.5", f"data.root={tiny_mnist}", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    assert sorted(job_configs(sweep).values()) == [(0.1, 0), (0.5, 0)]
    # Each run happened in its own submitit job, whose log holds cl-run's one-line summary.
    logs = sorted((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2
    assert all("cl-run: replay done" in log.read_text() for log in logs)


def test_optuna_experiment_tunes_ewc_alpha_on_a_log_scale():
    path = CONF_DIR / "experiment" / "tune_ewc_alpha.yaml"
    assert path.read_text().startswith("# @package _global_\n")
    preset = OmegaConf.load(path)
    assert {"override /hydra/sweeper": "optuna"} in list(preset.defaults)
    sweeper = preset.hydra.sweeper
    assert sweeper.direction == "maximize" and 1 <= sweeper.n_trials <= 50
    # The search space, parsed by Hydra's override grammar as the sweeper will parse it.
    (alpha,) = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert alpha.key_or_group == "ewc.alpha"
    space = alpha.value()
    assert isinstance(space, IntervalSweep) and space.tags == {"log"}
    assert (space.start, space.end) == (1e2, 1e10)
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401 - the optional `optuna` extra
    except ImportError:
        # Without the extra, cl-run says which sweeper is missing, in one line, before any run.
        with pytest.raises(UserError, match="hydra/sweeper='optuna'"):
            precheck(["-m", "experiment=tune_ewc_alpha"])
    else:
        cfg = compose_cfg(["experiment=tune_ewc_alpha"])
        assert cfg.strategy.name == "ewc" and cfg.model.width == 256
        precheck(["-m", "experiment=tune_ewc_alpha"])


# --- make targets ------------------------------------------------------------------


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", f"PYTHON={sys.executable}", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_make_sweep_ewc_wiring():
    help_text = make("help").stdout
    assert re.search(r"make sweep-replay\s+\S", help_text) and re.search(r"make sweep-ewc\s+\S", help_text)
    dry = make("-n", "sweep-ewc", "ARGS=train.epochs=2")
    assert dry.returncode == 0, dry.stderr
    commands = [shlex.split(line) for line in dry.stdout.replace("\\\n", " ").splitlines()]
    run = next(c for c in commands if c[1:3] == ["-m", "cl_runner.cli"])
    assert {"-m", "hydra/launcher=joblib", "strategy=ewc", "model=mlp256", "ewc.alpha=1e6,1e7,1e8,1e9",
            "seed=0,1,2", "hydra.sweep.dir=multirun/sweep-ewc", "train.epochs=2"} <= set(run[3:])
    precheck(run[3:])  # the sweep the target runs composes, every value of it
    assert commands[-1][1:] == ["-m", "cl_runner.report", "multirun/sweep-ewc"]


@pytest.mark.slow
def test_make_sweep_replay_on_mnist_more_replay_keeps_more_of_task_0(mnist_root, tmp_path):
    """The make target end to end on real MNIST (1 epoch per task, 2 shares x 2 seeds)."""
    folder = tmp_path / "sweep-replay"
    folder.mkdir()
    (folder / "earlier.txt").write_text("an earlier sweep")
    result = make("sweep-replay", f"SWEEP_REPLAY_DIR={folder}", "REPLAY_SHARES=0.01,0.5", "SEEDS=0,1",
                  f"ARGS=train.epochs=1 hydra.launcher.n_jobs=2 data.root={mnist_root}")
    assert result.returncode == 0, result.stderr[-3000:]
    # The earlier sweep was moved aside, not mixed in or deleted.
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("sweep-replay-")]
    assert (aside / "earlier.txt").is_file() and not (folder / "earlier.txt").exists()

    assert sorted(job_configs(folder).values()) == [(0.01, 0), (0.01, 1), (0.5, 0), (0.5, 1)]
    assert "cl-report: 4 runs (4 completed, 0 failed or incomplete) in 2 settings" in result.stdout
    table = pd.read_csv(folder / "report.csv").set_index("replay.share")
    assert list(table["n_seeds"]) == [2, 2]
    assert table.loc[0.5, "final_acc_task0_mean"] > table.loc[0.01, "final_acc_task0_mean"] + 0.3
    assert (folder / "final_acc_vs_replay.share.png").is_file() and (folder / "val_curves.png").is_file()


# --- a joblib sweep stopped early: one line, a documented code, no job left "running" ---------


def _joblib_sweep_stopped(tiny_mnist, tmp_path, stop):
    """A two-job joblib sweep stopped by `stop(proc, sweep)` once both jobs have logged epochs."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.default_int_handler)  # SIGINT reaches the child (see conftest)
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "cl_runner.cli", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                             "seed=0,1", "data.verify=false", f"data.root={tiny_mnist}", "train.epochs=2000",
                             "train.progress=false", "device=cpu", f"hydra.sweep.dir={sweep}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def epochs(job: str) -> int:
        log = sweep / job / "train_log.csv"
        return len(log.read_text().splitlines()) - 1 if log.exists() else 0

    try:
        deadline = time.monotonic() + 240
        while epochs("0") < 3 or epochs("1") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        stop(proc, sweep)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    statuses = {job: json.loads((sweep / job / "summary.json").read_text()) for job in ("0", "1")}
    return proc.returncode, err, sweep, statuses


@pytest.mark.slow
def test_a_killed_joblib_worker_fails_the_sweep_in_one_line(tiny_mnist, tmp_path):
    import os
    import signal

    def kill_job_0(proc, sweep):
        os.kill(int((sweep / "0" / ".cl-run.lock").read_text()), signal.SIGKILL)

    code, err, sweep, statuses = _joblib_sweep_stopped(tiny_mnist, tmp_path, kill_job_0)
    assert code == 6, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("cl-run: error: the joblib launcher could not run the sweep: A worker process managed "
                               "by the executor was unexpectedly terminated"), lines[0]
    assert f"finished epochs kept in 2 job folder(s) of {sweep} (0, 1)" in lines[0]
    for job, summary in statuses.items():  # the killed job, and the one the launcher ended with it
        assert summary["status"] == "failed", (job, summary)
        assert "the sweep's launcher failed; this job's process ended with it" in summary["error"]
        assert not (sweep / job / ".cl-run.lock").exists()


@pytest.mark.slow
def test_ctrl_c_to_a_joblib_sweep_marks_its_jobs_interrupted(tiny_mnist, tmp_path):
    import signal

    code, err, sweep, statuses = _joblib_sweep_stopped(tiny_mnist, tmp_path, lambda proc, _: proc.send_signal(signal.SIGINT))
    assert code == 130, err
    assert err.strip().splitlines() == [f"cl-run: interrupted (KeyboardInterrupt); finished epochs kept in 2 job folder(s) "
                                        f"of {sweep} (0, 1)"]
    for job, summary in statuses.items():
        assert summary["status"] == "interrupted", (job, summary)
