"""MAS (Memory Aware Synapses): the vectorised importance against a per-example loop, the
penalty, its accumulation over tasks and its state, its keys' checks, and real runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cl_runner.models.mlp import mlp
from cl_runner.run import run
from cl_runner.strategies.mas import MASConfig, MASPlugin, importance, importance_loop

from .conftest import compose_cfg, config_error, make_ctx
from .test_strategies import _conv_model, _ctx, _rel_diff, _tiny_benchmark


def _mas(**kw):
    return MASPlugin(OmegaConf.merge(OmegaConf.structured(MASConfig), kw))


@pytest.mark.parametrize("depth", [1, 2])
def test_mas_importance_equals_the_per_example_loop_on_an_mlp(depth):
    torch.manual_seed(0)
    model = mlp(784, 10, 32, depth, "leaky_relu")
    x = torch.rand(120, 784)
    fast, slow = importance(model, x, chunk=50), importance_loop(model, x)  # chunks of 50, 50 and 20
    assert set(fast) == set(slow) == {n for n, _ in model.named_parameters()}
    assert _rel_diff(fast, slow) < 1e-5
    assert all((f >= 0).all() for f in fast.values())


@pytest.mark.parametrize("name,head", [("cnn", "single"), ("resnet18", "single"), ("cnn", "multi")])
@pytest.mark.parametrize("masked", [False, True])
def test_mas_importance_of_conv_models_equals_the_loop(name, head, masked):
    """Conv2d + BatchNorm (running averages away from their initial values), in eval mode: the
    model's mode and buffers are handed back as they were."""
    model = _conv_model(name, head)
    x = torch.randn(20, 1, 12, 12)
    live = torch.zeros(1, 6, dtype=torch.bool)
    live[0, : 2 if masked else 6] = True  # masked: task 0 of three tasks of two outputs
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    fast, slow = importance(model, x, live, chunk=8), importance_loop(model, x, live)
    assert _rel_diff(fast, slow) < 1e-5
    assert model.training and all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    if masked and head == "multi":  # the other tasks' heads are outside the norm: no importance
        others = [n for n in fast if ".heads.1." in n or ".heads.2." in n]
        assert len(others) == 4 and all(fast[n].abs().max() == 0 for n in others)


def test_mas_importance_is_the_squared_output_norms_gradient_in_closed_form():
    """One linear layer f = W x + b: d||f||^2/dW = 2 f x^T, d/db = 2 f, so Omega is known exactly."""
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    x = torch.randn(7, 5)
    out = layer(x).detach()
    omega = importance(layer, x)
    assert torch.allclose(omega["weight"], (2 * out.abs()).T @ x.abs() / 7, atol=1e-6)
    assert torch.allclose(omega["bias"], 2 * out.abs().mean(0), atol=1e-6)


def test_mas_penalty_is_zero_at_the_anchor_and_the_formula_away_from_it():
    bench = _tiny_benchmark()
    ctx = _ctx(bench)
    plugin = _mas(alpha=3.0)
    assert plugin.loss_terms(ctx, None, None) == {}  # nothing to protect before the first task
    plugin.after_task(ctx)
    assert plugin.tasks == 1 and plugin.penalty(ctx.model).item() == 0.0
    torch.manual_seed(1)
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    formula = sum((plugin.omega[n].double() * (p.detach().double() - plugin.anchor[n].double()).square()).sum()
                  for n, p in ctx.model.named_parameters())
    assert formula > 0
    assert plugin.penalty(ctx.model).item() == pytest.approx(formula.item(), rel=1e-5)
    assert plugin.loss_terms(ctx, None, None)["mas"].item() == pytest.approx(3 * formula.item(), rel=1e-5)
    # The importance is the vectorised one, of the task's training split (mas.data=train).
    expected = importance(ctx.model, bench.tasks[0].train.x)
    assert plugin.omega.keys() == expected.keys()


