"""Speed where it does not show in a quick run: no host syncs in a training step, the global
torch settings of a run undone at its end, the precision key, the CPU thread policy, numbers
that do not depend on the machine's load, and the GPU bench's CPU mode (so it cannot rot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

import cl_runner.run as run_module
from cl_runner import device, threads
from cl_runner.run import run

from .conftest import REPO, compose_cfg

# Three tasks, so that every strategy's state holds two earlier tasks in the last one (EWC's
# folded pair, SI's importances, memories holding several tasks, a teacher).
TINY = ["data.verify=false", "data.download=false", "device=cpu", "train.progress=false", "train.iterations=3",
        "train.batch_size=32", "dataset.tasks=[[0,1],[2,3],[4,5]]"]
# Ops that make the host wait for the device: reading a value, or a result whose shape
# depends on the values.
SYNCS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::masked_select",
         "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::equal"}
# Optimisers keep their step counts on the host (torch.optim, capturable=False) and read them
# there: no device is waited for, whatever the device of the parameters.
HOST_ONLY = "Optimizer.step#"
STRATEGIES = {
    "naive": [], "joint": ["strategy=joint"], "cumulative": ["strategy=cumulative"], "replay": ["strategy=replay"],
    "replay-batch": ["strategy=replay", "replay.mix=batch", "replay.per_class=5"],
    "replay-reservoir": ["strategy=replay", "replay.policy=reservoir", "replay.memory_size=20"],
    "ewc": ["strategy=ewc"], "ewc-online": ["strategy=ewc", "ewc.mode=online"], "ewc_replay": ["strategy=ewc_replay"],
    "si": ["strategy=si"], "mas": ["strategy=mas", "mas.samples=32"], "rwalk": ["strategy=rwalk", "rwalk.update_every=2"],
    "lwf": ["strategy=lwf"], "agem": ["strategy=agem", "agem.per_class=5"],
    "agem-reservoir": ["strategy=agem", "agem.policy=reservoir", "agem.memory_size=20"],
    "der": ["strategy=der", "der.memory_size=20"], "derpp": ["strategy=derpp", "der.memory_size=20"],
    "der-balanced": ["strategy=der", "der.policy=class_balanced", "der.memory_size=20"],
    "icarl": ["strategy=icarl", "icarl.per_class=5"], "gdumb": ["strategy=gdumb", "gdumb.memory_size=20"],
    "task-il-der": ["scenario=task", "strategy=derpp", "der.memory_size=20"],
    "active-classes-lwf": ["train.active_classes=true", "strategy=lwf"],
}


class DeviceCopies(TorchDispatchMode):
    """Counts the ops that copy between host and device on a GPU, whatever device they run on
    here: a tensor made from Python data (torch.tensor: lift_fresh), a move to a named device
    (`.to(device)`, `.cpu()`: _to_copy with a device), a copy_ across devices."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        moved = (name.startswith("_to_copy") and kwargs.get("device") is not None
                 or name.startswith("copy_") and args[0].device != args[1].device)
        if moved or name.startswith("lift_fresh"):
            self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **kwargs)


def _outside(step):
    """The optimiser's step, unwatched: its state (step counts) lives on the host by design."""
    def unwatched(*args, **kwargs):
        with _disable_current_modes():
            return step(*args, **kwargs)
    return unwatched


def _syncs(prof) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in prof.events():
        if event.name not in SYNCS:
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith(HOST_ONLY):
            parent = parent.cpu_parent
        if parent is None:
            counts[event.name] = counts.get(event.name, 0) + 1
    return counts


def _watched_last_stage(overrides: list[str], out: Path, monkeypatch) -> dict:
    """Run, watching the last stage's epoch (its steps and every plugin hook in them) with
    torch.profiler (syncs) and DeviceCopies; what they saw."""
    real, seen = run_module.train_epoch, {}

    def profiled(ctx, *args):
        if ctx.task < 2 and ctx.cfg.strategy.schedule != "joint":
            return real(ctx, *args)
        copies = DeviceCopies()
        ctx.optimizer.step = _outside(ctx.optimizer.step)
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof, copies:
                result = real(ctx, *args)
        finally:
            del ctx.optimizer.step
        seen["steps"], seen["syncs"], seen["copies"] = ctx.step, _syncs(prof), copies.counts
        return result

    monkeypatch.setattr(run_module, "train_epoch", profiled)
    run(compose_cfg([*TINY, *overrides]), out)
    return seen


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_training_step_never_waits_for_the_device(name, tiny_mnist, tmp_path, monkeypatch):
    """Each strategy with its state full (two earlier tasks): no op in a step that syncs the
    host with the device or copies between them."""
    seen = _watched_last_stage([f"data.root={tiny_mnist}", *STRATEGIES[name]], tmp_path / "run", monkeypatch)
    assert seen["steps"] == 3 and seen["syncs"] == {} and seen["copies"] == {}, seen


