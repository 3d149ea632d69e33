"""The classic strategies (cumulative, SI, LwF, A-GEM, DER/DER++, iCaRL, GDumb) and the shared
memories: each mechanism on tiny generated benchmarks, then one short `cl-run` per strategy
on real MNIST (slow)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cl_runner.benchmarks import Benchmark, Task
from cl_runner.errors import ConfigError
from cl_runner.examples import Examples
from cl_runner.models.mlp import mlp
from cl_runner.strategies import PLUGINS
from cl_runner.strategies.agem import AGEMConfig, AGEMPlugin, project
from cl_runner.strategies.cumulative import CumulativePlugin
from cl_runner.strategies.der import DERConfig, DERPlugin
from cl_runner.strategies.gdumb import GDumbConfig, GDumbPlugin
from cl_runner.strategies.icarl import ICaRLConfig, ICaRLPlugin, features, herding
from cl_runner.strategies.lwf import LwFConfig, LwFPlugin
from cl_runner.strategies.memory import Memory, balanced_quota, class_balanced, reservoir_assign, reservoir_draws
from cl_runner.strategies.replay import ReplayConfig, ReplayPlugin
from cl_runner.strategies.si import SIConfig, SIPlugin
from cl_runner.trainer import train_epoch

from .conftest import cl_run, compose_cfg, config_error, make_ctx

D = 20  # input features of the tiny benchmarks


def tiny_benchmark(scenario: str = "class", tasks=((0, 1), (2, 3), (4, 5)), n_per_class=(40, 60), seed: int = 0) -> Benchmark:
    """Tasks of two classes each, learnable (class-specific means), unequal class sizes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, D, generator=g) * 3
    out = []
    for t, digits in enumerate(tasks):
        def split(scale=1):
            y = torch.cat([torch.full((n_per_class[i % len(n_per_class)] * scale,), d) for i, d in enumerate(digits)])
            x = centres[y] + torch.randn(len(y), D, generator=g)
            target = torch.tensor([digits.index(int(v)) for v in y]) if scenario == "domain" else y
            return Examples(x, target, torch.full_like(y, t), y.clone())
        classes = list(range(len(digits))) if scenario == "domain" else list(digits)
        out.append(Task(t, "-".join(map(str, digits)), classes, split(), split(), split()))
    num_outputs = len(tasks[0]) if scenario == "domain" else 10
    masks = torch.zeros(len(out), num_outputs, dtype=torch.bool)
    for task in out:
        masks[task.index, task.classes] = True
    return Benchmark(out, scenario, num_outputs, masks, input_shape=(D,))


def node(schema, **overrides):
    return OmegaConf.merge(OmegaConf.structured(schema), overrides)


def train_task(ctx: RunContext, plugins: list, steps: int = 30, batch_size: int = 16) -> int:
    """One task through the real loop's hooks (before_task, train_set, train_epoch, after_task);
    returns how many examples it trained on."""
    for p in plugins:
        p.before_task(ctx)
    data = ctx.benchmark.tasks[ctx.task].train
    for p in plugins:
        data = p.train_set(ctx, data)
    ctx.plugins = plugins
    shuffle = ctx.generator(0)
    total = 0
    while ctx.step < steps:
        ctx.epoch += 1
        total += train_epoch(ctx, data, batch_size, shuffle, steps)[1]
    for p in plugins:
        p.after_task(ctx)
    return total


def items(n: int, task: int = 0, label=None) -> Examples:
    """n stream items whose x is their index (to identify them)."""
    idx = torch.arange(n)
    y = idx % 4 if label is None else torch.full((n,), label)
    return Examples(idx.float().unsqueeze(1), y, torch.full((n,), task), y.clone())


# --- reservoir ------------------------------------------------------------------------


def sequential_reservoir(capacity: int, draws_per_chunk: list[torch.Tensor]) -> list[int]:
    """The textbook one-item-at-a-time reservoir, fed the same draws."""
    memory: list[int] = []
    t = 0
    for draws in draws_per_chunk:
        for j in draws.tolist():
            if t < capacity:
                memory.append(t)
            elif j < capacity:
                memory[j] = t
            t += 1
    return memory


