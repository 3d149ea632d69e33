"""The typed schema of a cl-run config, assembled from the parts' own config dataclasses.

Each part declares the dataclass of its node beside its code: `dataset` (benchmarks/config.py),
`model` (one per model, cl_runner/models/), `strategy` and one node per strategy plugin
(`ewc`, `replay`, ... in cl_runner/strategies/), `joint` (schedule.py), `logger` (one
optional node per experiment tracker, cl_runner/trackers/); the run-wide nodes
(`train`, `data`, `checkpoint`) are here. `schema()` puts them together and `register()`
stores the result with Hydra's ConfigStore as `base_config`, which `conf/config.yaml` lists
first in its defaults: every YAML file then merges into a typed, closed (struct) config, so
a misspelt key, a wrong type or an unknown choice fails at composition. Each model's
dataclass is stored as `schema/model/<name>`, which its YAML file extends.

`validate(cfg)` then runs every node's range checks (`Node.check`, one place per key) and
the checks that tie nodes together (one epoch count per task, ...), raising `ConfigError`
naming the key, value and what is allowed. Both run before any data is loaded.
`load_saved` and `save_config` read and write a run's config.yaml.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf, open_dict

from . import benchmarks, models, sources
from .benchmarks import DatasetConfig, Scenario
from .checks import Choice, Node, check_positive_int, is_int
from .errors import ConfigError
from .models import MODELS, ModelConfig
from .optim import OptimizerConfig, Schedule
from .precision import PRECISIONS
from .records import replaced
from .schedule import JointConfig
from .seeds import MAX_SEED, MAX_TASKS
from .strategies import PLUGINS, StrategyConfig
from .trackers import logger_config

Device = Choice("Device", {"auto": "auto", "cpu": "cpu", "cuda": "cuda"})


def _conf_dir() -> Path:
    """conf/ beside the package in a source checkout, or shipped inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"cl-runner's conf/ folder is missing (looked beside and inside {here})")


CONF_DIR = _conf_dir()


@dataclass
class TrainConfig(Node):
    epochs: Any = 50  # one number, or one entry per task
    iterations: Optional[int] = None  # per task; when set, overrides epochs
    batch_size: int = 1024
    lr: float = 1e-3
    eval_every: int = 1
    eval_batch_size: int = 10_000
    lr_schedule: Schedule = Schedule.constant  # within each task: constant | multistep | cosine (cl_runner.optim)
    lr_milestones: list[int] = field(default_factory=list)  # multistep: epochs (within a task) where lr *= lr_gamma
    lr_gamma: float = 0.1
    active_classes: bool = False  # class-IL: train only the outputs of the classes seen so far
    reset_optimizer: bool = True  # a fresh Adam per task, as in the notebook
    compile: bool = False  # torch.compile the model (CUDA)
    # TF32 on CUDA: null keeps PyTorch's defaults (on for cuDNN convolutions, off for matmuls;
    # off for both under deterministic=true); true/false: on/off for both (cl_runner.device).
    tf32: Optional[bool] = None
    precision: Any = "32"  # 32 | bf16 | 16-mixed: autocast of the forward passes (cl_runner.precision)
    threads: Any = "auto"  # CPU intra-op threads: auto (by the model's work and usable cores) | an integer (cl_runner.threads)
    progress: bool = True  # tqdm bars

    def check(self) -> None:
        positive = "expected a positive integer"
        for epochs in self.epochs if isinstance(self.epochs, list) else [self.epochs]:
            check_positive_int(self.key("epochs"), epochs, describe=positive)
        self.positive_int("iterations", allow_none=True, describe=positive)
        for name in ("batch_size", "eval_batch_size", "eval_every"):
            self.positive_int(name, describe=positive)
        self.number("lr", 0.0, low_open=True, describe="expected a positive number")
        for milestone in self.lr_milestones:
            check_positive_int(self.key("lr_milestones"), milestone, describe="expected epochs >= 1, e.g. [35,45]")
        if self.lr_schedule == "multistep" and not self.lr_milestones:
            self.fail("lr_milestones", "train.lr_schedule=multistep needs the epochs where the rate drops, e.g. [35,45]")
        self.number("lr_gamma", 0.0, low_open=True, high=1.0)
        if str(self.precision) not in PRECISIONS:
            self.fail("precision", f"allowed: {', '.join(PRECISIONS)}")
        if self.threads != "auto":
            check_positive_int(self.key("threads"), self.threads, describe="expected auto or an integer >= 1")

    def unused(self) -> dict[str, str]:
        found = {}
        if self.iterations is not None:
            found["epochs"] = (f"not used while train.iterations is set ({self.iterations} steps per task): "
                               "add train.iterations=null to count epochs")
        if self.lr_schedule != "multistep":
            for name in ("lr_milestones", "lr_gamma"):
                found[name] = f"used only with train.lr_schedule=multistep (not {self.lr_schedule}): add it"
        return found


