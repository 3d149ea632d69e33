"""The GPU check, in one go (`make bench-gpu`): what cl-runner costs on a GPU, in about 5 minutes.

Sections, each with the peak GPU memory it reached (torch.cuda.max_memory_allocated, reset
before it):

- experiments    - the notebook's six experiments end to end, in this process (as `make
                   notebook` runs them): wall seconds, seconds per task, final accuracies;
- epoch_vs_notebook - cl-runner's training epoch against the notebook's way (per-example
                   tensors + DataLoader), mlp64 and mlp256 (bench.py's `time_training`);
- strategy_steps - milliseconds per training step of every strategy, on the split-MNIST
                   protocol (MLP 784-400-400-10, batches of 128), timed over the last task's
                   steps, when every memory, teacher and penalty is in use;
- precision      - seconds per epoch at train.precision 32 and bf16 for mlp256, cnn and
                   resnet18 on MNIST task 0 (and TF32 as PyTorch has it by default);
- resnet18_cifar - the reduced ResNet-18 (nf 20) and DER's (nf 64) on CIFAR-sized stand-ins
                   (3x32x32 generated images, 10 classes), ms per step at 32 and bf16.

Every timed region is bounded by torch.cuda.synchronize(). The data is real MNIST from
$CL_RUNNER_DATA/mnist when it is there, else generated stand-ins of the same size and format
(the timings hold; the accuracies then mean nothing and the report says so).

    python bench/gpu.py                         # on a GPU: bench/results-gpu.json
    python bench/gpu.py --device cpu --quick    # a minute's smoke test of every section (tests run it)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import struct
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
from cl_runner import threads  # noqa: E402

threads.prepare_openmp()  # as cl-run does, before torch is loaded (it matters for the CPU's parts)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

sys.path.insert(0, str(HERE))  # bench.py's notebook-style loop
import bench as loop_bench  # noqa: E402

import cl_runner.run as run_module  # noqa: E402
from cl_runner import benchmarks, config, models  # noqa: E402
from cl_runner.context import RunContext  # noqa: E402
from cl_runner.device import torch_state  # noqa: E402
from cl_runner.precision import Precision  # noqa: E402
from cl_runner.seeds import Stream  # noqa: E402
from cl_runner.trainer import train_epoch  # noqa: E402

EXPERIMENTS = ["naive", "replay10", "replay1", "scratch", "ewc", "ewc_replay"]
STRATEGIES = ["naive", "joint", "cumulative", "replay", "ewc", "si", "lwf", "agem", "der", "derpp", "icarl", "gdumb"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section(device: torch.device, fn):
    """fn()'s result with the section's peak GPU memory (MiB) and wall seconds."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    result = fn()
    sync(device)
    peak = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None
    return result, {"peak_allocated_mib": peak, "seconds": round(time.perf_counter() - started, 2)}


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(config.CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def mnist_root(scratch: Path) -> tuple[Path, bool]:
    """(the MNIST folder, whether it is real): stand-ins of MNIST's sizes when it is missing."""
    real = Path(os.environ.get("CL_RUNNER_DATA", HERE.parent / "data")) / "mnist"
    if any(real.glob("train-images-idx3-ubyte*")):
        return real, True
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 60000), ("t10k", 10000)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 256, (count, 28, 28))
        _write_idx(scratch / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(scratch / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return scratch, False


def experiments(args, common: list[str], out: Path) -> dict:
    rows = {}
    for name in EXPERIMENTS:
        cfg = compose_cfg([f"experiment={name}", *common, *(["train.epochs=1", "train.iterations=2"] if args.quick else [])])
        started = time.perf_counter()
        summary = run_module.run(cfg, out / name)
        rows[name] = {"wall_s": round(time.perf_counter() - started, 2), "task_seconds": summary["task_seconds"],
                      "final_test_acc": summary["final_test_acc"]}
        print(f"  experiment {name}: {rows[name]['wall_s']:.1f} s", flush=True)
    return rows


def epoch_vs_notebook(args, root: Path, device: torch.device) -> dict:
    bench = loop_bench.load_task0(str(root), device)
    task = bench.tasks[0]
    data = loop_bench.dataclasses.replace(task.train, x=bench.prepare(task.train.x))
    if args.quick:
        data = data.subset(torch.arange(2048, device=device))
    examples = loop_bench.ExampleList(data.x, data.y)
    options = Namespace(epochs=1 if args.quick else 5, repeats=1 if args.quick else 3, warmup=0 if args.quick else 1,
                        compile=False)
    return {name: loop_bench.time_training(name, options, bench, data, examples, device)[0] for name in loop_bench.WIDTHS}


def strategy_steps(args, common: list[str], out: Path, device: torch.device) -> dict:
    steps = 3 if args.quick else 200
    timed = {}
    real = run_module.train_epoch

    def timing(ctx, *rest):
        sync(device)
        started, before = time.perf_counter(), ctx.step
        result = real(ctx, *rest)
        sync(device)
        timed["ms"] = 1000 * (time.perf_counter() - started) / max(ctx.step - before, 1)
        return result

    rows = {}
    run_module.train_epoch = timing
    try:
        for name in STRATEGIES:
            cfg = compose_cfg(["experiment=split_mnist_protocol", f"strategy={name}", f"train.iterations={steps}",
                               f"train.eval_every={steps}", *common, *(["dataset.tasks=[[0,1],[2,3],[4,5]]"] if args.quick else [])])
            run_module.run(cfg, out / f"strategy-{name}")
            rows[name] = round(timed["ms"], 3)  # the last epoch timed: the last task's
            print(f"  strategy {name}: {rows[name]:.2f} ms/step", flush=True)
    finally:
        run_module.train_epoch = real
    return rows


def _epoch_seconds(cfg, bench, device, precision: str, steps: int | None, batch: int) -> float:
    torch.manual_seed(0)
    net = models.build(cfg.model, bench.input_shape, bench.num_outputs, device)
    model = benchmarks.Prepared(bench.prepare, net)
    ctx = RunContext(cfg, bench, model, torch.optim.Adam(model.parameters(), lr=1e-3), device,
                     precision=Precision(precision, device))
    ctx.begin(0, final=False)
    data, generator = bench.tasks[0].train, ctx.generator(Stream.SHUFFLE)
    train_epoch(ctx, data, batch, generator, 2)  # warm-up (cuDNN's benchmark picks its kernels here)
    ctx.step = 0
    sync(device)
    started = time.perf_counter()
    sums, _ = train_epoch(ctx, data, batch, generator, steps)
    sums.tolist()
    return time.perf_counter() - started


def precision(args, common: list[str], device: torch.device) -> dict:
    rows = {}
    for model, batch in (("mlp256", 1024), ("cnn", 256), ("resnet18", 256)):
        batch = 32 if args.quick else batch
        cfg = compose_cfg([f"model={model}", f"train.batch_size={batch}", *common])
        bench = benchmarks.build(cfg, device)
        steps = 2 if args.quick else None
        rows[model] = {p: round(_epoch_seconds(cfg, bench, device, p, steps, batch), 4) for p in ("32", "bf16")}
        print(f"  precision {model}: " + ", ".join(f"{p} {s:.3f} s" for p, s in rows[model].items()), flush=True)
    return rows


def resnet18_cifar(args, device: torch.device) -> dict:
    """ms per step on generated 3x32x32 images (no data set needed)."""
    from cl_runner.models.resnet import ResNet18

    batch, steps = (8, 2) if args.quick else (256, 30)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    rows = {}
    for nf in (20, 64):
        for prec in ("32", "bf16"):
            torch.manual_seed(0)
            model = ResNet18(3, 10, nf).to(device)
            opt, amp = torch.optim.Adam(model.parameters(), lr=1e-3), Precision(prec, device)
            for step in range(steps + 2):  # two warm-up steps
                if step == 2:
                    sync(device)
                    started = time.perf_counter()
                with amp.autocast():
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                amp.backward(loss, opt)
                amp.step(opt)
            sync(device)
            rows[f"nf{nf} precision {prec}"] = round(1000 * (time.perf_counter() - started) / steps, 3)
    print("  resnet18 on 3x32x32: " + ", ".join(f"{k} {v:.2f} ms/step" for k, v in rows.items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every section runs")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results-<device>.json;"
                        " --quick: bench/results-<device>-quick.json)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: CUDA is not available here; --device cpu --quick checks the script itself")
    device = torch.device(args.device)
    config.register()
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
              "device_kind": device.type, "torch": torch.__version__, "quick": args.quick, "memory": {}}
    with tempfile.TemporaryDirectory(prefix="cl-gpu-") as scratch, torch_state():
        root, real = mnist_root(Path(scratch))
        report["data"] = "MNIST" if real else "generated stand-ins of MNIST's sizes (accuracies meaningless)"
        common = [f"device={args.device}", "train.progress=false", f"data.root={root}", "data.download=false",
                  *([] if real else ["data.verify=false"])]
        sections = {
            "experiments": lambda: experiments(args, common, Path(scratch) / "runs"),
            "epoch_vs_notebook": lambda: epoch_vs_notebook(args, root, device),
            "strategy_steps": lambda: strategy_steps(args, common, Path(scratch) / "runs", device),
            "precision": lambda: precision(args, common, device),
            "resnet18_cifar": lambda: resnet18_cifar(args, device),
        }
        for name, fn in sections.items():
            print(f"{name}:", flush=True)
            report[name], report["memory"][name] = section(device, fn)
    out = args.out or HERE / f"results-{device.type}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {out} ({sum(m['seconds'] for m in report['memory'].values()):.0f} s)")


if __name__ == "__main__":
    main()