def test_the_step_watch_sees_syncs_and_copies(tiny_mnist, tmp_path, monkeypatch):
    """The watch itself: a plugin reading a value and making a tensor from Python data per step
    is caught (three steps: three of each)."""
    from cl_runner.strategies.lwf import LwFPlugin

    real = LwFPlugin.loss_terms

    def careless(self, ctx, batch, logits):
        logits.sum().item()
        _ = batch.x[batch.y > 100]  # a boolean mask: nonzero
        return {**real(self, ctx, batch, logits), "lwf": torch.tensor(0.0, device=ctx.device) + logits.sum().to("cpu", torch.float64).float()}

    monkeypatch.setattr(LwFPlugin, "loss_terms", careless)
    seen = _watched_last_stage([f"data.root={tiny_mnist}", "strategy=lwf"], tmp_path / "run", monkeypatch)
    # nonzero reads its count on the host too: a second _local_scalar_dense per step
    assert seen["syncs"] == {"aten::item": 3, "aten::_local_scalar_dense": 6, "aten::nonzero": 3}, seen
    assert seen["copies"]["lift_fresh"] == 3 and seen["copies"]["_to_copy"] >= 3, seen  # there and back (backward)


def _flags() -> dict:
    return device.global_state()


def test_a_run_undoes_the_global_torch_settings_it_makes(tiny_mnist, tmp_path, monkeypatch):
    """Two configs in one process: what the first sets (deterministic algorithms, TF32, cuDNN's
    modes, threads) holds during it, and neither run leaves anything behind."""
    real, inside = run_module.train_epoch, []

    def watched(ctx, *args):
        inside.append(_flags())
        return real(ctx, *args)

    monkeypatch.setattr(run_module, "train_epoch", watched)
    before = _flags()
    threads_then = 2 if torch.get_num_threads() == 1 else 1
    run(compose_cfg([*TINY, f"data.root={tiny_mnist}", "deterministic=true", "train.tf32=true",
                     f"train.threads={threads_then}"]), tmp_path / "first")
    assert _flags() == before
    during = inside[-1]
    assert during["deterministic"] == (True, False) and during["cudnn"] == (False, True)
    assert during["threads"] == threads_then and during["tf32"] != before["tf32"]
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == before["workspace"]
    run(compose_cfg([*TINY, f"data.root={tiny_mnist}", "train.tf32=false"]), tmp_path / "second")
    assert _flags() == before
    assert inside[-1]["deterministic"] == (False, False) and inside[-1]["cudnn"][1] is False


def test_tf32_defaults_are_pytorchs_unless_deterministic():
    before = _flags()
    with device.torch_state():
        device.setup_torch(0, torch.device("cuda"), None, False)
        assert _flags()["tf32"] == before["tf32"] and torch.backends.cudnn.benchmark  # PyTorch's TF32 defaults
    with device.torch_state():
        device.setup_torch(0, torch.device("cuda"), None, True)
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert torch.backends.cuda.matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == "ieee"
    with device.torch_state():
        device.setup_torch(0, torch.device("cuda"), True, True)  # an explicit train.tf32 wins
        assert torch.backends.cuda.matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert _flags() == before


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_reduced_precision_trains_in_it_on_the_cpu(precision, tiny_mnist, tmp_path, monkeypatch):
    """bf16 and 16-mixed on the CPU: the model's layers compute in that type inside a step
    (strategies' extra forwards too), the losses stay float32, DER's memory keeps float32
    logits, and the results differ from float32's."""
    real, dtypes, contexts = run_module.train_epoch, set(), []

    def watched(ctx, *args):
        contexts.append(ctx)
        hook = ctx.model.net.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
        try:
            return real(ctx, *args)
        finally:
            hook.remove()

    monkeypatch.setattr(run_module, "train_epoch", watched)
    common = [*TINY, f"data.root={tiny_mnist}", "strategy=derpp", "der.memory_size=20"]
    reduced = run(compose_cfg([*common, f"train.precision={precision}"]), tmp_path / "reduced")
    assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float16}
    assert reduced["status"] == "completed"
    assert contexts[-1].plugins[0].memory.store["logits"].dtype == torch.float32
    full = run(compose_cfg([*common, "train.precision=32"]), tmp_path / "full")
    assert torch.float32 in dtypes
    assert reduced["final_test_acc"] != full["final_test_acc"] or (
        (tmp_path / "reduced" / "metrics.csv").read_bytes() != (tmp_path / "full" / "metrics.csv").read_bytes())


def test_precision_and_threads_keys_are_checked():
    from .conftest import config_error

    err = config_error(["train.precision=16"])
    assert err is not None and "train.precision" in str(err) and "bf16" in str(err)
    for bad in ("0", "many", "1.5"):
        err = config_error([f"train.threads={bad}"])
        assert err is not None and "train.threads" in str(err) and "auto" in str(err)
    assert config_error(["train.threads=3", "train.precision=bf16"]) is None


