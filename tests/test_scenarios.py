"""The three scenarios and the benchmarks, on tiny generated data."""

from __future__ import annotations

import pytest
import torch

from cl_runner import benchmarks, config
from cl_runner.errors import ConfigError
from cl_runner.run import run

from .conftest import compose_cfg, config_error


def _bench(root, *overrides):
    cfg = compose_cfg([f"data.root={root}", "data.verify=false", "data.download=false", *overrides])
    config.validate(cfg)
    return benchmarks.build(cfg, torch.device("cpu"))


def test_class_il_one_head_over_all_digits(tiny_mnist):
    bench = _bench(tiny_mnist, "dataset=split_mnist5")
    assert bench.num_outputs == 10 and len(bench.tasks) == 5
    logits = torch.randn(4, 10)
    assert torch.equal(bench.mask_logits(logits, torch.tensor([0, 1, 2, 3])), logits)


def test_task_il_scores_only_the_tasks_own_classes(tiny_mnist):
    bench = _bench(tiny_mnist, "dataset=split_mnist5", "scenario=task")
    assert [t.classes for t in bench.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    logits = torch.zeros(2, 10)
    logits[:, 9] = 100.0  # the largest logit belongs to task 4
    masked = bench.mask_logits(logits, torch.tensor([0, 4]))
    assert masked[0].argmax().item() in (0, 1) and masked[1].argmax().item() == 9
    # Per-example masks: a mixed batch (e.g. with replay) gets each example's own task mask.
    assert (masked[0, 2:] == benchmarks.MASKED_LOGIT).all()


def test_domain_il_labels_are_positions_within_the_task(tiny_mnist):
    bench = _bench(tiny_mnist, "dataset=split_mnist5", "scenario=domain")
    assert bench.num_outputs == 2
    for task in bench.tasks:
        assert set(task.test.y.tolist()) == {0, 1}
        assert torch.equal(task.test.y, task.test.label % 2)  # 0/1, 2/3, ...: even/odd


def test_permuted_mnist_under_each_scenario(tiny_mnist):
    domain = _bench(tiny_mnist, "dataset=permuted_mnist", "dataset.num_tasks=3", "scenario=domain")
    assert domain.num_outputs == 10 and [t.name for t in domain.tasks] == ["perm0", "perm1", "perm2"]
    t0, t1 = domain.tasks[0].test, domain.tasks[1].test
    assert torch.equal(t0.y, t1.y) and not torch.equal(t0.x, t1.x)
    # Same pixels, another order: each image keeps its multiset of values.
    assert torch.equal(t0.x.flatten(1).sort(dim=1).values, t1.x.flatten(1).sort(dim=1).values)
    assert torch.equal(t0.y, t0.label)  # task 0 is the identity permutation of plain MNIST
    klass = _bench(tiny_mnist, "dataset=permuted_mnist", "dataset.num_tasks=3", "scenario=class")
    assert klass.num_outputs == 30 and klass.tasks[2].classes == list(range(20, 30))
    assert torch.equal(klass.tasks[2].test.y, klass.tasks[2].test.label + 20)


def test_rotated_mnist_angles(tiny_mnist):
    bench = _bench(tiny_mnist, "dataset=rotated_mnist", "dataset.num_tasks=2", "dataset.angles=[0,90]", "scenario=domain")
    plain, turned = bench.tasks[0].test.x.view(-1, 28, 28), bench.tasks[1].test.x.view(-1, 28, 28)
    # A quarter turn of the pixel grid, up to interpolation at the borders.
    expected = torch.rot90(plain, k=1, dims=(1, 2))
    assert torch.allclose(turned[:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2], atol=1e-4) or torch.allclose(
        turned[:, 2:-2, 2:-2], torch.rot90(plain, k=-1, dims=(1, 2))[:, 2:-2, 2:-2], atol=1e-4
    )


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["scenario=sideways"], "scenario"),
        (["dataset=permuted_mnist", "dataset.num_tasks=0"], "dataset.num_tasks"),
        (["scenario=task", "dataset.tasks=[[0,1],[2]]"], "dataset.tasks"),
        (["dataset=rotated_mnist", "dataset.num_tasks=2", "dataset.angles=[10]"], "dataset.angles"),
    ],
)
def test_bad_scenario_input(overrides, key):
    error = config_error(overrides)
    assert isinstance(error, ConfigError) and error.key == key, error


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_each_scenario_trains_on_tiny_data(tiny_mnist, tmp_path, scenario):
    cfg = compose_cfg([f"data.root={tiny_mnist}", "data.verify=false", "data.download=false", "dataset=split_mnist5",
                       f"scenario={scenario}", "train.epochs=5", "train.batch_size=32", "train.lr=0.01", "train.progress=false"])
    summary = run(cfg, tmp_path)
    assert len(summary["accuracy_matrix"]) == 5 and len(summary["accuracy_matrix"][0]) == 5
    # The tiny digits are trivially separable: the last task is learnt in every scenario.
    assert summary["final_test_acc"][-1] > 0.9
