"""The models (mlp, cnn, resnet18), their output layers (single, multi), their input checks,
and every strategy on every model: BatchNorm's running averages, frozen teachers, features,
re-initialisation."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cl_runner import benchmarks, models
from cl_runner.config import CONF_DIR
from cl_runner.context import RunContext
from cl_runner.errors import ConfigError
from cl_runner.examples import Examples
from cl_runner.models.mlp import mlp
from cl_runner.seeds import Stream
from cl_runner.strategies import build_plugins
from cl_runner.strategies.anchors import Teacher
from cl_runner.strategies.gdumb import reinitialise
from cl_runner.strategies.icarl import features
from cl_runner.trainer import evaluate, train_epoch

from .conftest import compose_cfg

CPU = torch.device("cpu")
MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
# Parameter counts with 10 outputs, as each YAML file's comment states them.
PARAMETERS = {
    ("mlp", MNIST): 50_890, ("mlp", CIFAR): 197_322,
    ("cnn", MNIST): 112_330, ("cnn", CIFAR): 115_402,
    ("resnet18", MNIST): 1_094_390, ("resnet18", CIFAR): 1_094_750,
    ("resnet18_nf64", MNIST): 11_172_810, ("resnet18_nf64", CIFAR): 11_173_962,
}


def _model_cfg(name: str, *overrides: str):
    return compose_cfg([f"model={name}", *overrides]).model


@pytest.mark.parametrize("name,shape", list(PARAMETERS))
def test_each_model_builds_for_mnist_and_cifar_images(name, shape):
    torch.manual_seed(0)
    model = models.build(_model_cfg(name), shape, 10, CPU)
    with torch.no_grad():
        assert model(torch.rand(3, *shape)).shape == (3, 10)
    count = models.count_parameters(model)
    assert count == PARAMETERS[name, shape]
    comment = (CONF_DIR / "model" / f"{name}.yaml").read_text()
    assert f"{count:,} on {'x'.join(map(str, shape))}" in comment


def test_mlp_flattens_its_input_with_unchanged_names_and_numbers():
    torch.manual_seed(0)
    model = mlp(784, 10, 32, 2, "relu")
    torch.manual_seed(0)  # the plain nn.Sequential the MLP was before it flattened its input
    plain = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    assert list(model.state_dict()) == list(plain.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias",
                                                                   "4.weight", "4.bias"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
    images = torch.rand(5, 1, 28, 28)
    assert torch.equal(model(images), plain(images.flatten(1)))
    assert torch.equal(model(images.flatten(1)), model(images))


def test_model_knobs_are_checked_at_composition():
    from .conftest import config_error

    for overrides, key in ((["model=cnn", "model.width=0"], "model.width"), (["model=cnn", "model.blocks=0"], "model.blocks"),
                           (["model=resnet18", "model.width=-2"], "model.width"), (["model=cnn", "model.head=two"], "model.head"),
                           (["model=resnet18", "model.blocks=2"], "model.blocks")):
        err = config_error(overrides)
        assert err is not None and key in str(err) and "\n" not in str(err), overrides


def test_inputs_a_model_cannot_take_are_one_line_config_errors():
    cases = [("cnn", (784,), "model.name='cnn': needs image inputs"),
             ("resnet18", (784,), "model.name='resnet18': needs image inputs"),
             ("cnn", (1, 12, 12), "model.blocks=4: each block halves the image: 12x12 images allow at most 3 blocks")]
    for name, shape, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            models.build(_model_cfg(name), shape, 10, CPU)
        assert "\n" not in str(caught.value) and caught.value.exit_code == 2
    models.check_input(_model_cfg("cnn", "model.blocks=3"), (1, 12, 12))  # 12 -> 6 -> 3 -> 1: fine
    models.check_input(_model_cfg("resnet18"), (1, 5, 5))  # global pooling takes any image
    models.check_input(_model_cfg("mlp"), (784,))


# --- output layers ------------------------------------------------------------------------

HEADS = [[0, 1], [2, 3], [4, 5]]


def _pair(name: str, *overrides: str, shape=(1, 12, 12)):
    """The same model with a single output layer and with one head per task."""
    cfg = _model_cfg(name, *overrides)
    torch.manual_seed(0)
    single = models.build(cfg, shape, 6, CPU)
    cfg.head = "multi"
    torch.manual_seed(0)
    return single, models.build(cfg, shape, 6, CPU, heads=HEADS)


@pytest.mark.parametrize("name,overrides", [("mlp", ()), ("cnn", ("model.blocks=2", "model.width=8")),
                                            ("resnet18", ("model.width=4",))])
def test_multi_head_is_one_linear_per_task_scattered_into_one_logits_tensor(name, overrides):
    single, multi = _pair(name, *overrides)
    head = models.output_layer(multi)
    assert isinstance(head, models.MultiHead) and [h.out_features for h in head.heads] == [2, 2, 2]
    assert all(isinstance(h, nn.Linear) for h in head.heads)
    assert models.count_parameters(multi) == models.count_parameters(single)
    # Under masked cross-entropy (scenario=task) it trains exactly as the single layer does.
    masks = torch.zeros(3, 6, dtype=torch.bool)
    for t, outputs in enumerate(HEADS):
        masks[t, outputs] = True
    bench = benchmarks.Benchmark([], "task", 6, masks)
    g = torch.Generator().manual_seed(1)
    x, task = torch.rand(64, 1, 12, 12, generator=g), torch.randint(0, 3, (64,), generator=g)
    y = 2 * task + torch.randint(0, 2, (64,), generator=g)
    optimisers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (single, multi)]
    for _ in range(3):
        for model, opt in zip((single, multi), optimisers):
            opt.zero_grad()
            F.cross_entropy(bench.mask_logits(model(x), task), y).backward()
            opt.step()
    with torch.no_grad():
        single.eval(), multi.eval()
        assert torch.allclose(single(x), multi(x), atol=1e-5)


def test_multi_head_needs_scenario_task_and_disjoint_heads():
    models.check_head("multi", "task")
    models.check_head("single", "class")
    for scenario in ("class", "domain"):
        with pytest.raises(ConfigError, match="model.head='multi': one output layer per task needs the task identity"):
            models.check_head("multi", scenario)
    cfg = _model_cfg("cnn", "model.head=multi", "model.blocks=2")
    with pytest.raises(ConfigError, match="disjoint"):
        models.build(cfg, (1, 8, 8), 4, CPU, heads=[[0, 1], [0, 1]])  # domain-IL: shared outputs
    with pytest.raises(ValueError, match="heads"):
        models.build(cfg, (1, 8, 8), 4, CPU)


def test_features_are_the_shared_representation_under_multi_heads():
    _, multi = _pair("cnn", "model.blocks=2", "model.width=8")
    x = torch.rand(10, 1, 12, 12)
    multi.train()
    running = multi[0][1].running_mean.clone()
    with torch.no_grad():
        got = features(multi, x)
        multi.eval()
        expected = multi[:-1](x)  # everything before the output layer: blocks and Flatten
        multi.train()
    assert got.shape == (10, 8 * 3 * 3) and torch.allclose(got, expected)
    assert multi.training and torch.equal(multi[0][1].running_mean, running)  # eval mode, buffers untouched


def test_teacher_evaluates_in_eval_mode_and_leaves_every_buffer_alone():
    torch.manual_seed(0)
    model = models.build(_model_cfg("resnet18", "model.width=4"), (1, 12, 12), 6, CPU)
    model.train()
    model(torch.rand(32, 1, 12, 12))  # running averages away from their initial values
    teacher = Teacher()
    teacher.freeze(model)
    frozen = {n: t.clone() for n, t in teacher.state.items()}
    x = torch.rand(16, 1, 12, 12)
    with torch.no_grad():
        model.eval()
        reference = model(x)
        model.train()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    out = teacher.logits(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert torch.allclose(out, reference, atol=1e-6)
    assert all(torch.equal(teacher.state[n], frozen[n]) for n in frozen)
    assert all(torch.equal(model.state_dict()[n], before[n]) for n in before)


def test_gdumb_reinitialisation_resets_batchnorm():
    torch.manual_seed(0)
    model = models.build(_model_cfg("cnn", "model.blocks=2", "model.width=8"), (1, 12, 12), 6, CPU)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(torch.rand(16, 1, 12, 12)), torch.randint(0, 6, (16,))).backward()
        opt.step()
    bn = model[0][1]
    assert int(bn.num_batches_tracked) == 3 and not torch.equal(bn.weight, torch.ones(8))
    reinitialise(model, torch.Generator().manual_seed(0))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.running_mean, torch.zeros(8)) and torch.equal(m.running_var, torch.ones(8))
            assert int(m.num_batches_tracked) == 0
            assert torch.equal(m.weight, torch.ones(8)) and torch.equal(m.bias, torch.zeros(8))


# --- every strategy on every model ----------------------------------------------------------

STRATEGIES = ["naive", "replay", "cumulative", "ewc", "ewc_replay", "si", "mas", "rwalk", "lwf", "agem", "der", "derpp", "icarl", "gdumb"]
# The MLP runs every strategy in test_zoo.py; here the BatchNorm models, and multi heads.
MODELS = {"resnet18": ("model=resnet18", "model.width=4"),
          "cnn_multi": ("model=cnn", "model.blocks=2", "model.width=8", "model.head=multi")}


@pytest.fixture
def one_thread():
    """Tensors this small gain nothing from threads; on a busy machine, worker threads that
    wait for each other make such a test many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _image_benchmark(scenario: str) -> benchmarks.Benchmark:
    """Two tasks of three classes on 1x8x8 images: a fixed random pattern per class plus noise."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(6, 1, 8, 8, generator=g)
    tasks = []
    for t, classes in enumerate(([0, 1, 2], [3, 4, 5])):
        splits = []
        for _ in range(3):
            y = torch.tensor(classes).repeat_interleave(20)
            x = patterns[y] + 0.3 * torch.randn(len(y), 1, 8, 8, generator=g)
            splits.append(Examples(x, y, torch.full_like(y, t), y.clone()))
        tasks.append(benchmarks.Task(t, str(t), classes, *splits))
    masks = torch.zeros(2, 6, dtype=torch.bool)
    masks[0, :3] = masks[1, 3:] = True
    return benchmarks.Benchmark(tasks, scenario, 6, masks)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_every_model(strategy, model_name, one_thread):
    scenario = "task" if model_name == "cnn_multi" else "class"
    cfg = compose_cfg([f"strategy={strategy}", *MODELS[model_name], f"scenario={scenario}", "gdumb.memory_size=60", "ewc.alpha=1", "mas.alpha=0.01",
                       "agem.batch_size=16", "der.batch_size=16", "icarl.per_class=5", "ewc.fisher=expected"])
    bench = _image_benchmark(scenario)
    torch.manual_seed(0)
    model = models.build(cfg.model, (1, 8, 8), 6, CPU, heads=[t.classes for t in bench.tasks])
    ctx = RunContext(cfg, bench, model, torch.optim.Adam(model.parameters(), lr=1e-2), CPU, plugins=build_plugins(cfg))
    for task in bench.tasks:
        ctx.begin(task.index, final=False)  # not final: after_task does its whole work every time
        for plugin in ctx.plugins:
            plugin.before_task(ctx)
        data = task.train
        for plugin in ctx.plugins:
            data = plugin.train_set(ctx, data)
        for epoch in range(4):
            ctx.epoch = epoch + 1
            sums, seen = train_epoch(ctx, data, 10, ctx.generator(Stream.SHUFFLE))
            assert seen == len(data) and torch.isfinite(sums).all()
        for plugin in ctx.plugins:
            plugin.after_task(ctx)
        assert model.training  # hooks that read the model in eval mode hand its mode back
        results = evaluate(ctx, "test", 64)
        assert results.shape == (2, 3) and torch.isfinite(results).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    accuracy = (results[:, 1] / results[:, 2]).tolist()
    assert accuracy[1] > 0.5, accuracy  # the last task is learnt (chance: 1/3 or 1/6)


@pytest.mark.slow
def test_a_cnn_learns_mnist_task_0_in_one_epoch(mnist_root, one_thread):
    # A direct training loop over the benchmark's stored [N, 1, 28, 28] images, with the
    # benchmark's own input preparation in front of the network, as the run does. Width 32 keeps
    # it short on a CPU (the default width 64 reaches about the same).
    cfg = compose_cfg([f"data.root={mnist_root}", "data.download=false", "model=cnn", "model.width=32"])
    bench = benchmarks.build(cfg, CPU)
    task = bench.tasks[0]  # digits 0-4
    torch.manual_seed(0)
    model = benchmarks.Prepared(bench.prepare, models.build(cfg.model, MNIST, 10, CPU))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = task.train.x.view(-1, *MNIST), task.train.y
    for batch in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(128):
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        test_x = task.test.x.view(-1, *MNIST)
        predicted = torch.cat([model(part).argmax(1) for part in test_x.split(1000)])
    assert (predicted == task.test.y).float().mean().item() > 0.9