@dataclass
class DataConfig(Node):
    # The folder holding the data set's files: one folder per source under $CL_RUNNER_DATA
    # (default data/), e.g. data/mnist, data/cifar10. (source=npz reads dataset.path instead.)
    root: str = "${oc.env:CL_RUNNER_DATA,data}/${dataset.source}"
    download: bool = True  # fetch missing files from the public mirrors
    verify: bool = True  # check MD5s; off only for generated test data


@dataclass
class CheckpointConfig(Node):
    every_task: bool = True


def _run_wide_nodes() -> list[tuple[str, type]]:
    plugins = [(name, PLUGINS[name].config) for name in PLUGINS]
    return [("dataset", DatasetConfig), ("model", ModelConfig), ("strategy", StrategyConfig), ("train", TrainConfig),
            ("optimizer", OptimizerConfig), ("data", DataConfig), *plugins, ("joint", JointConfig),
            ("checkpoint", CheckpointConfig), ("logger", logger_config())]


@functools.cache
def schema() -> type:
    """The dataclass of a whole config: one field per node, then the top-level values."""
    nodes = _run_wide_nodes()
    for name, cls in nodes:
        cls.node = name  # the key a node's checks name in their messages
    for entry in MODELS.entries.values():
        entry.config.node = "model"
    return make_dataclass("Config", [
        *[(name, cls, field(default_factory=cls)) for name, cls in nodes],
        ("scenario", Scenario, Scenario("class")),  # class | task | domain
        ("seed", int, 0),
        ("device", Device, Device.auto),  # auto (CUDA when available) | cpu | cuda
        ("deterministic", bool, False),
        ("resume", Optional[str], None),  # a run folder to continue
        ("overwrite", bool, False),  # replace the results already in the output folder
    ])


def node_names() -> list[str]:
    return [f.name for f in fields(schema()) if isinstance(f.type, type) and issubclass(f.type, Node)]


def register() -> None:
    """Store the schema with Hydra (before composing any config)."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=schema())
    for entry in MODELS.entries.values():
        store.store(group="schema/model", name=entry.name, node=entry.config)


def validate(cfg) -> None:
    """Raise ConfigError for the first bad value; cheap, and touches no data."""
    for name in node_names():
        OmegaConf.to_object(cfg[name])  # each node's own checks (Node.check)
    if not is_int(cfg.seed) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError("seed", cfg.seed, f"expected an integer from 0 to {MAX_SEED}")
    benchmarks.check_scenario(cfg.dataset, str(cfg.scenario))
    tasks = benchmarks.num_tasks(cfg.dataset)
    if tasks > MAX_TASKS:
        raise ConfigError("dataset.num_tasks", tasks, f"expected at most {MAX_TASKS} tasks")
    epochs = cfg.train.epochs
    if OmegaConf.is_list(epochs) and len(epochs) != tasks:
        raise ConfigError("train.epochs", list(epochs), f"expected one number or a list of {tasks} (one per task)")
    OmegaConf.to_object(cfg.joint).check_tasks(tasks)
    models.check_head(cfg.model.head, str(cfg.scenario))
    shape = sources.SOURCES[str(cfg.dataset.source)].shape  # None for npz: checked once it is read
    if shape is not None:
        models.check_input(cfg.model, shape)
    if cfg.train.active_classes and cfg.scenario != "class":
        raise ConfigError("train.active_classes", True, "applies to scenario=class (task-IL already trains only the task's "
                          "outputs; domain-IL shares them all)")


def typed(values) -> Any:
    """A plain config (e.g. a run's saved config.yaml) merged onto the schema: typed, closed,
    and with the defaults of keys it lacks (keys added since it was written)."""
    values = OmegaConf.create(values) if isinstance(values, dict) else values
    model = OmegaConf.select(values, "model.name", default=None)
    cfg = OmegaConf.merge(_typed_base(model if model in MODELS else None), values)  # merge copies the base
    OmegaConf.set_struct(cfg, True)
    return cfg


@functools.cache
def _typed_base(model: str | None):
    """The schema as a structured config, with `model`'s own node (built once: 12 ms each)."""
    base = OmegaConf.structured(schema())
    if model is not None:
        base.model = OmegaConf.structured(MODELS[model].config)
    return base


def load_saved(path: Path) -> Any:
    """The typed config saved in a run folder (what `resume=` continues)."""
    return typed(OmegaConf.load(path))


def save_config(cfg, path: Path) -> None:
    """A run's config.yaml: resolved, as a new run of the same experiment would be given it
    (`resume` and `overwrite` are about the folder, not the experiment); WriteError if it cannot."""
    saved = cfg.copy()
    with open_dict(saved):
        saved.resume, saved.overwrite = None, False
    with replaced(path) as tmp:
        OmegaConf.save(saved, tmp, resolve=True)
