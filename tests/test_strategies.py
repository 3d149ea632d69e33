"""Replay and EWC: the memory's size and balance, the penalty, and the exact Fisher."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cl_runner import benchmarks
from cl_runner.fisher import expected_fisher, fisher_diagonal, fisher_diagonal_loop
from cl_runner.examples import Examples
from cl_runner.models.mlp import mlp
from cl_runner.run import run
from cl_runner.strategies.ewc import EWCConfig, EWCPlugin
from cl_runner.strategies.replay import ReplayConfig, ReplayPlugin

from .conftest import compose_cfg, make_ctx


def _tiny_benchmark(n_per_class: int = 50, seed: int = 0) -> benchmarks.Benchmark:
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t, digits in enumerate(([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])):
        # Unequal class sizes, so that balanced and unbalanced selection differ.
        y = torch.cat([torch.full((n_per_class * (1 + (d % 2)),), d) for d in digits])
        split = Examples(torch.rand(len(y), 784, generator=g), y, torch.full_like(y, t), y.clone())
        tasks.append(benchmarks.Task(t, str(t), digits, split, split, split))
    masks = torch.ones(2, 10, dtype=torch.bool)
    return benchmarks.Benchmark(tasks, "class", 10, masks)


def _ctx(bench, task=0, seed=0, model=None):
    return make_ctx(bench, task, model or mlp(784, 10, 16, 1, "leaky_relu"), seed, lr=1e-3)


def _replay(**kw):
    return ReplayPlugin(OmegaConf.merge(OmegaConf.structured(ReplayConfig), kw))


def test_replay_keeps_the_share_drawn_reproducibly():
    bench = _tiny_benchmark()
    n = len(bench.tasks[0].train)
    first, again, other_seed = _replay(), _replay(), _replay()
    first.after_task(_ctx(bench))
    again.after_task(_ctx(bench))
    other_seed.after_task(_ctx(bench, seed=1))
    assert len(first.memory[0]) == round(0.1 * n)
    assert torch.equal(first.memory[0].x, again.memory[0].x)
    assert not torch.equal(first.memory[0].x, other_seed.memory[0].x)
    # The memory joins the next task's data, with its own task ids.
    data = first.train_set(_ctx(bench, task=1), bench.tasks[1].train)
    assert len(data) == len(bench.tasks[1].train) + round(0.1 * n)
    assert (data.task == 0).sum() == round(0.1 * n)


def test_balanced_replay_keeps_the_same_share_of_every_class():
    bench = _tiny_benchmark()
    plugin = _replay(share=0.2, balanced=True)
    plugin.after_task(_ctx(bench))
    counts = plugin.summary()["replay_examples_per_class"]
    sizes = {d: int((bench.tasks[0].train.label == d).sum()) for d in range(5)}
    assert counts == {d: round(0.2 * sizes[d]) for d in range(5)}


def test_per_class_replay_is_a_fixed_memory():
    bench = _tiny_benchmark()
    plugin = _replay(per_class=7)
    for task in (0, 1):
        plugin.after_task(_ctx(bench, task=task))
    assert plugin.summary()["replay_examples_per_class"] == {d: 7 for d in range(10)}
    assert plugin.summary()["replay_examples"] == 70


def test_replay_state_round_trips():
    bench = _tiny_benchmark()
    plugin, restored = _replay(), _replay()
    plugin.after_task(_ctx(bench))
    restored.load_state_dict(plugin.state_dict())
    assert torch.equal(restored.memory[0].x, plugin.memory[0].x)


def _ewc(**kw):
    return EWCPlugin(OmegaConf.merge(OmegaConf.structured(EWCConfig), {"alpha": 1.0, **kw}))


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it():
    bench = _tiny_benchmark()
    ctx = _ctx(bench)
    plugin = _ewc()
    assert plugin.loss_terms(ctx, None, None) == {}  # nothing to protect before the first task
    plugin.after_task(ctx)
    assert plugin.penalty(ctx.model).item() == 0.0
    direction = [torch.randn_like(p) for p in ctx.model.parameters()]
    penalties = []
    for step in (0.01, 0.1, 1.0):
        with torch.no_grad():
            for p, anchor, d in zip(ctx.model.parameters(), plugin.anchor.values(), direction):
                p.copy_(anchor + step * d)
        penalties.append(plugin.penalty(ctx.model).item())
    assert 0 < penalties[0] < penalties[1] < penalties[2]
    # Quadratic: ten times the distance, a hundred times the penalty.
    assert penalties[2] / penalties[1] == pytest.approx(100, rel=1e-3)
    assert plugin.loss_terms(ctx, None, None)["ewc"].item() == pytest.approx(penalties[2], rel=1e-6)


def test_ewc_max_normalisation_and_online_mode():
    bench = _tiny_benchmark()
    plugin = _ewc(mode="online", gamma=0.5)
    plugin.after_task(_ctx(bench, task=0))
    for f in plugin.fisher.values():
        assert f.max().item() == pytest.approx(1.0, rel=1e-4)  # max / (max + 1e-8)
    first = {n: f.clone() for n, f in plugin.fisher.items()}
    plugin.after_task(_ctx(bench, task=1, model=_ctx(bench).model))
    assert plugin.summary() == {"ewc_penalties": 1} and plugin.constant == 0.0  # one running penalty
    separate = _ewc()
    for task in (0, 1):
        separate.after_task(_ctx(bench, task=task))
    assert separate.summary() == {"ewc_penalties": 2}
    assert any(not torch.allclose(plugin.fisher[n], first[n]) for n in first)


def _separate_penalties(pairs, model) -> torch.Tensor:
    """The slow reference: one penalty per task, summed in float64."""
    return sum(sum((f[n].double() * (p.double() - a[n].double()).square()).sum() for n, p in model.named_parameters())
               for f, a in pairs)


def test_ewc_separate_penalties_fold_into_one_pair_exactly():
    """Three tasks' (Fisher, anchor) pairs folded into one: the penalty's value and its
    gradient anywhere equal the sum of the three separate penalties (the reference)."""
    torch.manual_seed(0)
    model = mlp(6, 3, 5, 1, "relu")
    names = [n for n, _ in model.named_parameters()]
    plugin, pairs = _ewc(), []
    for task in range(3):
        fisher = {n: torch.rand_like(p) * (torch.rand_like(p) > 0.3) for n, p in model.named_parameters()}  # zeros too
        anchor = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        pairs.append((fisher, anchor))
        plugin.add(fisher, anchor)
    assert plugin.summary() == {"ewc_penalties": 3} and len(plugin.fisher) == len(names)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 2)
        expected = _separate_penalties(pairs, model)
        reference = torch.autograd.grad(expected, list(model.parameters()))
        value = plugin.penalty(model)
        got = torch.autograd.grad(value, list(model.parameters()))
        assert value.item() == pytest.approx(expected.item(), rel=1e-5)
        for g, r in zip(got, reference):
            assert torch.allclose(g.double(), r.double(), rtol=1e-5, atol=1e-5)
    # A checkpoint written before the fold (one pair per task) loads folded, to the same penalty.
    old = _ewc()
    old.load_state_dict({"fishers": [f for f, _ in pairs], "anchors": [a for _, a in pairs]})
    assert old.penalty(model).item() == pytest.approx(plugin.penalty(model).item(), rel=1e-6)
    again = _ewc()
    again.load_state_dict(plugin.state_dict())
    assert again.penalty(model).item() == plugin.penalty(model).item() and again.summary() == plugin.summary()


def _rel_diff(a: dict, b: dict) -> float:
    return max(((a[n].double() - b[n].double()).abs().max() / b[n].double().abs().max()).item() for n in a)


@pytest.mark.parametrize("depth", [1, 2])
def test_vectorised_fisher_equals_the_per_example_loop(depth):
    torch.manual_seed(0)
    model = mlp(784, 10, 32, depth, "leaky_relu")
    x, y = torch.rand(300, 784), torch.randint(0, 10, (300,))
    fast, slow = fisher_diagonal(model, x, y, chunk=64), fisher_diagonal_loop(model, x, y)
    assert set(fast) == set(slow) == {n for n, _ in model.named_parameters()}
    assert _rel_diff(fast, slow) < 1e-5


def test_fisher_with_task_masks_and_the_vmap_fallback():
    torch.manual_seed(0)
    # LayerNorm has parameters that are not a Linear's: the vmap path must take over.
    model = nn.Sequential(nn.Linear(20, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 6))
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    bias = torch.zeros(64, 6)
    bias[:, 3:] = benchmarks.MASKED_LOGIT  # only the first three outputs are this task's
    fast, slow = fisher_diagonal(model, x, y, bias), fisher_diagonal_loop(model, x, y, bias)
    assert _rel_diff(fast, slow) < 1e-5
    # Masked outputs get no gradient at all.
    assert fast["3.weight"][3:].abs().max().item() == 0.0


def _expected_fisher_loop(model: nn.Module, x: torch.Tensor, bias: torch.Tensor, live: int) -> dict:
    """The slow reference of the expected Fisher: for every live label c, the per-example loop's
    squared gradients, weighted example by example with p(c|x) (the model's eval-mode output),
    as the literature's reference code accumulates them."""
    training = model.training
    model.eval()
    probs = torch.softmax(model(x) + bias, dim=-1).detach()
    model.train(training)
    reference = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for c in range(live):
        for i in range(len(x)):
            one = fisher_diagonal_loop(model, x[i : i + 1], torch.tensor([c]), bias[i : i + 1])
            for n in reference:
                reference[n] += probs[i, c] * one[n] / len(x)
    return reference


@pytest.mark.parametrize("vmap_path", [False, True])
def test_expected_fisher_is_the_probability_weighted_sum_over_labels(vmap_path):
    torch.manual_seed(0)
    layers = [nn.Linear(20, 16), nn.LayerNorm(16)] if vmap_path else [nn.Linear(20, 16)]
    model = nn.Sequential(*layers, nn.ReLU(), nn.Linear(16, 6))
    x = torch.randn(40, 20)
    bias = torch.zeros(40, 6)
    bias[:, 3:] = benchmarks.MASKED_LOGIT  # a task-IL head: three live outputs
    assert _rel_diff(expected_fisher(model, x, bias), _expected_fisher_loop(model, x, bias, live=3)) < 1e-5


def test_sampled_true_fisher_underestimates_a_confident_model():
    # Why ewc.fisher=expected exists: with p(correct) near 1, almost every sampled label is
    # the predicted one, whose gradient is tiny; the rare other labels carry the Fisher.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([9.0, 0.0]))  # p(class 0) = 0.99988 for every input
    x = torch.randn(200, 10)
    predicted = torch.zeros(200, dtype=torch.long)  # what a sampler almost always draws here
    exact = expected_fisher(model, x)["0.bias"].sum()
    sampled_typical = fisher_diagonal(model, x, predicted)["0.bias"].sum()
    assert sampled_typical < exact / 1000


@pytest.mark.slow
def test_short_ewc_replay_run(mnist_root, tmp_path):
    cfg = compose_cfg([f"data.root={mnist_root}", "experiment=ewc_replay", "train.epochs=[2,2]",
                       "model.width=32", "train.progress=false"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert list(log.columns) == ["train_task", "epoch", "global_epoch", "loss", "ce", "ewc", "seconds"]
    assert (log[log.train_task == 0]["ewc"] == 0).all() and (log[log.train_task == 1]["ewc"] > 0).all()
    assert log["loss"].to_numpy() == pytest.approx((log["ce"] + log["ewc"]).to_numpy(), rel=1e-5)
    saved = json.loads((tmp_path / "summary.json").read_text())
    task0_train = len(benchmarks.build(cfg, torch.device("cpu")).tasks[0].train)
    assert saved["replay_examples_per_task"] == [round(0.1 * task0_train)]
    assert saved["ewc_penalties"] == 1
    # Replay keeps task 0 alive: far above what naive training leaves (about 0).
    assert saved["final_test_acc"][0] > 0.5


# --- the exact Fisher of convolutional models -------------------------------------------------


def _conv_model(name: str, head: str = "single") -> nn.Module:
    """A small cnn or resnet18 on 1x12x12 images, six outputs (three tasks of two under
    multi), with BatchNorm running averages away from their initial values."""
    from cl_runner import models
    from cl_runner.models.cnn import CNNConfig
    from cl_runner.models.resnet import ResNetConfig

    cfg = CNNConfig(width=6, blocks=2, head=head) if name == "cnn" else ResNetConfig(width=4, head=head)
    torch.manual_seed(0)
    model = models.build(cfg, (1, 12, 12), 6, torch.device("cpu"), heads=[[0, 1], [2, 3], [4, 5]])
    with torch.no_grad():
        model(torch.randn(64, 1, 12, 12))  # training mode: the running averages move
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # affine parameters away from 1 and 0 as well
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def _task_bias(n: int) -> torch.Tensor:
    bias = torch.zeros(n, 6)
    bias[:, 2:] = benchmarks.MASKED_LOGIT  # task 0 of three tasks of two outputs
    return bias


@pytest.mark.parametrize("name,head", [("cnn", "single"), ("resnet18", "single"), ("cnn", "multi"), ("resnet18", "multi")])
@pytest.mark.parametrize("masked", [False, True])
def test_closed_form_fisher_of_conv_models_equals_the_loop(name, head, masked):
    model = _conv_model(name, head)
    x = torch.randn(24, 1, 12, 12)
    y = torch.randint(0, 2 if masked else 6, (24,))
    bias = _task_bias(24) if masked else None
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    fast = fisher_diagonal(model, x, y, bias, chunk=10, method="closed")  # chunks of 10, 10 and 4
    slow = fisher_diagonal_loop(model, x, y, bias)
    assert set(fast) == {n for n, _ in model.named_parameters()}
    assert _rel_diff(fast, slow) < 1e-5
    # Eval mode throughout: the running averages are read, not updated; the mode is restored.
    assert model.training and all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    if masked and head == "multi":  # other tasks' heads get no gradient at all
        others = [n for n in fast if ".heads.1." in n or ".heads.2." in n]
        assert len(others) == 4 and all(fast[n].abs().max() == 0 for n in others)


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_vmap_fisher_of_conv_models_equals_the_loop(name):
    model = _conv_model(name)
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 2, (16,))
    bias = _task_bias(16)
    assert _rel_diff(fisher_diagonal(model, x, y, bias, method="vmap"), fisher_diagonal_loop(model, x, y, bias)) < 1e-5


class _Layers(nn.Module):
    """Every closed form's options: conv bias, stride, dilation, rectangular kernels, an
    in-place ReLU and an in-place residual sum on layer outputs, BatchNorm1d, Linear over
    a sequence of positions."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=3)  # 9x9 -> 4x4
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, (3, 1), padding=(1, 0), bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.seq = nn.Linear(4, 5)  # over the 4x4 = 16 positions of each image
        self.bn1d = nn.BatchNorm1d(80)
        self.out = nn.Linear(80, 6)

    def forward(self, x):
        h = self.relu(self.conv1(x))
        r = self.bn(self.conv2(h))
        r += h  # in place, on the BatchNorm's output
        seq = self.seq(r.flatten(2).transpose(1, 2))  # [B, 16, 5]
        return self.out(self.bn1d(seq.flatten(1)))


@pytest.mark.parametrize("conv_way", ["unfold", "grouped"])
def test_every_closed_form_equals_the_loop_on_odd_layers(monkeypatch, conv_way):
    from cl_runner import layer_fisher

    # Convolutions take one of two ways to their per-example gradients, by output size.
    monkeypatch.setattr(layer_fisher, "GROUPED_MIN_POSITIONS", 10**9 if conv_way == "unfold" else 1)
    torch.manual_seed(0)
    model = _Layers()
    model(torch.randn(32, 2, 9, 9))  # running averages
    model.bn1d.weight.data.uniform_(0.5, 1.5)
    x, y = torch.randn(20, 2, 9, 9), torch.randint(0, 6, (20,))
    slow = fisher_diagonal_loop(model, x, y)
    assert _rel_diff(fisher_diagonal(model, x, y, method="closed"), slow) < 1e-5
    monkeypatch.setattr(layer_fisher, "SLICE_BUDGET", 1)  # per-example products one example at a time
    assert _rel_diff(fisher_diagonal(model, x, y, chunk=7, method="closed"), slow) < 1e-5


@pytest.mark.parametrize("case", ["shared weights", "batch statistics", "grouped conv"])
def test_layers_without_a_closed_form_fall_back_to_vmap(case):
    torch.manual_seed(0)
    if case == "shared weights":  # one layer called twice in a forward pass
        layer = nn.Linear(8, 8)
        model = nn.Sequential(layer, nn.Tanh(), layer, nn.Flatten(), nn.Linear(8, 6))
        x = torch.randn(12, 8)
    elif case == "batch statistics":  # no running averages: BatchNorm normalises each batch
        model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3, track_running_stats=False), nn.Flatten(), nn.Linear(48, 6))
        x = torch.randn(12, 1, 6, 6)
    else:
        model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(64, 6))
        x = torch.randn(12, 2, 6, 6)
    y = torch.randint(0, 6, (12,))
    with pytest.raises(ValueError, match="no closed form"):
        fisher_diagonal(model, x, y, method="closed")
    params = list(model.named_parameters(remove_duplicate=False))
    assert _rel_diff(fisher_diagonal(model, x, y), fisher_diagonal_loop(model, x, y)) < 1e-5
    # The model keeps its very parameters (torch.func.functional_call swaps them while it runs).
    assert all(p is q for (_, p), (_, q) in zip(params, model.named_parameters(remove_duplicate=False)))


def test_expected_fisher_of_a_conv_model_is_the_probability_weighted_sum_over_labels():
    model = _conv_model("cnn")
    x = torch.randn(12, 1, 12, 12)
    bias = _task_bias(12)
    assert _rel_diff(expected_fisher(model, x, bias), _expected_fisher_loop(model, x, bias, live=2)) < 1e-5
    assert model.training