def test_vectorised_reservoir_equals_the_sequential_algorithm():
    g = torch.Generator().manual_seed(1)
    for capacity, chunks in ((5, [3, 4, 10, 1, 25]), (8, [40]), (3, [1] * 12), (50, [20, 20, 200])):
        memory = torch.full((capacity,), -1)
        seen, all_draws = 0, []
        for count in chunks:
            draws = reservoir_draws(seen, count, g)
            assert ((draws >= 0) & (draws <= seen + torch.arange(count))).all()
            all_draws.append(draws)
            slots, chosen = reservoir_assign(seen, capacity, draws)
            assert len(slots) == len(chosen) == count  # one write per new item: no host sync for the count
            for slot in torch.unique(slots).tolist():  # pairs naming one slot name one item: any order, one result
                assert len(torch.unique(chosen[slots == slot])) == 1
            memory[slots] = torch.where(chosen >= 0, seen + chosen, memory[slots])
            seen += count
        assert memory.tolist() == sequential_reservoir(capacity, all_draws)


def test_reservoir_keeps_every_example_with_probability_m_over_n():
    n, capacity, trials = 60, 12, 3000
    kept = torch.zeros(n)
    g = torch.Generator().manual_seed(0)
    stream = items(n)
    for _ in range(trials):
        memory = Memory("reservoir", capacity)
        for start, stop in ((0, 7), (7, 27), (27, 28), (28, 60)):  # uneven chunks
            memory.add(stream.subset(torch.arange(start, stop)), g, num_outputs=4)
        assert len(memory) == capacity and memory.seen == n
        ids = memory.data.x.squeeze(1).long()
        assert len(torch.unique(ids)) == capacity
        kept[ids] += 1
    expected = trials * capacity / n  # 600
    sd = (trials * (capacity / n) * (1 - capacity / n)) ** 0.5  # about 22
    assert (kept - expected).abs().max() < 6 * sd  # every example, not only on average
    assert kept.sum() == trials * capacity


def test_reservoir_memory_round_trips_and_keeps_extras():
    g = torch.Generator().manual_seed(0)
    memory = Memory("reservoir", 10)
    stream = items(30)
    memory.add(stream, g, num_outputs=4, logits=stream.x.repeat(1, 3))
    assert torch.equal(memory.extra("logits")[:, 0], memory.data.x[:, 0])
    restored = Memory("reservoir", 10)
    restored.load_state_dict(torch_roundtrip(memory.state_dict()))
    assert torch.equal(restored.data.x, memory.data.x) and restored.seen == 30
    restored.add(items(5), g, num_outputs=4, logits=torch.zeros(5, 3))  # still a 10-slot reservoir
    assert len(restored) == 10