# --- the thread policy ---------------------------------------------------------------------

def test_thread_choice():
    assert threads.choose(3, 0.0, 2, environ={}) == (3, "train.threads=3")  # an integer is used as given
    count, why = threads.choose("auto", 1e12, 16, environ={"OMP_NUM_THREADS": "4"})
    assert count is None and why == "OMP_NUM_THREADS=4"  # the user's (or joblib's) choice: torch's default honours it
    assert threads.choose("auto", 1e6, 16, environ={})[0] == 1  # a tiny model: one thread
    assert threads.choose("auto", 1e12, 16, environ={})[0] == 16  # a big one: every usable core
    assert threads.choose("auto", 2.5 * threads.WORK_PER_THREAD, 16, environ={})[0] == 2


def test_openmp_environment_keeps_what_the_user_set():
    assert threads.openmp_environment({}) == {"GOMP_SPINCOUNT": "3000", "KMP_BLOCKTIME": "0", "OMP_DYNAMIC": "FALSE",
                                             "MKL_DYNAMIC": "FALSE"}
    assert threads.openmp_environment({"GOMP_SPINCOUNT": "1000", "MKL_DYNAMIC": "TRUE"}) == {"OMP_DYNAMIC": "FALSE"}
    assert threads.prepare_openmp({}) == []  # torch is loaded in this process: too late, nothing is set


def test_usable_cores_follow_a_cgroup_quota(tmp_path):
    assert threads._cgroup_quota(tmp_path) is None  # no cgroup files: unlimited
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads._cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads._cgroup_quota(tmp_path) == 2  # 1.5 cores: two threads may run
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)


def test_step_work_counts_linear_and_conv_multiply_adds():
    from cl_runner.models.mlp import mlp

    model = mlp(784, 10, 64, 1, "relu")
    assert threads.step_work(model, (1, 28, 28), 100) == 3 * 100 * (784 * 64 + 64 * 10)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2))
    assert threads.step_work(conv, (1, 8, 8), 1) == 3 * (4 * 8 * 8 * 9 + 4 * 8 * 8 * 2)


def _cl_run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cl_runner.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.slow
def test_cl_run_log_names_the_thread_choice(tiny_mnist, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", *threads.WAIT_VARIABLES)}
    result = subprocess.run([sys.executable, "-m", "cl_runner.cli", *TINY, f"data.root={tiny_mnist}",
                             f"hydra.run.dir={tmp_path / 'a'}"], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    first = (tmp_path / "a" / "cl-run.log").read_text().splitlines()[0]
    assert "(1 CPU threads)" in first and "threads by auto: " in first and first.endswith("GOMP_SPINCOUNT=3000 KMP_BLOCKTIME=0")
    result = _cl_run([*TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={tmp_path / 'b'}"],
                     {"OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": "100"})
    assert result.returncode == 0, result.stderr
    first = (tmp_path / "b" / "cl-run.log").read_text().splitlines()[0]
    assert "threads by OMP_NUM_THREADS=1; GOMP_SPINCOUNT=100" in first


# --- numbers independent of load -----------------------------------------------------------

@pytest.mark.slow
def test_metrics_do_not_depend_on_the_machines_load(mnist_root, tmp_path):
    """The same short run on real MNIST with two threads (reductions split over them), once
    idle and once beside busy processes: metrics.csv byte for byte, and every training loss."""
    args = ["device=cpu", "train.progress=false", "experiment=ewc_replay", "train.epochs=1", "train.threads=2",
            f"data.root={mnist_root}"]
    outs = []
    for loaded in (False, True):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 if loaded else 0)]
        try:
            out = tmp_path / ("loaded" if loaded else "idle")
            result = _cl_run([*args, f"hydra.run.dir={out}"])
            assert result.returncode == 0, result.stderr
            outs.append(out)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    idle, loaded = outs
    assert (idle / "metrics.csv").read_bytes() == (loaded / "metrics.csv").read_bytes()
    import pandas as pd

    losses = [pd.read_csv(o / "train_log.csv").drop(columns=["seconds"]) for o in outs]
    assert losses[0].equals(losses[1])


# --- the GPU bench, in its CPU mode ---------------------------------------------------------

@pytest.mark.slow
def test_gpu_bench_runs_in_its_quick_cpu_mode(tmp_path, mnist_root):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--quick",
                             "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900,
                            env={**os.environ, "CL_RUNNER_DATA": str(Path(mnist_root).parent)})
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(out.read_text())
    assert report["device_kind"] == "cpu" and report["quick"] is True
    for section in ("experiments", "epoch_vs_notebook", "strategy_steps", "precision", "resnet18_cifar", "memory"):
        assert report[section], section
    assert set(report["strategy_steps"]) >= {"naive", "ewc", "si", "der", "icarl", "agem", "lwf"}
