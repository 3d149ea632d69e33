"""A resume checks what it continues (`cl_runner.continuation`) and refuses in one line what does not fit.

Each case tampers with a copy of an interrupted run's folder -- its rows, its checkpoint, its
trackers.json, its config.yaml -- and resumes it: a checkpoint of another run is exit 2
(ConfigError), a folder that is not whole exit 7 (DamagedRunError), the message names the
folder, the file and what does not fit, and every file of the folder is byte for byte as it
was. The untouched copy resumes to the numbers of an uninterrupted run. Tiny generated data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cl_runner.errors import EXIT_CONFIG, EXIT_DAMAGED, ConfigError, DamagedRunError

from .conftest import REPO, compose_cfg, interrupted_at

# EWC and replay (plugin state: Fisher, anchors, a memory of examples), the optimiser's state kept.
TINY = ["data.verify=false", "train.iterations=3", "train.progress=false", "dataset.tasks=[[0,1],[2,3]]", "device=cpu",
        "strategy=ewc_replay", "ewc.alpha=100", "train.reset_optimizer=false"]


def _run(tiny_mnist, folder: Path, *extra: str) -> dict:
    from cl_runner.run import run

    return run(compose_cfg([*TINY, f"data.root={tiny_mnist}", *extra]), folder)


def _interrupted(tiny_mnist, folder: Path, *extra: str) -> Path:
    import cl_runner.run as run_module

    real = run_module.train_epoch
    run_module.train_epoch = interrupted_at(task=1, epoch=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_mnist, folder, *extra)
    finally:
        run_module.train_epoch = real
    return folder


@pytest.fixture(scope="module")
def template(tiny_mnist, tmp_path_factory) -> Path:
    """A run interrupted as task 1 began: its checkpoint holds task 0."""
    return _interrupted(tiny_mnist, tmp_path_factory.mktemp("template") / "run")


@pytest.fixture(scope="module")
def whole(tiny_mnist, tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("whole") / "run"
    _run(tiny_mnist, folder)
    return (folder / "metrics.csv").read_bytes()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit_checkpoint(change):
    def tamper(folder: Path) -> None:
        state = torch.load(folder / "checkpoint.pt", weights_only=True)
        change(state)
        torch.save(state, folder / "checkpoint.pt")
    return tamper


def _edit_text(name: str, change):
    def tamper(folder: Path) -> None:
        (folder / name).write_text(change((folder / name).read_text()))
    return tamper


def _other_model(folder: Path) -> None:
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"]["body.extra.weight"] = state["model"].pop(first)
    torch.save(state, folder / "checkpoint.pt")


def _first_key(state: dict, part: str) -> str:
    return next(key for key in state["model"] if key.endswith(part))


def _reshaped(tensors: dict) -> None:
    name = next(k for k, v in tensors.items() if v.dim() == 2)
    tensors[name] = tensors[name][:, :-1].clone()


def _nan_last_acc(text: str) -> str:
    *rows, last = text.rstrip("\n").split("\n")
    fields = last.split(",")
    fields[5] = "nan"  # the acc column
    return "\n".join([*rows, ",".join(fields)]) + "\n"


def _replay_examples(state: dict) -> dict:
    return state["plugins"][1]["memory"][0]


CASES = {  # what is done to the folder -> (the error, words of its message)
    "metrics.csv removed": (lambda f: (f / "metrics.csv").unlink(), DamagedRunError, "metrics.csv is missing"),
    "metrics.csv's last row cut": (_edit_text("metrics.csv", lambda t: t[: t.rstrip("\n").rfind(",")]),
                                   DamagedRunError, "metrics.csv lacks the test accuracy of task 1 after task 0"),
    "an accuracy made NaN": (_edit_text("metrics.csv", lambda t: _nan_last_acc(t)), DamagedRunError,
                             "lacks the test accuracy of task 1 after task 0"),
    "the untrained model's rows removed": (_edit_text("metrics.csv", lambda t: "\n".join(
        line for line in t.splitlines() if not line.startswith("-1,")) + "\n"), DamagedRunError, "of the untrained model"),
    "train_log.csv's last epoch removed": (_edit_text("train_log.csv", lambda t: "\n".join(t.splitlines()[:-1]) + "\n"),
                                           DamagedRunError, "train_log.csv holds 2 epochs"),
    "train_log.csv removed": (lambda f: (f / "train_log.csv").unlink(), DamagedRunError, "train_log.csv is missing"),
    "completed_stage beyond the tasks": (_edit_checkpoint(lambda s: s.update(completed_stage=5)), ConfigError,
                                         "it says stage 5 finished, and the config has stages 0 to 1"),
    "completed_stage removed": (_edit_checkpoint(lambda s: s.pop("completed_stage")), DamagedRunError,
                                "checkpoint.pt lacks completed_stage"),
    "completed_stage not a number": (_edit_checkpoint(lambda s: s.update(completed_stage="0")), DamagedRunError,
                                     "completed_stage is a str, not a int"),
    "global_epoch edited": (_edit_checkpoint(lambda s: s.update(global_epoch=7)), DamagedRunError,
                            "train_log.csv holds 3 epochs of the finished tasks, and checkpoint.pt says 7"),
    "plugin state removed": (_edit_checkpoint(lambda s: s.update(plugins=[])), ConfigError,
                             "it holds the state of 0 plugin(s), and strategy ewc_replay has 2 (ewc, replay)"),
    "a plugin's state emptied": (_edit_checkpoint(lambda s: s["plugins"].__setitem__(0, {})), DamagedRunError,
                                 "checkpoint.pt's ewc state lacks fisher, anchor"),
    "replay memory removed": (_edit_checkpoint(lambda s: s["plugins"][1].pop("memory")), DamagedRunError,
                              "replay state lacks memory"),
    "a weight of the wrong shape": (_edit_checkpoint(lambda s: _reshaped(s["model"])), ConfigError, "has shape"),
    "an EWC anchor of the wrong shape": (_edit_checkpoint(lambda s: _reshaped(s["plugins"][0]["anchor"])),
                                         ConfigError, "in the ewc state has shape"),
    "replay examples of the wrong shape": (_edit_checkpoint(lambda s: _replay_examples(s).update(
        x=_replay_examples(s)["x"][:, :-1])), DamagedRunError, "examples in the replay state have shape"),
    "an optimiser moment of the wrong shape": (_edit_checkpoint(lambda s: s["optimizer"]["state"][0].update(
        exp_avg=s["optimizer"]["state"][0]["exp_avg"][:1])), DamagedRunError, "optimizer exp_avg of weight 0"),
    "a checkpoint of another model": (_other_model, ConfigError, "its weights are not those of config.yaml's model=mlp"),
    "a checkpoint of another seed": (_edit_checkpoint(lambda s: s["run"].update(seed=1)), ConfigError,
                                     "it was written by another run (seed 1, not 0)"),
    "checkpoint.pt cut short": (lambda f: (f / "checkpoint.pt").write_bytes((f / "checkpoint.pt").read_bytes()[:500]),
                                DamagedRunError, "checkpoint.pt is unreadable"),
    "config.yaml with an unset environment variable": (_edit_text("config.yaml", lambda t: t.replace(
        "seed: 0", "seed: ${oc.env:NOPE}")), ConfigError, "holds a value that cannot be resolved"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_resume_refuses_a_folder_that_does_not_fit(case, template, tiny_mnist, tmp_path):
    tamper, error, words = CASES[case]
    folder = tmp_path / "run"
    shutil.copytree(template, folder)
    tamper(folder)
    before = _files(folder)
    with pytest.raises(error) as caught:
        _run(tiny_mnist, tmp_path / "ignored", f"resume={folder}")
    message = str(caught.value)
    assert words in message and str(folder) in message and "\n" not in message, message
    assert type(caught.value) is error  # exit 2 or 7, not a subclass of the other
    assert _files(folder) == before  # nothing of the folder was changed
    assert not (tmp_path / "ignored").exists()


def test_the_untouched_folder_resumes_to_the_uninterrupted_numbers(template, whole, tiny_mnist, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(template, folder)
    assert _run(tiny_mnist, tmp_path / "ignored", f"resume={folder}")["status"] == "completed"
    assert (folder / "metrics.csv").read_bytes() == whole


def test_a_checkpoint_without_the_runs_record_is_checked_without_it(template, whole, tiny_mnist, tmp_path):
    folder = tmp_path / "run"  # as written before checkpoints recorded their run
    shutil.copytree(template, folder)
    _edit_checkpoint(lambda s: s.pop("run"))(folder)
    assert _run(tiny_mnist, tmp_path / "ignored", f"resume={folder}")["status"] == "completed"
    assert (folder / "metrics.csv").read_bytes() == whole


def test_a_corrupt_trackers_json_is_refused_where_a_tracker_reads_it(tiny_mnist, tmp_path):
    folder = _interrupted(tiny_mnist, tmp_path / "run", "logger=tensorboard")
    (folder / "trackers.json").write_text('{"sweep": null, "job": nu')
    before = _files(folder)
    with pytest.raises(DamagedRunError, match="trackers.json is unreadable"):
        _run(tiny_mnist, tmp_path / "ignored", f"resume={folder}")
    assert _files(folder) == before


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_runner.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("case, code", [("metrics.csv's last row cut", EXIT_DAMAGED),
                                        ("a checkpoint of another model", EXIT_CONFIG)])
def test_the_command_line_says_it_in_one_line(case, code, template, tmp_path):
    from .test_robustness import one_line

    folder = tmp_path / "run"
    shutil.copytree(template, folder)
    CASES[case][0](folder)
    before = {name: data for name, data in _files(folder).items() if name != "cl-run.log"}
    result = _cli(f"resume={folder}")
    assert result.returncode == code, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("cl-run: error: ") and CASES[case][2] in line, line
    assert {name: data for name, data in _files(folder).items() if name != "cl-run.log"} == before
    assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
