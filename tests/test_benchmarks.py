"""Benchmarks beyond MNIST: every data set's preset on a stand-in in its official format, the
per-batch preparation and augmentation, the optimisers and schedules, active classes."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from cl_runner import benchmarks, config
from cl_runner.benchmarks.transforms import STANDARDISATION, Prepare, augment
from cl_runner.errors import ConfigError
from cl_runner.optim import build_optimizer, build_schedule
from cl_runner.run import run
from cl_runner.trainer import train_epoch

from .conftest import compose_cfg, config_error, make_ctx
from .standins import write_cifar, write_idx_folder

QUICK = ["dataset.val_share=0.3", "data.verify=false", "data.download=false", "train.iterations=2", "train.batch_size=16",
         "train.progress=false", "device=cpu"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """$CL_RUNNER_DATA-style folder: one stand-in per source, in its official format."""
    root = tmp_path_factory.mktemp("data")
    write_idx_folder(root / "fashion_mnist", per_class=20)
    write_idx_folder(root / "kmnist", per_class=20)
    write_cifar(root / "cifar10", "cifar10", as_archive=True, per_class=4)  # 4 per class in each of 5 batches
    write_cifar(root / "cifar100", "cifar100", as_archive=False, per_class=8)
    rng = np.random.default_rng(0)
    np.savez(root / "own.npz", x_train=rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8),
             y_train=np.arange(60) % 6, x_test=rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8),
             y_test=np.arange(30) % 6)
    return root


def _bench(data_dir, *overrides):
    cfg = compose_cfg([f"data.root={data_dir}/${{dataset.source}}", *QUICK, *overrides])
    config.validate(cfg)
    return benchmarks.build(cfg, torch.device("cpu"))


@pytest.mark.parametrize("preset, shape, tasks, classes", [
    ("split_fashion_mnist", (1, 28, 28), 5, 2),
    ("split_kmnist", (1, 28, 28), 5, 2),
    ("split_cifar10", (3, 32, 32), 5, 2),
    ("split_cifar100", (3, 32, 32), 10, 10),
])
def test_every_preset_builds_from_its_official_format(data_dir, preset, shape, tasks, classes, monkeypatch):
    bench = _bench(data_dir, f"dataset={preset}")
    assert bench.input_shape == shape and len(bench.tasks) == tasks
    assert all(len(t.classes) == classes for t in bench.tasks)
    first = bench.tasks[0]
    assert set(first.test.label.tolist()) == set(range(classes))
    # Stand-ins this small are held as floats in [0, 1]; a data set too large for that (CIFAR
    # itself) as the bytes of its files. The model sees the same either way.
    monkeypatch.setattr(importlib.import_module("cl_runner.benchmarks.build"), "FLOAT_STORAGE_LIMIT", 0)
    stored = _bench(data_dir, f"dataset={preset}").tasks[0].test.x
    assert first.train.x.dtype == torch.float32 and stored.dtype == torch.uint8 and stored.shape[1:] == shape
    assert torch.equal(first.test.x, stored.float() / 255)
    seen = bench.prepare(stored)
    assert torch.equal(bench.prepare(first.test.x), seen)
    if preset.startswith("split_cifar"):  # standardised per channel with the published statistics
        mean, std = STANDARDISATION[preset.removeprefix("split_")]
        expected = (stored.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        assert torch.allclose(seen, expected)
    else:
        assert torch.equal(seen, stored.float() / 255)


def test_cifar100_in_twenty_tasks_and_a_custom_split(data_dir):
    assert len(_bench(data_dir, "dataset=split_cifar100", "dataset.num_tasks=20").tasks) == 20
    bench = _bench(data_dir, "dataset=split_cifar10", "dataset.tasks=[[9,0],[3,4,5]]")
    assert [t.classes for t in bench.tasks] == [[9, 0], [3, 4, 5]]


def test_npz_of_the_users_own_data(data_dir):
    bench = _bench(data_dir, "dataset=npz", f"dataset.path={data_dir}/own.npz", "dataset.num_tasks=3")
    assert bench.input_shape == (3, 16, 16) and [t.classes for t in bench.tasks] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ConfigError, match="dataset.tasks"):  # classes known only once the file is read
        _bench(data_dir, "dataset=npz", f"dataset.path={data_dir}/own.npz", "dataset.tasks=[[0,1],[2,7]]")


@pytest.mark.parametrize("overrides, key", [
    (["dataset=split_cifar10", "dataset.tasks=[[0,1],[2,10]]"], "dataset.tasks"),  # a label CIFAR-10 lacks
    (["dataset=split_cifar100", "dataset.num_tasks=3"], "dataset.num_tasks"),  # 100 classes into 3 tasks
    (["dataset=permuted_mnist", "dataset.source=cifar10"], "dataset.kind"),  # permutations need one channel
    (["dataset=npz"], "dataset.path"),
    (["dataset=split_cifar10", "dataset.path=x.npz"], "dataset.path"),
    (["dataset.source=imagenet"], "dataset.source"),
    (["optimizer=rmsprop"], "optimizer"),
    (["optimizer.momentum=0.9"], "optimizer.momentum"),  # Adam has no such knob
    (["optimizer=sgd", "optimizer.nesterov=true"], "optimizer.nesterov"),
    (["train.lr_schedule=multistep"], "train.lr_milestones"),
    (["train.lr_schedule=step"], "train.lr_schedule"),
    (["train.active_classes=true", "scenario=task"], "train.active_classes"),
])
def test_bad_dataset_and_optimiser_values_name_the_key(overrides, key):
    error = config_error(overrides)
    assert error is not None and key in str(error) and "\n" not in str(error), error


def test_data_root_is_one_folder_per_data_set(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_RUNNER_DATA", str(tmp_path))
    for preset, folder in (("split_mnist", "mnist"), ("split_cifar100", "cifar100"), ("split_kmnist", "kmnist")):
        assert compose_cfg([f"dataset={preset}"]).data.root == str(tmp_path / folder)


def test_cifar10_resident_as_bytes_costs_under_200_mb():
    # What the whole CIFAR-10 training set occupies on the device: uint8 images plus the int64
    # target, task and label of each example (train and validation together).
    per_example = 3 * 32 * 32 * torch.tensor([], dtype=torch.uint8).element_size() + 3 * 8
    assert 50_000 * per_example / 2**20 < 200
    # benchmarks.build holds CIFAR's 60,000 images as bytes, and MNIST's 70,000 as floats.
    limit = importlib.import_module("cl_runner.benchmarks.build").FLOAT_STORAGE_LIMIT
    assert 60_000 * 3 * 32 * 32 * 4 > limit >= 70_000 * 28 * 28 * 4


def _reference_augment(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """The slow one-image-at-a-time crop and flip, for comparison."""
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    out = []
    for i in range(len(images)):
        crop = padded[i, :, top[i]: top[i] + images.shape[2], left[i]: left[i] + images.shape[3]]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out)


def test_augmentation_is_crop_and_flip_and_seeded():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = augment(images, torch.Generator().manual_seed(5))
    again = augment(images, torch.Generator().manual_seed(5))
    assert out.shape == images.shape and out.dtype == torch.uint8 and torch.equal(out, again)
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order, by hand
    top, left = torch.randint(0, 9, (64, 1), generator=g), torch.randint(0, 9, (64, 1), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    assert torch.equal(out, _reference_augment(images, top[:, 0], left[:, 0], flip))
    assert 0 < flip.sum() < 64 and (top != 4).any()


def test_optimisers_and_schedules():
    cfg = compose_cfg(["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=5e-4", "train.lr=0.1"])
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    assert isinstance(build_optimizer(compose_cfg(), [torch.nn.Parameter(torch.zeros(2))]), torch.optim.Adam)
    train = compose_cfg(["train.lr_schedule=multistep", "train.lr_milestones=[2,3]", "train.lr=0.1"]).train
    for task in range(2):  # every task starts again from train.lr
        scheduler = build_schedule(train, opt, epochs=4)
        rates = []
        for _ in range(4):
            rates.append(opt.param_groups[0]["lr"])
            scheduler.step()
        assert rates == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cosine = build_schedule(compose_cfg(["train.lr_schedule=cosine"]).train, opt, epochs=4)
    rates = []
    for _ in range(4):
        rates.append(opt.param_groups[0]["lr"])
        cosine.step()
    assert rates[0] == pytest.approx(0.1) and rates == sorted(rates, reverse=True) and rates[-1] > 0


def test_active_classes_leave_the_unseen_outputs_untouched(tiny_mnist, tmp_path):
    cfg = compose_cfg([f"data.root={tiny_mnist}", *QUICK, "dataset=split_mnist5", "train.active_classes=true"])
    bench = benchmarks.build(cfg, torch.device("cpu"))
    ctx = make_ctx(bench, task=0)
    ctx.begin(0, False, active=bench.task_masks[:1].any(0))
    scores = ctx.train_scores(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long))
    assert (scores[:, 2:] < -1e8).all() and (scores[:, :2] == 0).all()
    head = list(ctx.model.parameters())[-2]  # the output layer's weights
    before = head.detach().clone()
    train_epoch(ctx, bench.tasks[0].train, 16, torch.Generator().manual_seed(0))
    changed = (head.detach() != before).any(1)
    assert changed[:2].all() and not changed[2:].any()  # only digits 0 and 1 were trained
    # Through the run: it completes, and the option is refused where it means nothing.
    assert run(cfg, tmp_path / "run")["status"] == "completed"


@pytest.mark.parametrize("preset", ["split_fashion_mnist", "split_kmnist", "split_cifar10", "split_cifar100"])
def test_every_data_set_trains_end_to_end(data_dir, tmp_path, preset):
    overrides = [f"data.root={data_dir}/${{dataset.source}}", *QUICK, f"dataset={preset}"]
    if preset == "split_cifar10":
        overrides += ["dataset.augment=true", "optimizer=sgd", "optimizer.momentum=0.9", "train.lr_schedule=cosine"]
    summary = run(compose_cfg(overrides), tmp_path / "run")
    assert summary["status"] == "completed" and len(summary["final_test_acc"]) == len(summary["tasks"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet18"])
@pytest.mark.parametrize("preset", ["split_fashion_mnist", "split_kmnist", "split_cifar10", "split_cifar100", "npz",
                                    "permuted_mnist"])
def test_every_data_set_with_every_model(data_dir, tmp_path, preset, model):
    overrides = [f"data.root={data_dir}/${{dataset.source}}", *QUICK, f"dataset={preset}", f"model={model}",
                 "model.width=8", "strategy=ewc", "ewc.fisher_samples=16",  # EWC: the Fisher of every model kind
                 "dataset.num_tasks=2"]  # two tasks are enough to exercise every stage of a run
    if preset == "npz":
        overrides += [f"dataset.path={data_dir}/own.npz"]
    if preset == "permuted_mnist":  # the fashion stand-in, permuted: a 28x28 grey source
        overrides += ["dataset.source=fashion_mnist"]
    summary = run(compose_cfg(overrides), tmp_path / "run")
    assert summary["status"] == "completed" and summary["ewc_penalties"] == len(summary["tasks"]) - 1


@pytest.mark.slow
@pytest.mark.parametrize("preset, data", [("seq_cifar10_der", "cifar10"), ("seq_mnist_online", "kmnist")])
def test_published_protocol_presets_run(data_dir, tmp_path, preset, data):
    cfg = compose_cfg([f"experiment={preset}", f"data.root={data_dir}/{data}", f"dataset.source={data}",
                       "data.verify=false", "data.download=false", "train.iterations=2", "train.progress=false",
                       "device=cpu", "model.width=8" if preset.startswith("seq_cifar") else "model.width=16"])
    assert (cfg.optimizer.name, cfg.strategy.name) == ("sgd", "der")
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["der_memory_examples"] > 0
