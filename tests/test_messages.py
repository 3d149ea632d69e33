"""What cl-runner says matches what it does: the end-of-run warning's chance level is the one
the figures draw, its advice fits the run's model, a failed download suggests commands that
take a mirror, and `cl-run --version` is cl-runner's."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest
import torch

from cl_runner import __version__, benchmarks, run_info, sources
from cl_runner.errors import DataError
from cl_runner.run import run
from cl_runner.sources import MIRROR_ENV

from .conftest import cl_run, compose_cfg


@pytest.mark.parametrize("overrides, advice, not_advised", [
    (["strategy=ewc", "ewc.alpha=1e8"], ["ewc.alpha=1e7", "model=mlp256"], []),  # the default 64-unit MLP
    (["experiment=ewc"], ["lower ewc.alpha (now 1e8)", "train longer"], ["model=mlp256", "ewc.alpha=1e7"]),
])
def test_the_warning_gives_the_figures_chance_and_advice_that_fits_the_model(overrides, advice, not_advised,
                                                                             tiny_mnist, tmp_path):
    cfg = compose_cfg([*overrides, f"data.root={tiny_mnist}", "data.verify=false", "data.download=false",
                       "train.epochs=1", "train.batch_size=64", "train.progress=false", "device=cpu", "checkpoint.every_task=false"])
    summary = run(cfg, tmp_path)
    (warning,) = summary["warnings"]  # EWC at 1e8 on a few steps: task 1 is held in place
    chance = run_info.chance_classes(benchmarks.build(cfg, torch.device("cpu")))
    assert chance == [10, 10] and "(chance 1/10)" in warning  # the plot's legend: "chance: 1/10"
    assert all(a in warning for a in advice) and not any(n in warning for n in not_advised), warning


def test_a_failed_download_suggests_commands_that_take_a_mirror(tmp_path, monkeypatch):
    # The "download" goes to an empty local folder as its mirror: it fails here, reaching nothing.
    (tmp_path / "empty-mirror").mkdir()
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "empty-mirror"))
    with pytest.raises(DataError) as err:
        sources.load("mnist", tmp_path / "mnist", download=True, verify=True)
    message = str(err.value)
    assert f"python -m cl_runner.sources mnist {tmp_path / 'mnist'} --mirror DIR_OR_URL" in message
    assert "make data DATASET=mnist MIRROR=DIR_OR_URL" in message and "$CL_RUNNER_MIRROR" in message
    assert "point --mirror" not in message
    # ... and the command it names does take --mirror (cl-run does not).
    helped = subprocess.run([sys.executable, "-m", "cl_runner.sources", "--help"], capture_output=True, text=True)
    assert "--mirror" in helped.stdout


def test_version_is_cl_runner_s_with_torch_s_and_hydra_s():
    result = cl_run("--version")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == (f"cl-runner {__version__} (torch {version('torch')}, Hydra {version('hydra-core')}, "
                                     f"Python {sys.version.split()[0]})")
