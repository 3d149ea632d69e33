"""Every setting on the command line takes effect, or the run is refused (cl_runner.usage):
the refusals and their hints, sweeps (refused only when no job reads the key), the jobs'
record of what they ignored, cl-report's flags, and that what is declared unused really
changes nothing (and what is read does)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from cl_runner.checks import Node
from cl_runner.config import node_names
from cl_runner.usage import UnusedSetting

from .conftest import cl_run, compose_cfg, config_error

REFUSED = [
    # (overrides, the key refused, what the line must say to select)
    (["replay.share=0.5"], "replay.share", "add strategy=replay"),
    (["ewc.alpha=1e7"], "ewc.alpha", "add strategy=ewc"),
    (["strategy=ewc", "replay.share=0.5"], "replay.share", "add strategy=ewc_replay"),  # keeps EWC
    (["strategy=si", "replay.share=0.5"], "replay.share", "add strategy.plugins=[si,replay]"),
    (["der.alpha=0.1"], "der.alpha", "add strategy=der (or derpp)"),
    (["strategy=der", "der.beta=0.1"], "der.beta", "add strategy=derpp"),
    (["strategy=ewc", "ewc.gamma=0.5"], "ewc.gamma", "add ewc.mode=online"),
    (["joint.task_shares=[0.5,1.0]"], "joint.task_shares", "add strategy=joint"),
    (["logger.mlflow.experiment=x"], "logger.mlflow.experiment", "add logger=mlflow"),
    (["experiment=split_mnist_protocol", "train.epochs=1"], "train.epochs", "train.iterations=null"),
    (["train.lr_gamma=0.5"], "train.lr_gamma", "train.lr_schedule=multistep"),
    (["model.depth=0", "model.width=32"], "model.width", "model.depth=1"),
    (["dataset=permuted_mnist", "dataset.tasks=[[0,1]]"], "dataset.tasks", "dataset.num_tasks"),
    (["dataset.tasks=[[0,1],[2,3]]", "dataset.num_tasks=3"], "dataset.num_tasks", "dataset.tasks"),
    (["dataset.angles=[0,90]"], "dataset.angles", "dataset=rotated_mnist"),
    (["strategy=replay", "replay.per_class=10", "replay.share=0.5"], "replay.share", "replay.per_class"),
    (["strategy=replay", "replay.batch_size=64"], "replay.batch_size", "replay.mix=batch"),
    (["-m", "replay.share=0.01,0.5"], "replay.share", "add strategy=replay"),  # the student's sweep
    (["-m", "seed=0,1,2", "replay.share=0.01,0.5"], "replay.share", "add strategy=replay"),
    (["-m", "strategy=naive,si", "ewc.gamma=0.5"], "ewc.gamma", "add strategy=ewc"),
]


@pytest.mark.parametrize("overrides, key, hint", REFUSED, ids=[" ".join(o) for o, _, _ in REFUSED])
def test_a_key_the_run_does_not_read_is_refused_naming_what_to_select(overrides, key, hint):
    err = config_error(overrides)
    assert isinstance(err, UnusedSetting), err
    assert err.key == key and str(err).startswith(f"invalid config: {key}=") and hint in str(err), str(err)


ACCEPTED = [
    ["strategy=replay", "replay.share=0.5"],
    ["strategy=ewc_replay", "ewc.alpha=1e7", "replay.share=0.2"],
    ["strategy=derpp", "der.beta=0.1"],
    ["strategy=ewc", "ewc.mode=online", "ewc.gamma=0.5"],
    ["strategy=joint", "joint.task_shares=[0.5,1.0]"],
    ["experiment=split_mnist_protocol", "train.iterations=null", "train.epochs=1"],
    ["experiment=split_mnist_protocol", "strategy=naive"],  # the preset sets ewc.*, replay.*, ...: not typed
    ["strategy.plugins=[si,replay]", "replay.share=0.5"],
    ["logger.mlflow.enabled=false"],  # the switch itself is read
    ["-m", "strategy=naive,replay", "replay.share=0.1"],  # the replay job reads it
    ["-m", "strategy=naive,ewc", "ewc.mode=separate,online", "ewc.gamma=0.5"],  # read where ewc meets online
    ["-m", "strategy=naive,si,replay", "replay.share=0.1,0.5", "seed=0,1"],
]


@pytest.mark.parametrize("overrides", ACCEPTED, ids=[" ".join(o) for o in ACCEPTED])
def test_keys_that_some_run_reads_are_accepted(overrides):
    assert config_error(overrides) is None


def test_declared_keys_are_fields_of_their_node():
    """A node's unused() can only name its own keys (a typo there would refuse nothing)."""
    for overrides in (["strategy=replay", "replay.policy=reservoir", "replay.memory_size=10"], ["strategy=der"],
                      ["model.depth=0"], ["dataset=rotated_mnist"], ["experiment=split_mnist_protocol"],
                      ["strategy=agem", "agem.policy=reservoir", "agem.memory_size=10"], ["strategy=ewc"]):
        cfg = compose_cfg(overrides)
        for name in [*node_names(), "logger.mlflow"]:
            node = OmegaConf.to_object(OmegaConf.select(cfg, name))
            assert isinstance(node, Node)
            assert set(node.unused()) <= {f.name for f in dataclasses.fields(node)}, (name, node.unused())


