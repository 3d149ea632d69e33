"""`cl-report` on real multirun folders: its numbers against the runs' own CSVs, recomputed
here with pandas alone, and failed or broken runs listed instead of dropped.

One tiny sweep (generated data, three EWC strengths x two seeds, a few steps) serves every
test: alpha=1e300 makes both its runs diverge, so the sweep has real failed runs.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from cl_runner import report

from .conftest import REPO, cl_run

ALPHAS = {1.0, 100.0, 1e300}


@pytest.fixture(scope="module")
def sweep(tiny_mnist, tmp_path_factory):
    """A finished multirun folder: strategy=ewc, ewc.alpha=1,100,1e300 x seed=0,1."""
    folder = tmp_path_factory.mktemp("sweep") / "ewc"
    result = cl_run("-m", "strategy=ewc", "ewc.alpha=1,100,1e300", "seed=0,1", f"data.root={tiny_mnist}",
                    "data.verify=false", "train.iterations=3", "train.progress=false", f"hydra.sweep.dir={folder}")
    # cl-run keeps going after a diverged run in a multirun (it is listed by cl-report).
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("run failed: training diverged") == 2, result.stderr
    return folder


def cl_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_runner.report", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def expected_from_files(run_dir):
    """(alpha, seed, status, final accuracy per task, forgetting) straight from the files."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    status = json.loads((run_dir / "summary.json").read_text())["status"]
    m = pd.read_csv(run_dir / "metrics.csv")
    test = m[(m["split"] == "test") & (m["train_task"] >= 0)]
    after = {}  # train_task -> test accuracy per eval task at that task's last epoch
    for task, rows in test.groupby("train_task"):
        last = rows[rows["epoch"] == rows["epoch"].max()].sort_values("eval_task")
        after[task] = last["acc"].to_numpy()
    if not after:
        return float(cfg.ewc.alpha), int(cfg.seed), status, None, None
    tasks = len(after)
    final = after[tasks - 1]
    # Forgetting (Chaudhry et al.): best accuracy before the last task minus the final one.
    forgetting = None
    if tasks >= 2:
        forgetting = np.mean([max(after[i][j] for i in range(tasks - 1)) - final[j] for j in range(tasks - 1)])
    return float(cfg.ewc.alpha), int(cfg.seed), status, final, forgetting


def job_of(sweep, alpha: float, seed: int) -> str:
    """The job folder of one (alpha, seed), read from the configs rather than assumed."""
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        if float(cfg.ewc.alpha) == alpha and cfg.seed == seed:
            return job.name
    raise AssertionError(f"no job with ewc.alpha={alpha} seed={seed} in {sweep}")


def test_report_numbers_match_the_runs_own_csvs(sweep, tmp_path):
    result = cl_report(sweep)
    assert result.returncode == 0, result.stderr
    assert "6 runs (4 completed, 2 failed or incomplete) in 3 settings" in result.stdout
    for name in ("report.csv", "report.md", "report.html", "runs.csv", "final_acc_vs_ewc.alpha.png", "val_curves.png"):
        assert (sweep / name).is_file() and (sweep / name).stat().st_size > 0, name

    runs = [expected_from_files(sweep / str(job)) for job in range(6)]
    table = pd.read_csv(sweep / "report.csv")
    # Grouped by the one swept key; seed, data.root etc. are not settings.
    assert [c for c in table.columns if not c.startswith(("n_", "seeds", "final_acc", "average", "forgetting",
                                                            "backward", "forward"))] == ["ewc.alpha"]
    assert set(table["ewc.alpha"]) == ALPHAS and len(table) == 3

    for alpha in (1.0, 100.0):
        mine = [r for r in runs if r[0] == alpha]
        assert all(r[2] == "completed" for r in mine)
        row = table[table["ewc.alpha"] == alpha].iloc[0]
        assert row["n_seeds"] == 2 and row["n_failed"] == 0 and row["seeds"] == "0 1"
        finals = np.array([r[3] for r in mine])  # seeds x tasks
        for task in range(2):
            assert row[f"final_acc_task{task}_mean"] == pytest.approx(finals[:, task].mean(), abs=1e-9)
            assert row[f"final_acc_task{task}_std"] == pytest.approx(finals[:, task].std(ddof=1), abs=1e-9)
        assert row["average_accuracy_mean"] == pytest.approx(finals.mean(axis=1).mean(), abs=1e-9)
        assert row["average_accuracy_std"] == pytest.approx(finals.mean(axis=1).std(ddof=1), abs=1e-9)
        forgetting = np.array([r[4] for r in mine])
        assert row["forgetting_mean"] == pytest.approx(forgetting.mean(), abs=1e-9)
        assert row["forgetting_std"] == pytest.approx(forgetting.std(ddof=1), abs=1e-9)
        # ...and the runs' own summary.json agrees (to its 6 rounded digits).
        for job in range(6):
            if runs[job][0] == alpha:
                summary = json.loads((sweep / str(job) / "summary.json").read_text())
                assert summary["final_test_acc"] == pytest.approx(list(runs[job][3]), abs=1e-6)

    diverged = table[table["ewc.alpha"] == 1e300].iloc[0]
    assert diverged["n_seeds"] == 0 and diverged["n_failed"] == 2
    assert math.isnan(diverged["final_acc_task0_mean"])  # no numbers made up for it

    md = (sweep / "report.md").read_text()
    table_rows = [line for line in md.splitlines() if line.startswith("| ") and "run folder" not in line]
    settings_rows = table_rows[1:4]  # header, then one row per setting
    assert [line.split(" | ")[0] for line in settings_rows] == ["| 1", "| 100", "| 1e+300"]
    row_100 = table[table["ewc.alpha"] == 100.0].iloc[0]
    assert f"{row_100['final_acc_task0_mean']:.3f} ± {row_100['final_acc_task0_std']:.3f}" in settings_rows[1]
    assert settings_rows[2].split(" | ")[1:3] == ["0", "2"]  # seeds 0, failed 2


