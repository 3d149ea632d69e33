"""`cl-run --help` is cl-runner's own (conf/hydra/help/cl_run.yaml) and runs nothing; Hydra's
bash tab completion works through the `cl-run` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cl_runner.config import CONF_DIR

from .conftest import REPO

SECTIONS = ("Config groups", "Main keys", "Examples", "Outputs", "Exit codes")


def cl_run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cl_runner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def help_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    # train.lr=-1 composes but fails validation, and the data folder does not exist: a help
    # that ran the precheck or a run would fail, and a run would create outputs/.
    folder = tmp_path_factory.mktemp("help")
    return cl_run(["--help", "train.lr=-1", f"data.root={folder / 'nowhere'}"], folder), folder


def test_help_explains_cl_run_and_runs_nothing(help_run):
    result, folder = help_run
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for section in SECTIONS:
        assert f"== {section}" in text
    for code in ("0 done", "2 bad config", "3 data missing", "4 the run failed", "130 interrupted"):
        assert code in text
    for example in ("cl-run -m ", "resume=", "experiment=", "cl-report "):
        assert example in text
    assert "schema" not in text and "powered by Hydra" not in text  # no internals, not Hydra's page
    assert "$CL_RUNNER_DATA" in text and 'eval "$(cl-run -sc install=bash)"' in text
    assert len(text.splitlines()) <= 70  # a screen or two
    assert list(folder.iterdir()) == []  # nothing was written: no run folder, no log


def test_help_lists_every_option_of_every_group(help_run):
    text = help_run[0].stdout
    groups = text.split("== Config groups")[1].split("== Main keys")[0]
    for group in ("dataset", "model", "strategy", "optimizer", "logger", "experiment", "hydra/launcher"):
        listed = re.search(rf"^  {group} +(.*?)(?=^  \S|\Z)", groups, flags=re.M | re.S).group(1)
        for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
            assert re.search(rf"\b{option}\b", listed), f"{group}={option} is missing from cl-run --help"


def test_hydra_help_stays_hydras(tmp_path):
    result = cl_run(["--hydra-help"], tmp_path)
    assert result.returncode == 0 and "== Flags ==" in result.stdout and "--shell-completion" in result.stdout


@pytest.mark.slow  # three cl-run processes
def test_bash_completion_through_the_cl_run_command(tmp_path):
    """What `eval "$(cl-run -sc install=bash)"` and then `cl-run stra<TAB>` do in bash."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "cl-run"  # a console script as pip writes it: the name Hydra installs the completion for
    command.write_text(f"#!{sys.executable}\nimport sys\nfrom cl_runner.cli import main\nsys.exit(main())\n")
    command.chmod(0o755)
    script = """
        eval "$(cl-run -sc install=bash)"
        complete -p cl-run
        for line in "cl-run stra" "cl-run strategy=ew" "cl-run ewc.al"; do
            COMP_LINE="$line" COMP_POINT=${#line} COMP_CWORD=1
            hydra_bash_completion
            echo "[$line] ${COMPREPLY[*]}"
        done
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "hydra_bash_completion cl-run" in lines[0]
    assert set(lines[1].split("] ")[1].split()) == {"strategy=", "strategy."}
    assert set(lines[2].split("] ")[1].split()) == {"strategy=ewc", "strategy=ewc_replay"}
    assert lines[3].split("] ")[1] == "ewc.alpha="
