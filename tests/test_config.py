"""Config composition: every group option composes and validates; defaults are the notebook's."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from cl_runner import benchmarks, config
from cl_runner.config import CONF_DIR
from cl_runner.errors import ConfigError

from .conftest import compose_cfg, config_error

GROUPS = ["dataset", "model", "strategy", "optimizer", "logger"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_validates(group, option):
    needs = {("dataset", "npz"): ["dataset.path=mine.npz"]}  # a preset with a key only the user can fill in
    cfg = compose_cfg([f"{group}={option}", *needs.get((group, option), [])])
    config.validate(cfg)
    if group == "strategy":
        assert cfg.strategy.name == option


def _plain_experiments() -> list[str]:
    # Presets that switch Hydra's sweeper need that plugin; they are checked in the sweep tests.
    return [o for o in _options("experiment") if "hydra/sweeper" not in (CONF_DIR / "experiment" / f"{o}.yaml").read_text()]


@pytest.mark.parametrize("experiment", _plain_experiments())
def test_every_experiment_preset_composes_and_validates(experiment):
    config.validate(compose_cfg([f"experiment={experiment}"]))


def test_defaults_are_the_notebooks_first_experiment():
    cfg = compose_cfg()
    assert cfg.dataset.name == "split_mnist"
    assert benchmarks.task_labels(cfg.dataset, 10) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert cfg.dataset.val_share == 0.1
    assert (cfg.model.width, cfg.model.depth, cfg.model.activation) == (64, 1, "leaky_relu")
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.eval_every) == (1e-3, 1024, 50, 1)
    assert (cfg.strategy.name, list(cfg.strategy.plugins)) == ("naive", [])
    assert (cfg.seed, cfg.device, cfg.scenario) == (0, "auto", "class")


def test_data_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_RUNNER_DATA", str(tmp_path))
    assert compose_cfg().data.root == str(tmp_path / "mnist")  # one folder per data set under it
    assert compose_cfg(["dataset=split_cifar10"]).data.root == str(tmp_path / "cifar10")


def test_epochs_may_be_one_per_task():
    cfg = compose_cfg(["train.epochs=[3,5]"])
    config.validate(cfg)
    assert list(cfg.train.epochs) == [3, 5]


def test_experiment_presets_set_what_the_notebook_ran():
    ewc_replay = compose_cfg(["experiment=ewc_replay"])
    assert ewc_replay.model.width == 256 and list(ewc_replay.strategy.plugins) == ["ewc", "replay"]
    assert ewc_replay.ewc.alpha == 1e8 and ewc_replay.replay.share == 0.1 and list(ewc_replay.train.epochs) == [50, 100]
    scratch = compose_cfg(["experiment=scratch"])
    assert scratch.strategy.name == "joint" and list(scratch.joint.task_shares) == [0.01, 1.0]
    assert compose_cfg(["experiment=replay1"]).replay.share == 0.01


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["train.epochs=0"], "train.epochs"),
        (["train.epochs=[5]"], "train.epochs"),
        (["train.batch_size=-1"], "train.batch_size"),
        (["dataset.tasks=[[0,1,10],[2]]"], "dataset.tasks"),
        (["dataset.tasks=[[0,1,2],[2,3]]"], "dataset.tasks"),
        (["dataset.val_share=1.0"], "dataset.val_share"),
        (["scenario=task", "dataset.tasks=[[0],[1,2]]"], "dataset.tasks"),
        (["strategy=replay", "replay.share=0"], "replay.share"),
        (["strategy=replay", "replay.share=1.5"], "replay.share"),
        (["strategy=ewc", "ewc.alpha=-1"], "ewc.alpha"),
        (["strategy=ewc", "ewc.fisher=diagonal"], "ewc.fisher"),
        (["strategy=ewc", "ewc.fisher=true"], "ewc.fisher"),  # the old name, a YAML boolean on a command line
        (["strategy=ewc", "ewc.fisher_samples=0"], "ewc.fisher_samples"),
        (["strategy=joint", "joint.task_shares=[0.5]"], "joint.task_shares"),
        (["scenario=sideways"], "scenario"),
        (["dataset=permuted_mnist", "dataset.num_tasks=0"], "dataset.num_tasks"),
    ],
)
def test_validate_names_the_bad_key(overrides, key):
    error = config_error(overrides)  # composition (types, closed choices), then validation (ranges)
    assert isinstance(error, ConfigError), error
    assert error.key == key
    assert key in str(error) and "\n" not in str(error)


def test_config_is_closed_to_unknown_keys():
    with pytest.raises(Exception, match="alhpa"):
        compose_cfg(["ewc.alhpa=1"])
    assert OmegaConf.is_struct(compose_cfg())


@pytest.mark.parametrize("value", ["empirical", "expected", "sampled"])
def test_every_fisher_kind_validates(value):
    cfg = compose_cfg(["strategy=ewc", f"ewc.fisher={value}"])
    config.validate(cfg)
