"""Sizes no machine can hold, refused before anything is allocated: the bounds of every count
(checks.MAX_COUNT), each model's size formula held to the built model's own count, the run's
estimate against its device's memory (cl_runner.sizes), and a step that overflows the weights
(a divergence). Fast through precheck and run(); slow through `cl-run` (one process each)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import cl_runner.run as run_module
from cl_runner import capacity, models, sizes
from cl_runner.checks import MAX_COUNT
from cl_runner.errors import EXIT_CONFIG, EXIT_FAILED, ConfigError
from cl_runner.models.cnn import CNNConfig
from cl_runner.models.mlp import MLPConfig
from cl_runner.models.resnet import ResNetConfig
from cl_runner.trainer import Diverged

from .conftest import REPO, compose_cfg, config_error

build_benchmark = importlib.import_module("cl_runner.benchmarks.build")  # the module, not its build()
CPU = torch.device("cpu")
TINY = ("data.verify=false", "train.iterations=3", "train.progress=false", "device=cpu")


# --- every count is bounded ----------------------------------------------------------------------


@pytest.mark.parametrize("override, key", [
    ("model.depth=9223372036854775808", "model.depth"),
    ("model.width=2147483648", "model.width"),
    ("train.iterations=9223372036854775807", "train.iterations"),
    ("train.epochs=99999999999", "train.epochs"),
    ("train.epochs=[1,4294967296]", "train.epochs"),
    ("train.batch_size=18446744073709551616", "train.batch_size"),
    ("train.eval_batch_size=10000000000000", "train.eval_batch_size"),
    ("train.eval_every=2147483648", "train.eval_every"),
    ("strategy=der der.memory_size=9223372036854775807", "der.memory_size"),
    ("strategy=replay replay.per_class=2147483648", "replay.per_class"),
    ("strategy=ewc ewc.fisher_samples=2147483648", "ewc.fisher_samples"),
    ("model=cnn model.blocks=9223372036854775807", "model.blocks"),
    ("model=resnet18 model.width=2147483648", "model.width"),
])
def test_absurd_counts_are_refused_in_one_line(override, key):
    err = config_error(override.split())
    assert err is not None and err.exit_code == EXIT_CONFIG, override
    assert str(err).startswith(f"invalid config: {key}=") and "\n" not in str(err), str(err)


def test_the_bound_itself_is_allowed():
    assert config_error([f"train.iterations={MAX_COUNT}"]) is None
    assert "at most 2147483647" in str(config_error([f"train.iterations={MAX_COUNT + 1}"]))
    assert config_error([f"model.depth={MAX_COUNT}"]) is None  # passes the bound: its size is what refuses it


# --- each model's size formula against the built model ----------------------------------------------

LAYERS = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.LeakyReLU, torch.nn.MaxPool2d)
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 9, 7)]
CONFIGS = [MLPConfig(width=5, depth=0), MLPConfig(width=7, depth=1), MLPConfig(width=3, depth=4),
           MLPConfig(width=33, depth=2, activation="relu"), CNNConfig(width=6, blocks=1), CNNConfig(width=3, blocks=3),
           CNNConfig(width=5, blocks=2), ResNetConfig(width=2), ResNetConfig(width=3), ResNetConfig(width=5)]


def _measured(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(every layer's output plus the input, the largest of them) for one example, by forward hooks."""
    sizes_seen = [torch.Size(shape).numel()]
    hooks = [m.register_forward_hook(lambda m, i, out: sizes_seen.append(out[0].numel()))
             for m in model.modules() if isinstance(m, LAYERS)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for hook in hooks:
        hook.remove()
    return sum(sizes_seen), max(sizes_seen)


def _takes(config, shape) -> bool:
    try:
        config.check_input(shape)
    except ConfigError:  # e.g. 3 blocks would halve 9x7 images to nothing
        return False
    return True


CASES = [(config, shape) for config in CONFIGS for shape in SHAPES if _takes(config, shape)]


@pytest.mark.parametrize("config, shape", CASES, ids=[f"{c.name}-w{c.width}-{getattr(c, 'depth', getattr(c, 'blocks', ''))}-"
                                                      f"{'x'.join(map(str, s))}" for c, s in CASES])
@pytest.mark.parametrize("head", ["single", "multi"])
def test_size_formula_is_the_built_models_count(config, shape, head):
    cfg = OmegaConf.structured(config)
    cfg.head = head
    heads = [[0, 4], [1, 2, 5]] if head == "multi" else [[0, 1, 2], [3, 4, 5]]  # multi: one output in no head
    torch.manual_seed(0)
    model = models.build(cfg, shape, 6, CPU, heads=heads)
    size = models.size(cfg, shape, 6, heads)
    assert size.parameters == models.count_parameters(model)
    assert (size.activations, size.largest) == _measured(model, shape)


@pytest.mark.parametrize("preset, shape, parameters", [  # the counts conf/model/*.yaml give
    ("mlp", (1, 28, 28), 50_890), ("mlp", (3, 32, 32), 197_322), ("mlp256", (1, 28, 28), 203_530),
    ("cnn", (1, 28, 28), 112_330), ("cnn", (3, 32, 32), 115_402),
    ("resnet18", (1, 28, 28), 1_094_390), ("resnet18", (3, 32, 32), 1_094_750),
    ("resnet18_nf64", (1, 28, 28), 11_172_810), ("resnet18_nf64", (3, 32, 32), 11_173_962),
])
def test_presets_have_their_documented_sizes(preset, shape, parameters):
    cfg = compose_cfg([f"model={preset}"]).model
    assert models.size(cfg, shape, 10).parameters == parameters
    assert models.count_parameters(models.build(cfg, shape, 10, CPU)) == parameters


def test_size_of_a_huge_model_is_computed_without_building_it():
    cfg = OmegaConf.structured(MLPConfig(width=MAX_COUNT, depth=MAX_COUNT))
    size = models.size(cfg, (1, 28, 28), 10)  # instant: a formula, never layers
    assert size.parameters > 2**92 and models.size_knob(cfg) == "model.depth"
    assert models.size_knob(OmegaConf.structured(MLPConfig(width=10**8))) == "model.width"


# --- the run's estimate against the device's memory ---------------------------------------------------


@pytest.fixture
def bench_of(tiny_mnist):
    def make(*overrides: str):
        cfg = compose_cfg([*TINY, f"data.root={tiny_mnist}", *overrides])
        return cfg, build_benchmark.build(cfg, CPU)
    return make


def _memory(monkeypatch, total: int, available: int | None = None) -> None:
    memory = capacity.Memory(total, total if available is None else available)
    monkeypatch.setattr(sizes, "device_memory", lambda device: memory)


@pytest.mark.parametrize("overrides, key, part", [
    (["model.width=100000000"], "model.width", "model: 79,500,000,010 parameters x4"),
    (["model.depth=1000000000"], "model.depth", "parameters x4"),
    (["optimizer=sgd", "model.width=100000000"], "model.width", "x2 (gradients, sgd's state)"),
    (["strategy=der", "der.memory_size=1000000000"], "der.memory_size", "der's memory (1,000,000,000 examples)"),
    (["strategy=replay", "replay.policy=reservoir", "replay.memory_size=2000000000"], "replay.memory_size", "replay's memory"),
])
def test_a_run_its_device_could_never_hold_is_refused_by_its_estimate(bench_of, overrides, key, part, monkeypatch):
    _memory(monkeypatch, 24 * 2**30)
    cfg, bench = bench_of(*overrides)
    with pytest.raises(ConfigError) as err:
        sizes.check_fits(cfg, bench, CPU)
    message = str(err.value)
    assert message.startswith(f"invalid config: {key}=") and part in message and "\n" not in message, message
    assert "more than its 24.0 GiB" in message and "lower bound" in message


def test_a_batch_too_large_names_the_batch_size(bench_of, monkeypatch):
    _memory(monkeypatch, 512 * 2**20)  # the model's weights fit; a batch of its 512-channel maps does not
    cfg, bench = bench_of("model=cnn", "model.width=512", "model.blocks=1", "train.batch_size=16")
    largest = max(len(getattr(t, s)) for t in bench.tasks for s in ("train", "val", "test"))
    with pytest.raises(ConfigError, match=f"^invalid config: train.eval_batch_size=10000: the run needs at least .*"
                                          f"an evaluation batch of {largest} "):
        sizes.check_fits(cfg, bench, CPU)
    cfg, bench = bench_of("model=cnn", "model.width=512", "model.blocks=1", "train.eval_batch_size=16")
    most = max(len(t.train) for t in bench.tasks)  # a batch is at most a task's training set
    with pytest.raises(ConfigError, match=f"^invalid config: train.batch_size=1024: .*[(]a training batch: {most} "):
        sizes.check_fits(cfg, bench, CPU)  # training keeps every layer's maps of its (whole) batch
    cfg, bench = bench_of("model=cnn", "model.width=512", "model.blocks=1", "train.eval_batch_size=16",
                          "train.batch_size=16")
    sizes.check_fits(cfg, bench, CPU)


def test_the_estimate_adds_what_the_run_allocates(bench_of, monkeypatch):
    cfg, bench = bench_of("strategy=der", "der.memory_size=1000", "train.batch_size=7")
    parts = {part.key: part.bytes for part in sizes.estimate(cfg, bench)}
    row = 784 * 4 + 3 * 8 + 10 * 4  # a stored example (float32 pixels: tiny data is held as floats), DER's logits
    assert parts["der.memory_size"] == 1000 * row
    assert parts["model.width"] == 4 * 4 * 50_890  # weights, gradients, Adam's two moments
    data = sum(getattr(getattr(t, s), f).nbytes for t in bench.tasks for s in ("train", "val", "test")
               for f in ("x", "y", "task", "label"))
    assert parts["dataset"] == data
    largest = max(len(getattr(t, s)) for t in bench.tasks for s in ("train", "val", "test"))
    evaluation = 4 * min(10_000, largest) * 2 * 784  # the input and the largest layer output, float32
    training = 4 * 7 * (784 + 2 * 64 + 10)  # the input, the hidden layer and its activation, the outputs
    assert parts["train.eval_batch_size"] == evaluation and "train.batch_size" not in parts  # the larger one
    assert evaluation > training
    # The run allocates at least that: the reservoir is whole from its first examples.
    _memory(monkeypatch, sum(parts.values()) - 1)
    with pytest.raises(ConfigError):
        sizes.check_fits(cfg, bench, CPU)
    _memory(monkeypatch, sum(parts.values()) + 2**20)
    sizes.check_fits(cfg, bench, CPU)


def test_above_free_memory_it_warns_and_runs(bench_of, monkeypatch, caplog):
    cfg, bench = bench_of()
    _memory(monkeypatch, 2**40, available=1)
    sizes.check_fits(cfg, bench, CPU)
    assert "more than the 1 bytes free now: it may run out of memory" in caplog.text


def test_the_device_memory_is_the_hosts_for_the_cpu():
    memory = capacity.device_memory(CPU)
    assert 0 < memory.available <= memory.total == capacity.host_memory().total
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(next(line for line in meminfo.splitlines() if line.startswith("MemTotal:")).split()[1])
    assert memory.total <= total_kib * 1024


def test_a_refused_run_writes_nothing(tiny_mnist, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    built = []
    monkeypatch.setattr(run_module.models, "build", lambda *a, **k: built.append(a))
    with pytest.raises(ConfigError, match="model.width=100000000"):
        run_module.run(compose_cfg([*TINY, f"data.root={tiny_mnist}", "model.width=100000000"]), folder)
    assert built == [] and not (folder / "summary.json").exists() and not (folder / "metrics.csv").exists()


def test_tasks_too_large_to_make_are_refused_before_they_are_made(tiny_mnist, monkeypatch):
    monkeypatch.setattr(build_benchmark.capacity, "device_memory", lambda device: capacity.Memory(10**6, 10**6))
    cfg = compose_cfg([*TINY, f"data.root={tiny_mnist}", "dataset=rotated_mnist", "dataset.num_tasks=5"])
    made = []
    monkeypatch.setattr(build_benchmark, "_pools", lambda *a: made.append(a))
    with pytest.raises(ConfigError, match=r"^invalid config: dataset.num_tasks=5: the tasks' examples take at least "
                                          r"12\.1 MiB \(5 x 2\.4 MiB\) but cpu has 976\.6 KiB"):  # 5 x 800 x (784 x 4 + 3 x 8) bytes
        build_benchmark.build(cfg, CPU)
    assert made == []


# --- a step that overflows the weights is a divergence -------------------------------------------------


@pytest.mark.parametrize("overrides", [["train.lr=1e300", "optimizer=sgd"], ["train.lr=1e300"],
                                       ["optimizer=sgd", "optimizer.weight_decay=1e300"]])
def test_an_overflowing_step_is_a_divergence(tiny_mnist, tmp_path, overrides):
    folder = tmp_path / "run"
    with pytest.raises(Diverged, match=r"diverged in task 0, epoch 1: the optimiser's step overflows"):
        run_module.run(compose_cfg([*TINY, f"data.root={tiny_mnist}", *overrides]), folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("Diverged: training diverged in task 0")


def test_other_runtime_errors_of_a_step_are_not_hidden(tiny_mnist, tmp_path, monkeypatch):
    def step(self, *args, **kwargs):
        raise RuntimeError("a bug, not an overflow")

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(RuntimeError, match="a bug, not an overflow"):
        run_module.run(compose_cfg([*TINY, f"data.root={tiny_mnist}"]), tmp_path / "run")


# --- through cl-run ----------------------------------------------------------------------------------


def _cl_run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cl_runner.cli", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
                           "train.progress=false", "device=cpu"], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, expected", [
    (["model.depth=9223372036854775808"], "model.depth=9223372036854775808: too large: at most 2147483647"),
    (["train.iterations=9223372036854775807"], "train.iterations=9223372036854775807: too large"),
    (["model.width=100000000"], "model.width=100000000: the run needs at least"),
    (["model.depth=1000000000"], "model.depth=1000000000: the run needs at least"),
    (["strategy=der", "der.memory_size=1000000000"], "der.memory_size=1000000000: the run needs at least"),
])
def test_cl_run_refuses_sizes_no_machine_holds(overrides, expected, tiny_mnist, tmp_path):
    result = _cl_run(tmp_path, f"data.root={tiny_mnist}", "data.verify=false", *overrides)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == EXIT_CONFIG and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("cl-run: error: invalid config: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.slow
def test_cl_run_an_overflowing_step_exits_4(tiny_mnist, tmp_path):
    result = _cl_run(tmp_path, f"data.root={tiny_mnist}", "data.verify=false", "train.epochs=1", "train.lr=1e300",
                     "optimizer=sgd")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == EXIT_FAILED and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "training diverged in task 0, epoch 1: the optimiser's step overflows" in lines[0]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