def test_failed_and_broken_runs_are_listed_not_dropped(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    for name in ("report.csv", "report.md", "runs.csv"):
        (copy / name).unlink(missing_ok=True)
    ok, killed, running, cut = (copy / job_of(copy, a, s) for a, s in ((1, 0), (1, 1), (100, 0), (100, 1)))
    diverged = [copy / job_of(copy, 1e300, s) for s in (0, 1)]
    # Killed before it wrote anything but Hydra's own files.
    for name in ("summary.json", "metrics.csv", "config.yaml"):
        (killed / name).unlink()
    # Still running.
    summary = json.loads((running / "summary.json").read_text())
    (running / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    # Says completed, but its metrics.csv is cut short.
    (cut / "metrics.csv").write_text("train_task,epoch,eval_task,split,loss,acc\n-1,0,0,val,2.3,0.1\n")

    result = cl_report(copy, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "6 runs (1 completed, 5 failed or incomplete) in 3 settings" in result.stdout
    assert not (copy / "report.md").exists()  # --out was honoured

    runs = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("path")
    assert runs["status"].to_dict() == {str(ok): "completed", str(killed): "missing", str(running): "running",
                                        str(cut): "incomplete", str(diverged[0]): "failed",
                                        str(diverged[1]): "failed"}
    assert list(runs["ok"]) == [p == str(ok) for p in runs.index]

    table = pd.read_csv(tmp_path / "out" / "report.csv").set_index("ewc.alpha")
    assert table.loc[1.0, "n_seeds"] == 1 and table.loc[1.0, "n_failed"] == 1
    assert table.loc[100.0, "n_seeds"] == 0 and table.loc[100.0, "n_failed"] == 2
    assert table.loc[1.0, "final_acc_task0_mean"] == pytest.approx(runs.loc[str(ok), "final_acc_task0"])

    md = (tmp_path / "out" / "report.md").read_text()
    failed_section = md.split("## Failed or incomplete runs", 1)[1]
    for job, words in {killed: "no summary.json", running: "status running",
                       cut: "metrics.csv has no final test accuracy", diverged[0]: "Diverged: training diverged",
                       diverged[1]: "Diverged: training diverged"}.items():
        line = next(line for line in failed_section.splitlines() if f"`{job}`" in line)
        assert words in line, line
    assert f"`{ok}`" not in failed_section
    # The job killed early still shows its setting and how to rerun it (from .hydra/).
    line = next(line for line in failed_section.splitlines() if f"`{killed}`" in line)
    assert "| ewc.alpha=1 |" in line and "seed=1" in line


def test_sweep_with_missing_or_extra_jobs_gets_a_note(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    shutil.rmtree(copy / "5")
    assert cl_report(copy).returncode == 0
    assert "asks for 6 jobs but 5 run folders exist" in (copy / "report.md").read_text()
    shutil.copytree(copy / "0", copy / "5")
    shutil.copytree(copy / "0", copy / "6")
    assert cl_report(copy).returncode == 0
    assert "7 run folders but the sweep asks for 6 jobs" in (copy / "report.md").read_text()


def test_run_folders_given_one_by_one(sweep, tmp_path):
    """Several run folders (not a multirun folder): the same grouping; the report goes into
    their common parent unless --out says otherwise."""
    copy = tmp_path / "runs"
    for job in (0, 1, 2, 3):  # alpha 1 and 100, two seeds each
        shutil.copytree(sweep / str(job), copy / f"run{job}")
    result = cl_report(*(copy / f"run{job}" for job in (0, 1, 2, 3)))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(copy / "report.csv")
    assert list(table["ewc.alpha"]) == [1.0, 100.0] and list(table["n_seeds"]) == [2, 2]
    # One run folder alone: one setting, no swept keys.
    result = cl_report(copy / "run0", "--out", tmp_path / "one")
    assert result.returncode == 0, result.stderr
    one = pd.read_csv(tmp_path / "one" / "report.csv")
    assert len(one) == 1 and one.loc[0, "n_seeds"] == 1
    assert "Swept keys: none (one setting)" in (tmp_path / "one" / "report.md").read_text()


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such folder"),
    ("file", "not a folder"),
    ("empty", "no cl-run output folders in it"),
])
def test_bad_path_is_one_line_and_exit_2(tmp_path, kind, message):
    path = tmp_path / kind
    if kind == "file":
        path.write_text("not a run")
    elif kind == "empty":
        path.mkdir()
    result = cl_report(path)
    assert result.returncode == report.EXIT_BAD_PATH == 2
    assert result.stderr.strip() == f"cl-report: error: {path}: {message}" + (
        " (none has summary.json, metrics.csv or .hydra/config.yaml)" if "output folders" in message else "")
    assert result.stdout == ""


def test_swept_keys_leave_out_seed_paths_and_newer_schema_keys():
    def run(**config):
        return report.Run(path=REPO, status="completed", config=config)

    runs = [run(**{"seed": 0, "data.root": "/a", "train.progress": True, "replay.share": 0.1, "model.width": 64}),
            run(**{"seed": 1, "data.root": "/b", "train.progress": False, "replay.share": 0.5, "model.width": 64,
                   "si.c": 1.0})]  # si.* exists only in configs written by a newer cl-runner
    assert report.swept_keys(runs) == ["replay.share"]
    assert report.swept_keys(runs[:1]) == []
