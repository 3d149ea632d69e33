"""The typed schema of a cl-run config, and the checks Hydra's types cannot express.

The dataclasses are registered with Hydra's ConfigStore as `base_config`, which
`conf/config.yaml` lists first in its defaults: every YAML file then merges into a typed,
closed (struct) config, so a misspelt key or a wrong type fails at composition.
`validate(cfg)` adds the range and consistency checks (positive epochs, labels 0-9, a
label in one task only, ...) and raises `ConfigError` naming the key, value and what is
allowed. Both run before any data is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError

DATASETS = ("split_mnist", "split_mnist5", "permuted_mnist", "rotated_mnist")
SCENARIOS = ("class", "task", "domain")
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("leaky_relu", "relu")
NUM_LABELS = 10  # MNIST digits


@dataclass
class DatasetConfig:
    name: str = "split_mnist"
    # split_mnist*: the labels of each task, in training order.
    tasks: Optional[list[list[int]]] = None
    val_share: float = 0.1
    # permuted_mnist / rotated_mnist: how many tasks, and for rotated the angle of each
    # (default: evenly spaced in [0, 180)).
    num_tasks: int = 2
    angles: Optional[list[float]] = None


@dataclass
class ModelConfig:
    name: str = "mlp"
    width: int = 64
    depth: int = 1  # hidden layers
    activation: str = "leaky_relu"


@dataclass
class TrainConfig:
    epochs: Any = 50  # one number, or one entry per task
    iterations: Optional[int] = None  # per task; when set, overrides epochs
    batch_size: int = 1024
    lr: float = 1e-3
    eval_every: int = 1
    eval_batch_size: int = 10_000
    reset_optimizer: bool = True  # a fresh Adam per task, as in the notebook
    compile: bool = False  # torch.compile the model (CUDA)
    tf32: bool = False  # allow TF32 matmuls on CUDA
    progress: bool = True  # tqdm bars


@dataclass
class DataConfig:
    root: str = "${oc.env:CL_RUNNER_DATA,data/mnist}"
    download: bool = True  # fetch missing files from the public mirrors
    verify: bool = True  # check MD5s; off only for generated test data


@dataclass
class StrategyConfig:
    name: str = "naive"
    # The parts a strategy is built from, in hook order (see cl_runner.strategies).
    plugins: list[str] = field(default_factory=list)


@dataclass
class ReplayConfig:
    share: float = 0.1  # share of each earlier task's training data kept
    balanced: bool = False  # the same share of every class
    per_class: Optional[int] = None  # fixed memory: examples kept per class (overrides share)
    policy: str = "share"  # share (the above) | reservoir | class_balanced (cl_runner.strategies.memory)
    memory_size: Optional[int] = None  # reservoir / class_balanced: examples kept in all
    mix: str = "concat"  # concat (memory joins the training set) | batch (a memory batch per step)
    batch_size: int = 128  # mix=batch: memory examples per step


@dataclass
class EWCConfig:
    alpha: float = 1e8
    fisher: str = "empirical"  # empirical (true labels) | expected (exact, over predicted labels) | sampled (one drawn label)
    fisher_data: str = "val"  # val | train
    fisher_samples: Optional[int] = None  # None = the whole split
    normalize: str = "max"  # max | none
    mode: str = "separate"  # separate | online
    gamma: float = 1.0  # online decay of the running Fisher


@dataclass
class CumulativeConfig:
    pass  # no knobs: every earlier task's whole training set joins the current one


@dataclass
class SIConfig:
    c: float = 1.0  # strength of the quadratic penalty
    xi: float = 1e-3  # damping: omega = path integral / (total change^2 + xi)


@dataclass
class LwFConfig:
    alpha: float = 1.0  # weight of the distillation term
    temperature: float = 2.0


@dataclass
class AGEMConfig:
    policy: str = "class_balanced"  # class_balanced | reservoir
    memory_size: Optional[int] = None  # examples in all (null: only per_class bounds it)
    per_class: Optional[int] = 100
    batch_size: int = 256  # memory examples per reference gradient


@dataclass
class DERConfig:
    policy: str = "reservoir"  # reservoir (the paper) | class_balanced
    memory_size: int = 500
    alpha: float = 0.5  # weight of the logit-matching (MSE) term
    beta: float = 0.5  # DER++ only: weight of the memory labels' cross-entropy
    plus: bool = False  # DER++
    batch_size: int = 128  # memory examples per term and step


@dataclass
class ICaRLConfig:
    memory_size: Optional[int] = None  # exemplars in all, shared equally by the classes seen
    per_class: Optional[int] = 100  # exemplars per class
    selection: str = "herding"  # herding (the paper) | random
    alpha: float = 1.0  # weight of the sigmoid-BCE distillation on the old classes' outputs
    nme: bool = True  # classify by the nearest mean of exemplars (false: the network's outputs)


@dataclass
class GDumbConfig:
    memory_size: int = 500  # examples in all, class-balanced
    per_class: Optional[int] = None
    reinit: bool = True  # re-initialise the model before each task (false: fine-tune it)


@dataclass
class JointConfig:
    task_shares: Optional[list[float]] = None  # default: all 1.0


@dataclass
class CheckpointConfig:
    every_task: bool = True


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    ewc: EWCConfig = field(default_factory=EWCConfig)
    cumulative: CumulativeConfig = field(default_factory=CumulativeConfig)
    si: SIConfig = field(default_factory=SIConfig)
    lwf: LwFConfig = field(default_factory=LwFConfig)
    agem: AGEMConfig = field(default_factory=AGEMConfig)
    der: DERConfig = field(default_factory=DERConfig)
    icarl: ICaRLConfig = field(default_factory=ICaRLConfig)
    gdumb: GDumbConfig = field(default_factory=GDumbConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    scenario: str = "class"
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    resume: Optional[str] = None  # a run folder to continue


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


# --- checks -----------------------------------------------------------------


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"allowed: {', '.join(map(str, allowed))}")


def _positive(key: str, value: Any, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(key, value, f"expected a positive {'integer' if kind is int else 'number'}")
    if not math.isfinite(value) or value <= 0:  # nan <= 0 is False: test finiteness first
        raise ConfigError(key, value, f"expected a positive {'integer' if kind is int else 'number'}")


def _share(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(key, value, "expected a share in (0, 1]")


def task_labels(cfg: DictConfig) -> list[list[int]]:
    """The label split of a split benchmark (defaults per data set name)."""
    if cfg.dataset.tasks is not None:
        return [list(t) for t in cfg.dataset.tasks]
    if cfg.dataset.name == "split_mnist5":
        return [[2 * i, 2 * i + 1] for i in range(5)]
    return [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def num_tasks(cfg: DictConfig) -> int:
    if cfg.dataset.name in ("split_mnist", "split_mnist5"):
        return len(task_labels(cfg))
    return int(cfg.dataset.num_tasks)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value; cheap, and touches no data."""
    _one_of("dataset", cfg.dataset.name, DATASETS)
    _one_of("scenario", cfg.scenario, SCENARIOS)
    _one_of("device", cfg.device, DEVICES)
    _one_of("model.activation", cfg.model.activation, ACTIVATIONS)
    if not 0 < cfg.dataset.val_share < 1:
        raise ConfigError("dataset.val_share", cfg.dataset.val_share, "expected a share in (0, 1)")

    if cfg.dataset.name.startswith("split_mnist"):
        labels = task_labels(cfg)
        if not labels or any(not isinstance(t, (list, ListConfig)) or not t for t in labels):
            raise ConfigError("dataset.tasks", labels, "expected a non-empty list of non-empty label lists")
        seen: dict[int, int] = {}
        for i, task in enumerate(labels):
            for label in task:
                if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_LABELS:
                    raise ConfigError("dataset.tasks", labels, f"labels must be integers 0-9, got {label!r}")
                if label in seen:
                    raise ConfigError(
                        "dataset.tasks", labels, f"label {label} is in task {seen[label]} and task {i}; each label in one task"
                    )
                seen[label] = i
            if cfg.scenario == "task" and len(task) < 2:
                raise ConfigError("dataset.tasks", labels, f"task {i} has one class: nothing to predict under scenario=task")
        if cfg.scenario == "domain" and len({len(t) for t in labels}) != 1:
            raise ConfigError("dataset.tasks", labels, "scenario=domain needs tasks of equal size (labels are positions within a task)")
    else:
        _positive("dataset.num_tasks", cfg.dataset.num_tasks)
        if cfg.dataset.angles is not None and len(cfg.dataset.angles) != cfg.dataset.num_tasks:
            raise ConfigError("dataset.angles", list(cfg.dataset.angles), f"expected {cfg.dataset.num_tasks} angles (dataset.num_tasks)")

    tasks = num_tasks(cfg)
    _positive("model.width", cfg.model.width)
    if isinstance(cfg.model.depth, bool) or not isinstance(cfg.model.depth, int) or cfg.model.depth < 0:
        raise ConfigError("model.depth", cfg.model.depth, "expected an integer >= 0 (hidden layers)")

    epochs = cfg.train.epochs
    if isinstance(epochs, (list, ListConfig)):
        if len(epochs) != tasks:
            raise ConfigError("train.epochs", list(epochs), f"expected one number or a list of {tasks} (one per task)")
        for e in epochs:
            _positive("train.epochs", e)
    else:
        _positive("train.epochs", epochs)
    if cfg.train.iterations is not None:
        _positive("train.iterations", cfg.train.iterations)
    _positive("train.batch_size", cfg.train.batch_size)
    _positive("train.eval_batch_size", cfg.train.eval_batch_size)
    _positive("train.eval_every", cfg.train.eval_every)
    _positive("train.lr", cfg.train.lr, float)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError("seed", cfg.seed, "expected an integer >= 0")

    from .strategies import validate_strategy  # the strategy layer owns its own keys

    validate_strategy(cfg, tasks)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
