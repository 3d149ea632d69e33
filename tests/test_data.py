"""MNIST reading and the task splits, on tiny generated IDX files (and the real checksums)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from cl_runner import benchmarks, mnist
from cl_runner.errors import DataError

from .conftest import compose_cfg, write_idx


def _bench(root, *overrides):
    cfg = compose_cfg([f"data.root={root}", "data.verify=false", "data.download=false", *overrides])
    return benchmarks.build(cfg, torch.device("cpu"))


def test_idx_round_trip_gz_and_raw(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "a.gz", images)
    data = gzip.open(tmp_path / "a.gz").read()
    (tmp_path / "b").write_bytes(data)
    for path in (tmp_path / "a.gz", tmp_path / "b"):
        assert np.array_equal(mnist._parse_idx(mnist._read_bytes(path), path), images)


def test_tiny_data_fails_the_real_checksums(tiny_mnist):
    with pytest.raises(DataError, match="checksum"):
        mnist.load(tiny_mnist, allow_download=False, verify=True)


def test_missing_folder_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        mnist.load(tmp_path / "nowhere", allow_download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert all(name in message for name in mnist.FILES)


def test_raw_files_are_accepted_too(tiny_mnist, tmp_path):
    for name in mnist.FILES:
        with gzip.open(tiny_mnist / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert len(mnist.load(tmp_path, allow_download=False, verify=False)["train_y"]) == 600


def test_split_is_disjoint_filtered_and_90_10(tiny_mnist):
    bench = _bench(tiny_mnist)
    assert [t.name for t in bench.tasks] == ["0-1-2-3-4", "5-6-7-8-9"]
    train_total = sum(len(t.train) for t in bench.tasks)
    val_total = sum(len(t.val) for t in bench.tasks)
    assert (train_total, val_total) == (540, 60)
    assert sum(len(t.test) for t in bench.tasks) == 200
    for task, digits in zip(bench.tasks, ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])):
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) <= set(digits)
            assert split.x.shape[1] == 784 and 0 <= split.x.min() and split.x.max() <= 1
    # No validation image is also a training image (rows compared exactly).
    train = torch.cat([t.train.x for t in bench.tasks])
    val = torch.cat([t.val.x for t in bench.tasks])
    assert not (torch.cdist(val, train) == 0).any()


def test_split_depends_on_the_seed_only(tiny_mnist):
    a, b, c = _bench(tiny_mnist), _bench(tiny_mnist), _bench(tiny_mnist, "seed=1")
    assert torch.equal(a.tasks[0].val.x, b.tasks[0].val.x)
    assert not torch.equal(a.tasks[0].val.x, c.tasks[0].val.x)


def test_custom_task_split(tiny_mnist):
    bench = _bench(tiny_mnist, "dataset.tasks=[[3,1],[7],[0,9]]")
    assert [sorted(set(t.test.y.tolist())) for t in bench.tasks] == [[1, 3], [7], [0, 9]]


def test_real_mnist_checksums(mnist_root):
    arrays = mnist.load(mnist_root, allow_download=False)
    assert arrays["train_x"].shape == (60000, 28, 28) and arrays["test_y"].shape == (10000,)
