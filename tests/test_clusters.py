"""The cluster launcher presets against real clusters started here: a one-node Slurm cluster
(hydra/launcher=slurm) and a Ray head on 127.0.0.1 (hydra/launcher=ray_cluster), each running
a 2-run sweep on tiny generated data that cl-report then reads.

They need Debian's slurm-wlm and munge, root, and the `ray` extra: `make install-clusters`.
Without them these tests fail, saying what to install; `-m "not cluster"` deselects them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .cluster.ray_head import RayHead
from .cluster.slurm import SlurmCluster
from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TINY = ("strategy=replay", "replay.share=0.1,0.5", "data.verify=false", "train.iterations=3", "train.progress=false")
# What a CPU-only partition needs: the preset asks for one GPU (which sbatch refuses where
# there is none), 4 CPUs and 16 GB per run; one core and 1 GB let both runs share this node.
SLURM_CPU = ("hydra.launcher.partition=cpu", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
             "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10")


def run(command: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env)


def assert_sweep_completed_and_reported(sweep: Path, env: dict[str, str]) -> None:
    """Both runs completed, with their own replay.share, and cl-report reads them."""
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    report = run(["-m", "cl_runner.report", str(sweep)], env, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "cl-report: 2 runs (2 completed, 0 failed or incomplete) in 2 settings" in report.stdout
    table = pd.read_csv(sweep / "report.csv")
    assert sorted(table["replay.share"]) == [0.1, 0.5]
    assert list(table["n_seeds"]) == [1, 1]


def started(cluster):
    """The test cluster, started; a missing install or a failed start fails the test, saying why."""
    try:
        cluster.start()
    except RuntimeError as err:  # not installed, not root, or a daemon did not come up
        problem = str(err)
    except BaseException:
        cluster.stop()
        raise
    else:
        return cluster
    cluster.stop()
    pytest.fail(problem, pytrace=False)  # outside the except: the message alone, no chained traceback


@pytest.fixture(scope="module")
def slurm():
    cluster = started(SlurmCluster(partition="cpu"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def ray_head():
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:  # the `ray` extra
        pytest.fail("hydra-ray-launcher is not installed here: `make install-clusters` (pip install -e \".[dev,ray]\")",
                    pytrace=False)
    head = started(RayHead(num_cpus=2))
    yield head
    head.stop()


def test_slurm_preset_runs_a_sweep_as_one_job_array(slurm, tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run(["-m", "cl_runner.cli", "-m", "hydra/launcher=slurm", *SLURM_CPU, *TINY, f"data.root={tiny_mnist}",
                  f"hydra.sweep.dir={sweep}"], slurm.env)
    assert result.returncode == 0, f"{result.stderr[-3000:]}\n{slurm.logs()}"
    # One array job of two tasks, with the CPU resources asked for, each run a Slurm task of it.
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    job_id = script.parent.name
    lines = script.read_text().splitlines()
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=cpu", "#SBATCH --gpus-per-node=0",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --mem=1GB", "#SBATCH --time=10", "#SBATCH --job-name=cl-run"):
        assert line in lines, f"{line!r} not in the submitted script"
    for task in (0, 1):
        log = (sweep / ".submitit" / f"{job_id}_{task}" / f"{job_id}_{task}_0_log.out").read_text()
        assert f"JobEnvironment(job_id={job_id}_{task}," in log
        assert "cl-run: replay done" in log
    assert_sweep_completed_and_reported(sweep, slurm.env)


def test_slurm_preset_as_shipped_asks_for_a_gpu(slurm, tiny_mnist, tmp_path):
    """The preset's defaults reach sbatch; on this CPU-only cluster sbatch refuses the GPU."""
    sweep = tmp_path / "sweep"
    result = run(["-m", "cl_runner.cli", "-m", "hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                  "hydra.launcher.setup=[module load cuda]", "seed=0,1,2", f"data.root={tiny_mnist}",
                  "data.verify=false", f"hydra.sweep.dir={sweep}"], slurm.env, timeout=120)
    assert result.returncode == 6, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert (f"cl-run: error: the Slurm launcher (submitit) could not run the sweep: sbatch: error: Invalid generic "
            f"resource (gres) specification (its job scripts and logs: {sweep / '.submitit'})") in result.stderr
    assert not any(p.name.isdigit() for p in sweep.iterdir())  # no run started
    (script,) = (sweep / ".submitit").glob(".submission_file_*.sh")  # kept when sbatch refuses
    lines = script.read_text().splitlines()
    for line in ("#SBATCH --array=0-2%3", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=16GB", "#SBATCH --time=120", "#SBATCH --ntasks-per-node=1", "module load cuda"):
        assert line in lines, f"{line!r} not in the submitted script"


def test_ray_cluster_preset_runs_a_sweep_on_a_running_head(ray_head, tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = run(["-m", "cl_runner.cli", "-m", "hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_gpus=0",
                  "hydra.launcher.ray.remote.num_cpus=1", *TINY, f"data.root={tiny_mnist}", f"hydra.sweep.dir={sweep}"],
                 ray_head.env)
    assert result.returncode == 0, f"{result.stderr[-3000:]}\n{ray_head.log()}"
    # The preset's address=auto joined the head started here (RAY_ADDRESS), not a private Ray.
    assert f"Connecting to existing Ray cluster at address: {ray_head.address}" in result.stderr
    # Each run ran in a Ray worker process, whose output Ray forwards with its pid.
    worker_lines = [line for line in result.stdout.splitlines() if "cl-run: replay done" in line]
    assert len(worker_lines) == 2 and all("(_run_job pid=" in line for line in worker_lines), result.stdout
    assert_sweep_completed_and_reported(sweep, ray_head.env)