def test_the_cli_refuses_in_one_line_before_anything_is_made(tmp_path):
    result = cl_run("replay.share=0.5", "train.epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["cl-run: error: invalid config: replay.share=0.5 is used only by "
                                          "strategies with the replay plugin: add strategy=replay"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_sweep_job_that_ignores_a_key_says_so_and_cl_report_flags_identical_results(tiny_mnist, tmp_path):
    sweep = tmp_path / "sweep"
    result = cl_run("-m", "strategy=naive,replay", "replay.share=0.1,0.5", f"data.root={tiny_mnist}", "data.verify=false",
                    "train.iterations=3", "train.progress=false", "device=cpu", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    jobs = {}
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        cfg, summary = OmegaConf.load(job / "config.yaml"), json.loads((job / "summary.json").read_text())
        jobs[(cfg.strategy.name, cfg.replay.share)] = (job, summary)
    assert len(jobs) == 4
    for (strategy, _), (_, summary) in jobs.items():
        unused = summary["unused_overrides"]
        assert (list(unused) == ["replay.share"] and "add strategy=replay" in unused["replay.share"]) \
            if strategy == "naive" else unused == {}
    naive = [(job / "metrics.csv").read_bytes() for (s, _), (job, _) in jobs.items() if s == "naive"]
    replay = [(job / "metrics.csv").read_bytes() for (s, _), (job, _) in jobs.items() if s == "replay"]
    assert naive[0] == naive[1] and replay[0] != replay[1]  # what the report's flag rests on

    printed = subprocess.run([sys.executable, "-m", "cl_runner.report", str(sweep), "--out", str(tmp_path / "report")],
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    assert "in 4 settings (strategies naive, replay)" in printed.stdout
    assert "cl-report: warning: replay.share changed nothing where strategy=naive" in printed.stdout
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Strategies: `naive`, `replay`; a column of the table." in md
    assert "`replay.share` (changed nothing: see the notes)" in md
    assert ("`replay.share` changed nothing where strategy=naive: its values 0.1, 0.5 gave byte-identical "
            "metrics.csv; those runs did not read it (replay.share is used only by strategies with the replay "
            "plugin: add strategy=replay)") in md


def test_cl_report_names_a_single_strategy_and_flags_a_key_that_changed_nothing(tmp_path):
    from .report_runs import make_report, write_run

    write_run(tmp_path / "runs" / "a", share=0.01)
    write_run(tmp_path / "runs" / "b", share=0.5)  # the same numbers: a naive run ignores the share
    _, _, md, html = make_report(tmp_path)
    assert "Strategy: `naive` (every run)." in md and "naive" in html
    assert "`replay.share` changed nothing on every seed and setting" in md
    assert "check that the strategy reads it" in md  # these runs' summaries predate unused_overrides

    write_run(tmp_path / "runs" / "c", share=0.9, matrix=[[0.9, 0.1], [0.7, 0.9]])
    _, _, md, _ = make_report(tmp_path, "out-2")
    assert "changed nothing" not in md  # 0.9 changed the numbers: the key is read


# What a node declares unused must change nothing; the same key where it is read must.
UNREAD = [
    (["strategy=naive"], "replay.share", ("0.05", "0.5")),
    (["strategy=der"], "der.beta", ("0.1", "2.0")),
    (["strategy=ewc", "dataset.tasks=[[0,1],[2,3],[4,5]]"], "ewc.gamma", ("0.1", "0.9")),
    (["model.depth=0"], "model.width", ("8", "128")),
    (["strategy=replay", "replay.per_class=5"], "replay.share", ("0.05", "0.5")),
]
READ = [
    (["strategy=replay"], "replay.share", ("0.05", "0.5")),
    (["strategy=derpp"], "der.beta", ("0.1", "2.0")),
    (["strategy=ewc", "ewc.mode=online", "dataset.tasks=[[0,1],[2,3],[4,5]]"], "ewc.gamma", ("0.1", "0.9")),
    (["model.depth=1"], "model.width", ("8", "128")),
]


def _metrics(overrides: list[str], data, folder) -> bytes:
    from cl_runner.run import run

    cfg = compose_cfg([*overrides, f"data.root={data}", "data.verify=false", "data.download=false", "train.iterations=4",
                       "train.progress=false", "device=cpu", "train.batch_size=64", "checkpoint.every_task=false"])
    run(cfg, folder)
    return (folder / "metrics.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("base, key, values", UNREAD + READ, ids=[f"{' '.join(b)} {k}" for b, k, _ in UNREAD + READ])
def test_a_key_declared_unused_changes_nothing_and_a_read_one_does(base, key, values, tiny_mnist, tmp_path):
    first, second = (_metrics([*base, f"{key}={v}"], tiny_mnist, tmp_path / v) for v in values)
    assert (first == second) == ((base, key, values) in UNREAD)
