"""The task splits built from MNIST (tiny generated IDX files), and the real MNIST files' checksums.

Every format and data fault: test_sources.py, test_data_faults.py and test_download.py."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import torch

from cl_runner import benchmarks, sources

from .conftest import compose_cfg
from .standins import IDX_STEMS


def _bench(root, *overrides):
    cfg = compose_cfg([f"data.root={root}", "data.verify=false", "data.download=false", *overrides])
    return benchmarks.build(cfg, torch.device("cpu"))


def test_raw_files_are_accepted_too(tiny_mnist, tmp_path):
    for stem in IDX_STEMS:
        with gzip.open(tiny_mnist / f"{stem}.gz") as src, open(tmp_path / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    arrays = sources.load("mnist", tmp_path, download=False, verify=False)
    assert arrays.train_x.shape == (600, 1, 28, 28) and len(arrays.test_y) == 200


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
            # MNIST is small enough to be held as floats (benchmarks.build); the model sees [0, 1].
            assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 28, 28)
            seen = bench.prepare(split.x)
            assert seen.dtype == torch.float32 and 0 <= seen.min() and seen.max() <= 1
    # No validation image is also a training image (rows compared exactly).
    train = torch.cat([t.train.x for t in bench.tasks]).flatten(1).float()
    val = torch.cat([t.val.x for t in bench.tasks]).flatten(1).float()
    assert not (torch.cdist(val, train) == 0).any()


def test_split_depends_on_the_seed_only(tiny_mnist):
    a, b, c = _bench(tiny_mnist), _bench(tiny_mnist), _bench(tiny_mnist, "seed=1")
    assert torch.equal(a.tasks[0].val.x, b.tasks[0].val.x)
    assert not torch.equal(a.tasks[0].val.x, c.tasks[0].val.x)


def test_custom_task_split(tiny_mnist):
    bench = _bench(tiny_mnist, "dataset.tasks=[[3,1],[7],[0,9]]")
    assert [sorted(set(t.test.y.tolist())) for t in bench.tasks] == [[1, 3], [7], [0, 9]]


def test_real_mnist_checksums_and_class_counts(mnist_root):
    arrays = sources.load("mnist", mnist_root, download=False, verify=True)
    assert arrays.train_x.shape == (60000, 1, 28, 28) and arrays.test_y.shape == (10000,)
    # The counts ../shared/README.md lists.
    assert np.bincount(arrays.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(arrays.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