def torch_roundtrip(state):
    """Through torch.save and torch.load(weights_only=True), as checkpoints are."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# --- class-balanced ---------------------------------------------------------------------


def test_balanced_quota_water_fills():
    quota = balanced_quota(torch.tensor([50, 5, 100, 100]), memory_size=100, per_class=None)
    assert quota.sum() == 100 and quota[1] == 5  # a small class keeps all it has
    assert quota[[0, 2, 3]].max() - quota[[0, 2, 3]].min() <= 1
    assert balanced_quota(torch.tensor([50, 5, 100]), None, 20).tolist() == [20, 5, 20]
    assert balanced_quota(torch.tensor([50, 5, 100]), 1000, None).tolist() == [50, 5, 100]


def test_class_balanced_memory_is_balanced_across_tasks():
    g = torch.Generator().manual_seed(0)
    memory = Memory("class_balanced", memory_size=60)
    first = Examples.concat([items(100, task=0, label=0), items(30, task=0, label=1)])
    memory.add(first, g, num_outputs=4)
    assert memory.per_class_counts() == {0: 30, 1: 30}
    second = Examples.concat([items(100, task=1, label=2), items(8, task=1, label=3)])
    memory.add(second, g, num_outputs=4)
    counts = memory.per_class_counts()
    assert sum(counts.values()) == 60 and counts[3] == 8  # the small class keeps all 8
    assert max(counts[c] for c in (0, 1, 2)) - min(counts[c] for c in (0, 1, 2)) <= 1
    assert set(memory.data.task[memory.data.y == 2].tolist()) == {1}  # task ids kept
    keep = class_balanced(torch.tensor([0, 0, 0, 1, 1, 2]), g, None, 2)
    assert sorted(torch.tensor([0, 0, 0, 1, 1, 2])[keep].tolist()) == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("policy, size, per_class", [("reservoir", 50, None), ("class_balanced", None, 7), ("class_balanced", 30, None)])
def test_replay_policies(policy, size, per_class):
    bench = tiny_benchmark()
    plugin = ReplayPlugin(node(ReplayConfig, policy=policy, memory_size=size, per_class=per_class))
    for t in range(2):
        plugin.after_task(make_ctx(bench, task=t))
    summary = plugin.summary()
    counts = summary["replay_examples_per_class"]
    if policy == "reservoir":
        assert summary["replay_examples"] == 50
    elif per_class:
        assert counts == {c: 7 for c in range(4)}
    else:
        assert summary["replay_examples"] == 30 and max(counts.values()) - min(counts.values()) <= 1
    data = plugin.train_set(make_ctx(bench, task=2), bench.tasks[2].train)
    assert set(data.task.tolist()) == {0, 1, 2}
    restored = ReplayPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert restored.summary() == summary


def test_replay_batch_mode_adds_a_weighted_memory_term():
    bench = tiny_benchmark(scenario="task")
    plugin = ReplayPlugin(node(ReplayConfig, per_class=10, mix="batch", batch_size=8))
    assert plugin.loss_names == ("replay",)
    ctx = make_ctx(bench)
    train_task(ctx, [plugin], steps=5)
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    data = bench.tasks[1].train
    plugin.before_task(ctx2)
    assert len(plugin.train_set(ctx2, data)) == len(data)  # not concatenated
    term = plugin.loss_terms(ctx2, data, None)["replay"]
    assert term.item() > 0
    OmegaConf.to_object(plugin.cfg)  # its checks pass
    error = config_error(["strategy=replay", "replay.mix=interleave"])
    assert isinstance(error, ConfigError) and error.key == "replay.mix" and "concat, batch" in str(error)


# --- cumulative -------------------------------------------------------------------------


def test_cumulative_trains_on_every_earlier_task():
    bench = tiny_benchmark(scenario="task")
    plugin = CumulativePlugin(OmegaConf.create({}))
    current = bench.tasks[2].train
    data = plugin.train_set(make_ctx(bench, task=2), current)
    assert len(data) == sum(len(t.train) for t in bench.tasks)
    for t in range(3):
        assert torch.equal(data.x[data.task == t], bench.tasks[t].train.x)
    assert plugin.train_set(make_ctx(bench, task=0), bench.tasks[0].train) is not None


# --- SI ---------------------------------------------------------------------------------


def test_si_importance_is_zero_for_untouched_weights():
    bench = tiny_benchmark()
    for task in bench.tasks:  # the first five inputs are always zero: their weights get no gradient
        task.train.x[:, :5] = 0
    plugin = SIPlugin(node(SIConfig, c=1.0))
    ctx = make_ctx(bench)
    train_task(ctx, [plugin])
    first_layer = plugin.omega["0.weight"]
    assert (first_layer[:, :5] == 0).all()
    assert (first_layer[:, 5:] != 0).any() and all(o.abs().sum() > 0 for n, o in plugin.omega.items() if n != "0.weight")
    assert plugin.penalty(ctx.model).item() == 0.0  # at the anchor
    assert plugin.loss_terms(ctx, None, None)["si"].item() == 0.0
    with torch.no_grad():
        ctx.model[0].weight[:, :5] += 1.0  # moving unimportant weights costs nothing
    assert plugin.penalty(ctx.model).item() == 0.0
    with torch.no_grad():
        ctx.model[2].weight += 0.1
    assert plugin.penalty(ctx.model).item() > 0
    first = {n: o.clone() for n, o in plugin.omega.items()}
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    train_task(ctx2, [plugin])  # importance accumulates over tasks
    assert all(not torch.equal(first[n], plugin.omega[n]) for n in ("0.bias", "2.weight"))
    restored = SIPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert restored.penalty(ctx.model).item() == pytest.approx(plugin.penalty(ctx.model).item())


def test_si_path_integral_matches_its_definition_for_one_step():
    bench = tiny_benchmark()
    plugin = SIPlugin(node(SIConfig, xi=0.5))
    ctx = make_ctx(bench)
    plugin.before_task(ctx)
    batch = bench.tasks[0].train
    F.cross_entropy(ctx.model(batch.x), batch.y).backward()
    plugin.before_step(ctx, batch)
    grads = {n: p.grad.clone() for n, p in ctx.model.named_parameters()}
    start = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    ctx.optimizer.step()
    plugin.after_step(ctx, batch)
    plugin.after_task(ctx)
    for n, p in ctx.model.named_parameters():
        delta = p.detach() - start[n]
        assert torch.allclose(plugin.omega[n], -grads[n] * delta / (delta.square() + 0.5))


# --- LwF --------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_lwf_distillation_is_zero_when_the_model_equals_the_old_one(scenario):
    bench = tiny_benchmark(scenario=scenario)
    plugin = LwFPlugin(node(LwFConfig))
    ctx = make_ctx(bench)
    train_task(ctx, [plugin])
    ctx2 = make_ctx(bench, task=2, model=ctx.model)
    plugin.before_task(ctx2)
    batch = bench.tasks[2].train
    assert plugin.loss_terms(ctx2, batch, ctx.model(batch.x))["lwf"].abs().item() < 1e-6
    expected = {"class": [[0, 1, 2, 3]], "task": [[0, 1], [2, 3]], "domain": [[0, 1]]}[scenario]
    assert [g.tolist() for g in plugin._groups] == expected
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert plugin.loss_terms(ctx2, batch, ctx.model(batch.x))["lwf"].item() > 1e-3
    restored = LwFPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert torch.allclose(restored.teacher.logits(ctx.model, batch.x), plugin.teacher.logits(ctx.model, batch.x))


def test_lwf_has_nothing_to_distil_on_the_first_task():
    bench = tiny_benchmark()
    plugin = LwFPlugin(node(LwFConfig))
    ctx = make_ctx(bench)
    plugin.before_task(ctx)
    batch = bench.tasks[0].train
    assert plugin.loss_terms(ctx, batch, ctx.model(batch.x)) == {}


# --- A-GEM ------------------------------------------------------------------------------


def _memory_gradient(ctx, plugin):
    data = plugin.memory.data
    ctx.model.zero_grad()
    F.cross_entropy(ctx.benchmark.mask_logits(ctx.model(data.x), data.task), data.y).backward()
    return [p.grad.clone() for p in ctx.model.parameters()]


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_agem_projection_never_increases_the_memory_loss(scenario):
    bench = tiny_benchmark(scenario=scenario)
    plugin = AGEMPlugin(node(AGEMConfig, per_class=10, batch_size=1000))  # the batch is the whole memory
    ctx = make_ctx(bench)
    train_task(ctx, [plugin], steps=5)
    assert plugin.summary()["agem_memory_per_class"] == {0: 10, 1: 10}
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    plugin.before_task(ctx2)
    g_ref = _memory_gradient(ctx2, plugin)
    for sign in (-1.0, 1.0):  # a gradient against the memory's, then one along it
        torch.manual_seed(3)
        noise = [torch.randn_like(r) for r in g_ref]
        ratio = (sum(r.square().sum() for r in g_ref) / sum(n.square().sum() for n in noise)).sqrt()
        for p, r, n in zip(ctx2.model.parameters(), g_ref, noise):
            p.grad = sign * r + 0.5 * ratio * n  # noise half as long as g_ref
        before = [p.grad.clone() for p in ctx2.model.parameters()]
        dot_before = sum((g * r).sum() for g, r in zip(before, g_ref))
        plugin.before_step(ctx2, None)
        after = [p.grad for p in ctx2.model.parameters()]
        dot_after = sum((g * r).sum() for g, r in zip(after, g_ref))
        scale = sum(g.square().sum() for g in before).sqrt() * sum(r.square().sum() for r in g_ref).sqrt()
        if sign < 0:
            assert dot_before < -0.1 * scale
            assert dot_after.abs() <= 1e-4 * scale  # projected onto the boundary: g . g_ref = 0
        else:
            assert dot_before > 0 and all(torch.equal(a, b) for a, b in zip(after, before))


def test_agem_projection_formula():
    g, r = [torch.tensor([1.0, -2.0])], [torch.tensor([0.0, 1.0])]
    assert project(g, r)[0].tolist() == [1.0, 0.0]
    assert project([torch.tensor([1.0, 2.0])], r)[0].tolist() == [1.0, 2.0]


def test_agem_trains_through_the_loop_and_round_trips():
    bench = tiny_benchmark(scenario="task")
    plugin = AGEMPlugin(node(AGEMConfig, per_class=5, batch_size=8))
    ctx = make_ctx(bench)
    train_task(ctx, [plugin])
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    train_task(ctx2, [plugin])
    assert set(plugin.memory.data.task.tolist()) == {0, 1}  # memory examples keep their task
    restored = AGEMPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert torch.equal(restored.memory.data.x, plugin.memory.data.x)
    assert restored.projected == plugin.projected


# --- DER / DER++ ------------------------------------------------------------------------


def test_der_stores_the_logits_of_the_step_that_trained_on_the_examples():
    bench = tiny_benchmark()
    plugin = DERPlugin(node(DERConfig, memory_size=100, plus=True))
    ctx = make_ctx(bench, lr=0.1)
    plugin.before_task(ctx)
    data = bench.tasks[0].train
    batches = [data.subset(torch.arange(0, 16)), data.subset(torch.arange(16, 32))]
    seen_logits = []
    for batch in batches:
        logits = ctx.model(batch.x)
        seen_logits.append(logits.detach().clone())
        terms = plugin.loss_terms(ctx, batch, logits)
        loss = F.cross_entropy(logits, batch.y) + sum(terms.values())
        ctx.optimizer.zero_grad()
        loss.backward()
        ctx.optimizer.step()
        plugin.after_step(ctx, batch)
    stored = plugin.memory.extra("logits")
    assert torch.equal(stored[:16], seen_logits[0]) and torch.equal(stored[16:32], seen_logits[1])
    assert torch.equal(plugin.memory.data.x[:16], batches[0].x)
    assert not torch.allclose(ctx.model(batches[0].x), stored[:16])  # the model moved on; the memory did not
    terms = plugin.loss_terms(ctx, batches[0], ctx.model(batches[0].x))
    assert set(terms) == {"der", "derpp"} and terms["der"].item() > 0
    plain = DERPlugin(node(DERConfig, memory_size=100, plus=False))
    plain.memory = plugin.memory
    plain.before_task(ctx)
    assert set(plain.loss_terms(ctx, batches[0], ctx.model(batches[0].x))) == {"der"}


def test_der_memory_is_a_reservoir_over_the_whole_stream_and_round_trips():
    bench = tiny_benchmark(scenario="task")
    plugin = DERPlugin(node(DERConfig, memory_size=30, plus=True, batch_size=8))
    ctx = make_ctx(bench)
    seen = train_task(ctx, [plugin], steps=10)
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    seen += train_task(ctx2, [plugin], steps=10)
    assert len(plugin.memory) == 30 and plugin.memory.seen == seen > 30
    assert set(plugin.memory.data.task.tolist()) == {0, 1}
    restored = DERPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert torch.equal(restored.memory.extra("logits"), plugin.memory.extra("logits"))


# --- iCaRL ------------------------------------------------------------------------------


def test_herding_approximates_the_class_mean_better_than_random_choice():
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(500, 16, generator=g) + torch.randn(16, generator=g), dim=1)
    mu = feats.mean(0)
    chosen = herding(feats, 10)
    assert len(torch.unique(chosen)) == 10
    herd_error = (feats[chosen].mean(0) - mu).norm()
    random_errors = torch.stack([(feats[torch.randperm(500, generator=g)[:10]].mean(0) - mu).norm() for _ in range(200)])
    assert herd_error < random_errors.min()
    # The first k of the herding order are themselves a good set for every k (what shrinking relies on).
    assert (feats[chosen[:5]].mean(0) - mu).norm() < random_errors.median()


def test_icarl_exemplars_distillation_and_nearest_mean_classifier():
    bench = tiny_benchmark()
    plugin = ICaRLPlugin(node(ICaRLConfig, per_class=None, memory_size=40))
    ctx = make_ctx(bench)
    train_task(ctx, [plugin], steps=40)
    assert plugin.summary()["icarl_exemplars_per_class"] == {0: 20, 1: 20}
    first = plugin.exemplars.x.clone()
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    plugin.before_task(ctx2)
    assert plugin._old_classes.tolist() == [0, 1]
    batch = bench.tasks[1].train
    assert len(plugin.train_set(ctx2, batch)) == len(batch) + 40
    assert plugin.loss_terms(ctx2, batch, ctx.model(batch.x))["icarl"].item() > 0
    train_task(ctx2, [plugin], steps=40)
    assert plugin.summary()["icarl_exemplars_per_class"] == {0: 10, 1: 10, 2: 10, 3: 10}
    # Shrinking kept the first exemplars of the herding order.
    kept0 = plugin.exemplars.x[plugin.exemplars.y == 0]
    assert torch.equal(kept0, first[:10])
    # The nearest-mean classifier: a class's own mean feature is scored highest for that class.
    ctx3 = make_ctx(bench, task=2, model=ctx.model)
    scores = plugin.eval_logits(ctx3, bench.tasks[0].test.x, 0)
    assert scores.shape == (len(bench.tasks[0].test), 10)
    assert (scores[:, 6:] == -5.0).all() and (scores[:, :6] > -5.0).all()  # never-seen classes cannot win
    accuracy = (scores.argmax(1) == bench.tasks[0].test.y).float().mean()
    assert accuracy > 0.9
    # For the task in training (no exemplars yet) the means come from its training data.
    protos, labels = plugin.prototypes(ctx3)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4, 5]
    restored = ICaRLPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert torch.equal(restored.eval_logits(ctx3, bench.tasks[0].test.x, 0), scores)


def test_icarl_random_selection_and_features():
    bench = tiny_benchmark()
    ctx = make_ctx(bench)
    f = features(ctx.model, bench.tasks[0].train.x)
    assert f.shape == (len(bench.tasks[0].train), 16)
    plugin = ICaRLPlugin(node(ICaRLConfig, per_class=5, selection="random"))
    plugin.after_task(ctx)
    assert plugin.summary()["icarl_exemplars_per_class"] == {0: 5, 1: 5}


# --- GDumb ------------------------------------------------------------------------------


def test_gdumb_trains_from_scratch_on_a_class_balanced_memory():
    bench = tiny_benchmark()
    plugin = GDumbPlugin(node(GDumbConfig, memory_size=50))
    ctx = make_ctx(bench)
    state = torch.random.get_rng_state()
    ctx.model(bench.tasks[0].train.x).sum().backward()
    ctx.optimizer.step()  # Adam now has moments for every parameter
    before = [p.detach().clone() for p in ctx.model.parameters()]
    plugin.before_task(ctx)
    assert not ctx.optimizer.state  # the optimiser starts afresh too
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random state is left alone
    after = [p.detach().clone() for p in ctx.model.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # re-initialised, every layer
    again = make_ctx(bench)
    plugin.before_task(again)
    assert all(torch.equal(a, p) for a, p in zip(after, again.model.parameters()))  # reproducibly
    data = plugin.train_set(ctx, bench.tasks[0].train)
    assert plugin.memory.per_class_counts() == {0: 25, 1: 25} and len(data) == 50
    ctx2 = make_ctx(bench, task=1, model=ctx.model)
    data = plugin.train_set(ctx2, bench.tasks[1].train)
    counts = plugin.memory.per_class_counts()
    assert len(data) == 50 and sum(counts.values()) == 50 and max(counts.values()) - min(counts.values()) <= 1
    assert set(data.task.tolist()) == {0, 1}
    restored = GDumbPlugin(plugin.cfg)
    restored.load_state_dict(torch_roundtrip(plugin.state_dict()))
    assert restored.memory.per_class_counts() == counts


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["strategy=si", "si.c=-1"], "si.c"),
        (["strategy=si", "si.xi=0"], "si.xi"),
        (["strategy=lwf", "lwf.temperature=0"], "lwf.temperature"),
        (["strategy=lwf", "lwf.alpha=-0.5"], "lwf.alpha"),
        (["strategy=agem", "agem.policy=fifo"], "agem.policy"),
        (["strategy=agem", "agem.per_class=0"], "agem.per_class"),
        (["strategy=agem", "agem.per_class=null"], "agem.memory_size"),
        (["strategy=agem", "agem.batch_size=0"], "agem.batch_size"),
        (["strategy=der", "der.memory_size=0"], "der.memory_size"),
        (["strategy=der", "der.policy=lru"], "der.policy"),
        (["strategy=der", "der.alpha=-1"], "der.alpha"),
        (["strategy=icarl", "icarl.selection=kmeans"], "icarl.selection"),
        (["strategy=icarl", "icarl.per_class=null"], "icarl.per_class"),
        (["strategy=gdumb", "gdumb.memory_size=0"], "gdumb.memory_size"),
        (["strategy=replay", "replay.policy=lru"], "replay.policy"),
        (["strategy=replay", "replay.policy=reservoir"], "replay.memory_size"),
        (["strategy=replay", "replay.memory_size=100"], "replay.memory_size"),
        (["strategy=replay", "replay.batch_size=0"], "replay.batch_size"),
    ],
)
def test_bad_strategy_values_name_the_key(overrides, key):
    error = config_error(overrides)
    assert isinstance(error, ConfigError), error
    assert error.key == key
    assert key in str(error)


def test_every_strategy_file_composes_and_validates():
    for name in ("cumulative", "si", "mas", "rwalk", "lwf", "agem", "der", "derpp", "icarl", "gdumb"):
        for scenario in ("class", "task", "domain"):
            overrides = [f"strategy={name}", f"scenario={scenario}", "experiment=split_mnist_protocol"]
            assert config_error(overrides) is None
            cfg = compose_cfg(overrides)
            assert all(p in PLUGINS for p in cfg.strategy.plugins)
    assert compose_cfg(["strategy=derpp"]).der.plus is True
    assert compose_cfg(["strategy=der"]).der.plus is False
    proto = compose_cfg(["experiment=split_mnist_protocol"])
    assert (proto.dataset.name, proto.model.width, proto.model.depth, proto.model.activation) == ("split_mnist5", 400, 2, "relu")
    assert (proto.train.iterations, proto.train.batch_size, proto.train.lr) == (2000, 128, 1e-3)
    assert proto.replay.per_class == proto.agem.per_class == proto.icarl.per_class == 100


# --- end to end on real MNIST -----------------------------------------------------------

# Every strategy once, half under class-IL and half under task-IL (where memory batches need
# their task ids for the masks); one multirun per scenario, so the imports are paid twice, not 12 times.
STRATEGIES = {"class": ["naive", "cumulative", "si", "replay", "der", "icarl", "rwalk"],
              "task": ["joint", "ewc", "lwf", "agem", "derpp", "gdumb", "mas"]}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(STRATEGIES))
def test_every_strategy_runs_end_to_end(mnist_root, tmp_path, scenario):
    names = STRATEGIES[scenario]
    result = cl_run("-m", f"data.root={mnist_root}", "experiment=split_mnist_protocol", f"strategy={','.join(names)}",
                    f"scenario={scenario}", "train.iterations=20", "model.width=32", "train.progress=false",
                    f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for job, name in enumerate(names):  # Hydra numbers the jobs in sweep order
        run_dir = tmp_path / str(job)
        config = OmegaConf.load(run_dir / "config.yaml")
        assert config.strategy.name == name
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "completed", (name, summary.get("error"))
        assert len(summary["final_test_acc"]) == 5
        assert summary["average_accuracy"] > (0.5 if scenario == "task" else 0.1), name
        torch.load(run_dir / "checkpoint.pt", weights_only=True)  # tensors only
