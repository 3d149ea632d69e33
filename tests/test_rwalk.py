"""RWalk (Riemannian Walk): its online Fisher and path-integral score against a plain
step-by-step reference, the penalty, its state, its keys' checks, and real runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cl_runner.run import run
from cl_runner.strategies.rwalk import RWalkConfig, RWalkPlugin

from .conftest import compose_cfg, config_error, make_ctx
from .test_strategies import _tiny_benchmark


def _rwalk(**kw):
    return RWalkPlugin(OmegaConf.merge(OmegaConf.structured(RWalkConfig), kw))


def _train(plugin, ctx, task: int, steps: int, record: list) -> None:
    """`steps` steps of the run's order of hooks on task `task`; each step's weights before,
    gradient and weights after (float64) appended to `record`."""
    data = ctx.benchmark.tasks[task % len(ctx.benchmark.tasks)].train  # a third task: the first one's data again
    x, y = data.x, data.y
    g = torch.Generator().manual_seed(task)
    plugin.before_task(ctx)
    for _ in range(steps):
        pick = torch.randint(0, len(y), (16,), generator=g)
        ctx.optimizer.zero_grad(set_to_none=True)
        logits = ctx.model(x[pick])
        loss = F.cross_entropy(logits, y[pick]) + sum(plugin.loss_terms(ctx, None, logits).values())
        loss.backward()
        before = {n: p.detach().double().clone() for n, p in ctx.model.named_parameters()}
        grad = {n: p.grad.detach().double().clone() for n, p in ctx.model.named_parameters()}
        plugin.before_step(ctx, None)
        ctx.optimizer.step()
        plugin.after_step(ctx, None)
        record.append((before, grad, {n: p.detach().double().clone() for n, p in ctx.model.named_parameters()}))
    plugin.after_task(ctx)


def _reference(tasks: list, k: int, a: float, xi: float, start: dict) -> dict:
    """The authors' code's updates, written out step by step in float64 (fc_permute_mnist.py's
    RWALK branch and Model.task_updates): the state after the tasks, the last one final."""
    zeros = {n: torch.zeros_like(t) for n, t in start.items()}
    fisher, window, path, riemann, score = (dict(zeros) for _ in range(5))
    window_start, importance = dict(start), {}
    for t, steps in enumerate(tasks):
        for i, (before, grad, after) in enumerate(steps):
            if (i + 1) % k == 0:
                for n in start:
                    distance = fisher[n] * (before[n] - window_start[n]) ** 2
                    riemann[n] = riemann[n] + torch.clamp(path[n] / (xi + distance), min=0)
                    fisher[n] = (1 - a) * fisher[n] + a / k * window[n]
                    window[n], path[n] = zeros[n], zeros[n]
                window_start = dict(before)
            for n in start:
                window[n] = window[n] + grad[n] ** 2
                path[n] = path[n] - grad[n] * (after[n] - before[n])
        if t == len(tasks) - 1:
            break
        if t == 0:
            riemann = {n: 2 * r for n, r in riemann.items()}
        score = {n: score[n] + (score[n] + riemann[n]) / 2 for n in start}
        normed = []
        for d in (fisher, score):
            low, high = min(v.min() for v in d.values()), max(v.max() for v in d.values())
            normed.append({n: (v - low) / (high - low + 1e-32) for n, v in d.items()})
        importance = {n: normed[0][n] + normed[1][n] for n in start}
    return {"fisher": fisher, "window_sum": window, "path": path, "riemann": riemann, "score": score,
            "importance": importance}


def test_rwalk_fisher_and_score_follow_the_step_by_step_reference():
    bench = _tiny_benchmark()
    plugin = _rwalk(update_every=5, decay=0.7)
    ctx = make_ctx(bench, 0, lr=1e-2)
    start = {n: p.detach().double().clone() for n, p in ctx.model.named_parameters()}
    tasks = [[], [], []]
    for task, steps in ((0, 23), (1, 17), (2, 6)):  # windows run on across the tasks' ends
        ctx.begin(task, task == 2)
        _train(plugin, ctx, task, steps, tasks[task])
    expected = _reference(tasks, 5, 0.7, 1e-3, start)
    for name, want in expected.items():
        got = getattr(plugin, name)
        for n in want:
            assert torch.allclose(got[n].double(), want[n], rtol=1e-4, atol=1e-7), (name, n)
    assert plugin.tasks == 2 and any(r.abs().max() > 0 for r in plugin.riemann.values())
    # The last task (final) leaves importance and anchor as the second task's end left them.
    assert all(torch.equal(plugin.anchor[n].double(), tasks[1][-1][2][n]) for n in plugin.anchor)
    # State round-trips (tensors only).
    again = _rwalk(update_every=5, decay=0.7)
    again.load_state_dict(plugin.state_dict())
    assert again.penalty(ctx.model).item() == plugin.penalty(ctx.model).item() and again.steps == 6


def test_rwalk_penalty_is_zero_at_the_anchor_and_the_formula_away_from_it():
    bench = _tiny_benchmark()
    ctx = make_ctx(bench, 0)
    plugin = _rwalk(alpha=2.0, update_every=3)
    assert plugin.loss_terms(ctx, None, None) == {}
    _train(plugin, ctx, 0, 12, [])
    assert plugin.penalty(ctx.model).item() == 0.0
    assert all((v >= 0).all() and (v <= 2).all() for v in plugin.importance.values())  # two terms in [0, 1]
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    formula = sum((plugin.importance[n].double() * (p.detach().double() - plugin.anchor[n].double()) ** 2).sum()
                  for n, p in ctx.model.named_parameters())
    assert formula > 0 and plugin.penalty(ctx.model).item() == pytest.approx(formula.item(), rel=1e-5)
    assert plugin.loss_terms(ctx, None, None)["rwalk"].item() == pytest.approx(2 * formula.item(), rel=1e-5)


@pytest.mark.parametrize("override,key", [("rwalk.alpha=-1", "rwalk.alpha"), ("rwalk.decay=0", "rwalk.decay"),
                                          ("rwalk.update_every=0", "rwalk.update_every"), ("rwalk.xi=0", "rwalk.xi")])
def test_bad_rwalk_values_name_the_key(override, key):
    error = config_error(["strategy=rwalk", override])
    assert error is not None and error.key == key and key in str(error)


TINY = ["data.verify=false", "data.download=false", "device=cpu", "train.progress=false", "train.iterations=2",
        "train.batch_size=32", "rwalk.update_every=1"]
MODELS = {"mlp64": ["model=mlp64"], "cnn": ["model=cnn", "model.blocks=2", "model.width=8"],
          "resnet18": ["model=resnet18", "model.width=4"]}
CASES = [(m, "single", s) for m in MODELS for s in ("class", "task", "domain")] + [(m, "multi", "task") for m in MODELS]


@pytest.mark.parametrize("model,head,scenario", CASES)
def test_rwalk_runs_on_every_model_head_and_scenario(model, head, scenario, tiny_mnist, tmp_path):
    cfg = compose_cfg([f"data.root={tiny_mnist}", *TINY, "strategy=rwalk", *MODELS[model], f"model.head={head}",
                       f"scenario={scenario}"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed", summary.get("error")
    assert json.loads((tmp_path / "summary.json").read_text())["rwalk_tasks"] == 1
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert (log[log.train_task == 0]["rwalk"] == 0).all() and log["rwalk"].notna().all()


@pytest.mark.slow
def test_short_rwalk_run(mnist_root, tmp_path):
    cfg = compose_cfg([f"data.root={mnist_root}", "strategy=rwalk", "train.epochs=[1,2]", "model.width=32",
                       "train.progress=false"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert list(log.columns) == ["train_task", "epoch", "global_epoch", "loss", "ce", "rwalk", "seconds"]
    assert (log[log.train_task == 0]["rwalk"] == 0).all() and (log[log.train_task == 1]["rwalk"] > 0).all()
    assert log["loss"].to_numpy() == pytest.approx((log["ce"] + log["rwalk"]).to_numpy(), rel=1e-5)
