"""The Python API (cl_runner.api): the CLI's numbers, checks, messages and folder rules from
Python, sweeps as lists of override sets, global state left as it was; `make notebook` on it."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from cl_runner import api, rundir
from cl_runner.errors import ConfigError
from cl_runner.usage import UnusedSetting

from .conftest import cl_run, interrupted_at


def tiny(data) -> list[str]:
    return [f"data.root={data}", "data.verify=false", "data.download=false", "train.epochs=1", "train.progress=false",
            "device=cpu"]


# Run in a fresh interpreter: no schema registered, no Hydra initialised, nothing imported.
FRESH = textwrap.dedent('''
    import json, logging, signal, sys
    import pandas as pd
    overrides, folder, cli_folder = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    state = lambda: [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)] + [
        repr(logging.getLogger(n).handlers) for n in ("", "cl_runner", "cl_runner.notice")]
    before = state()
    from cl_runner import api
    result = api.run(overrides, folder=folder)
    pd.testing.assert_frame_equal(result.metrics, pd.read_csv(cli_folder + "/metrics.csv"))
    out = {"status": result.status, "figures": sorted(result.figures), "matrix": result.accuracy_matrix.values.tolist(),
           "summary_matrix": result.summary["accuracy_matrix"], "same_state": state() == before}
    try:
        api.run(overrides, folder=folder)
    except api.ConfigError as err:
        out["again"] = str(err)
    out["errors"] = {}
    for bad in (["replay.share=0.5"], ["model.widht=3"], ["strategy=nope"], ["train.epochs=0"]):
        try:
            api.compose(bad)
        except api.UserError as err:
            out["errors"][" ".join(bad)] = [type(err).__name__, str(err)]
    print(json.dumps(out))
''')


@pytest.mark.slow  # seconds of training each (20-60 s on a busy 2-core machine)
def test_a_fresh_interpreter_runs_the_cli_s_experiment_and_gets_its_numbers(tiny_mnist, tmp_path):
    overrides = tiny(tiny_mnist)
    cli = cl_run(*overrides, f"hydra.run.dir={tmp_path / 'cli'}")
    assert cli.returncode == 0, cli.stderr
    done = subprocess.run([sys.executable, "-c", FRESH, json.dumps(overrides), str(tmp_path / "api"), str(tmp_path / "cli")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed" and out["figures"] == ["accuracy_matrix", "curves"] and out["same_state"]
    assert sum(out["matrix"], []) == pytest.approx(sum(out["summary_matrix"], []), abs=1e-6)
    assert (tmp_path / "api" / "metrics.csv").read_bytes() == (tmp_path / "cli" / "metrics.csv").read_bytes()
    assert "already holds a run" in out["again"] and "overwrite" in out["again"]
    for bad, (kind, message) in out["errors"].items():  # the CLI's own line, without its "cl-run: error: "
        line = cl_run(*bad.split(), f"hydra.run.dir={tmp_path / 'bad'}").stderr.strip().splitlines()[-1]
        assert line == f"cl-run: error: {message}", bad
    assert out["errors"]["replay.share=0.5"][0] == "UnusedSetting"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folders are relative, as cl-run's
    return tmp_path


@pytest.mark.slow
def test_default_folders_are_new_and_overwrite_is_asked_for(tiny_mnist, in_tmp):
    first, second = api.run(tiny(tiny_mnist)), api.run(tiny(tiny_mnist))
    assert first.folder != second.folder
    assert first.folder.parent.parent == second.folder.parent.parent == in_tmp / "outputs"
    with pytest.raises(ConfigError, match="already holds a run"):
        api.run(tiny(tiny_mnist) + ["seed=1"], folder=first.folder)
    again = api.run(tiny(tiny_mnist) + ["seed=1"], folder=first.folder, overwrite=True)
    assert again.config.seed == 1 and again.overrides[-1] == "seed=1"
    assert not (first.folder / rundir.LOCK).exists()  # released


def test_compose_then_run_and_compose_inside_a_users_hydra(tiny_mnist, in_tmp):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cl_runner.config import CONF_DIR

    cfg = api.compose(["strategy=ewc", "ewc.alpha=1e3", *tiny(tiny_mnist)])
    assert cfg.ewc.alpha == 1e3 and "hydra" not in cfg
    cfg.seed = 2  # a composed config may be changed in Python, and is checked again by run
    result = api.run(cfg, folder="from-config")
    assert result.status == "completed" and result.config.seed == 2 and result.config.ewc.alpha == 1e3
    cfg.train.lr = -1.0
    with pytest.raises(ConfigError, match="train.lr"):
        api.run(cfg, folder="bad")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        mine = GlobalHydra.instance().hydra
        assert api.compose(["strategy=si"]).strategy.name == "si"
        assert GlobalHydra.instance().hydra is mine and compose("config").strategy.name == "naive"


def test_one_run_takes_one_value_and_no_flags():
    with pytest.raises(ConfigError, match="api.sweep"):
        api.compose(["replay.share=0.1,0.5"])
    with pytest.raises(ConfigError, match="not cl-run's flags"):
        api.compose(["-m", "seed=1"])


@pytest.mark.slow
def test_a_sweep_of_override_sets(tiny_mnist, in_tmp):
    base = tiny(tiny_mnist)
    with pytest.raises(UnusedSetting, match="replay.share=0.1,0.5 is used only by strategies with the replay plugin"):
        api.sweep([[*base, "replay.share=0.1"], [*base, "strategy=si", "replay.share=0.5"]])
    assert not (in_tmp / "multirun").exists() or not any((in_tmp / "multirun").rglob("summary.json"))

    results = api.sweep([[*base, "replay.share=0.1"], [*base, "strategy=replay", "replay.share=0.1"]], folder="sweep")
    assert [r.folder for r in results] == [in_tmp / "sweep" / "0", in_tmp / "sweep" / "1"]
    assert list(results[0].summary["unused_overrides"]) == ["replay.share"] and results[1].summary["unused_overrides"] == {}
    table = api.table(results)
    assert list(table["job"]) == ["0", "1"] and table["what"][1].startswith("replay share=0.1")
    assert table["average_accuracy"].notna().all()

    named = api.sweep({"tiny-lr": [*base, "train.lr=1e-9"], "diverges": [*base, "train.lr=1e30"]}, folder="named")
    assert [r.folder.name for r in named] == ["tiny-lr", "diverges"]
    assert [r.status for r in named] == ["completed", "failed"]  # a failed job is recorded; the sweep goes on
    assert "diverged" in named[1].summary["error"]
    with pytest.raises(ConfigError, match="name of its folder"):
        api.sweep({"a/b": base})


def test_ctrl_c_interrupts_and_leaves_the_handlers_as_they_were(tiny_mnist, in_tmp, monkeypatch):
    import cl_runner.run as run_module

    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    logged = [logging.getLogger(n).handlers[:] for n in ("", "cl_runner")]
    monkeypatch.setattr(run_module, "train_epoch", interrupted_at(1, 1))
    with pytest.raises(KeyboardInterrupt):
        api.run(tiny(tiny_mnist), folder="stopped")
    summary = json.loads((in_tmp / "stopped" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert not (in_tmp / "stopped" / rundir.LOCK).exists() and rundir.any_held() is None
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert [logging.getLogger(n).handlers for n in ("", "cl_runner")] == logged


@pytest.mark.slow
def test_make_notebook_labels_rows_from_the_config_that_ran(tiny_mnist, in_tmp, capsys):
    from cl_runner import notebook

    notebook.main(["naive", "ewc_replay", "--", *tiny(tiny_mnist), "train.epochs=2"])
    (md,) = (in_tmp / "outputs" / "notebook").glob("*/notebook.md")
    rows = [line for line in md.read_text().splitlines() if line.startswith("| naive") or line.startswith("| ewc_replay")]
    assert "naive · mlp width=64 depth=1 · 2 epochs per task" in rows[0]
    assert "ewc_replay (ewc alpha=1e8; replay share=0.1) · mlp width=256 depth=1 · 2 epochs per task" in rows[1]
    assert "100 epochs" not in md.read_text()
    with pytest.raises(SystemExit, match="replay.share=0.5 is used only"):
        notebook.main(["naive", "ewc", "--", *tiny(tiny_mnist), "replay.share=0.5"])
    assert notebook.main(["naive", "replay10", "--", *tiny(tiny_mnist), "replay.share=0.5"]) is None  # replay10 reads it