def test_mas_accumulates_like_the_paper_or_decays_like_avalanche():
    bench = _tiny_benchmark()
    model = mlp(784, 10, 16, 1, "relu")
    summed, mixed = _mas(), _mas(decay=0.5)
    omegas = []
    for task in (0, 1):
        ctx = make_ctx(bench, task, model)
        omegas.append(importance(model, bench.tasks[task].train.x))
        for plugin in (summed, mixed):
            plugin.after_task(ctx)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.1)  # the second task's weights differ
    for n in omegas[0]:
        assert torch.allclose(summed.omega[n], omegas[0][n] + omegas[1][n], atol=1e-6)
        assert torch.allclose(mixed.omega[n], 0.5 * omegas[0][n] + 0.5 * omegas[1][n], atol=1e-6)
    assert summed.tasks == 2 and summed.summary() == {"mas_tasks": 2}
    # The anchor is the latest task's weights, and the state round-trips (tensors only).
    again = _mas()
    again.load_state_dict(summed.state_dict())
    assert all(isinstance(v, (torch.Tensor, dict)) for v in summed.state_dict().values())
    assert again.penalty(model).item() == summed.penalty(model).item() and again.tasks == 2


def test_mas_samples_and_data_choose_the_examples():
    bench = _tiny_benchmark()
    ctx = _ctx(bench)
    a, b = _mas(samples=20), _mas(samples=20)
    a.after_task(ctx)
    b.after_task(ctx)
    assert all(torch.equal(a.omega[n], b.omega[n]) for n in a.omega)  # drawn reproducibly from the seed
    whole = _mas(data="val")
    whole.after_task(ctx)
    assert not all(torch.equal(a.omega[n], whole.omega[n]) for n in a.omega)


def test_mas_is_skipped_after_the_final_task():
    bench = _tiny_benchmark()
    plugin = _mas()
    plugin.after_task(make_ctx(bench, 1, final=True))
    assert plugin.omega == {} and plugin.tasks == 0


@pytest.mark.parametrize("override,key", [("mas.alpha=-1", "mas.alpha"), ("mas.samples=0", "mas.samples"),
                                          ("mas.decay=1.5", "mas.decay"), ("mas.data=test", "mas.data")])
def test_bad_mas_values_name_the_key(override, key):
    error = config_error(["strategy=mas", override])
    assert error is not None and error.key == key and key in str(error)


def test_mas_composes_under_every_scenario():
    for scenario in ("class", "task", "domain"):
        assert config_error(["strategy=mas", f"scenario={scenario}"]) is None
    cfg = compose_cfg(["strategy=mas"])
    assert list(cfg.strategy.plugins) == ["mas"] and cfg.mas.alpha == 1.0 and cfg.mas.decay is None


# --- runs ---------------------------------------------------------------------------------------

TINY = ["data.verify=false", "data.download=false", "device=cpu", "train.progress=false", "train.iterations=2",
        "train.batch_size=32", "mas.samples=64"]
MODELS = {"mlp64": ["model=mlp64"], "cnn": ["model=cnn", "model.blocks=2", "model.width=8"],
          "resnet18": ["model=resnet18", "model.width=4"]}
# model.head=multi is for task-IL only.
CASES = [(m, "single", s) for m in MODELS for s in ("class", "task", "domain")] + [(m, "multi", "task") for m in MODELS]


@pytest.mark.parametrize("model,head,scenario", CASES)
def test_mas_runs_on_every_model_head_and_scenario(model, head, scenario, tiny_mnist, tmp_path):
    cfg = compose_cfg([f"data.root={tiny_mnist}", *TINY, "strategy=mas", *MODELS[model], f"model.head={head}",
                       f"scenario={scenario}"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed", summary.get("error")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["mas_tasks"] == 1
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert (log[log.train_task == 0]["mas"] == 0).all() and log["mas"].notna().all()


@pytest.mark.slow
def test_short_mas_run(mnist_root, tmp_path):
    cfg = compose_cfg([f"data.root={mnist_root}", "strategy=mas", "train.epochs=[1,2]", "model.width=32",
                       "train.progress=false", "mas.alpha=10"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert list(log.columns) == ["train_task", "epoch", "global_epoch", "loss", "ce", "mas", "seconds"]
    assert (log[log.train_task == 0]["mas"] == 0).all() and (log[log.train_task == 1]["mas"] > 0).all()
    assert log["loss"].to_numpy() == pytest.approx((log["ce"] + log["mas"]).to_numpy(), rel=1e-5)
    assert json.loads((tmp_path / "summary.json").read_text())["mas_tasks"] == 1
