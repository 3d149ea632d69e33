"""Speed of cl-runner's training epoch and EWC Fisher against the notebook's way of doing them.

What is measured, in one process, on the same data (Split MNIST task 0: digits 0-4 of the
90% training split, ~27.5k examples; the Fisher on 3,000 examples of its validation split):

- Training, seconds per epoch, for the MLPs 784-64-10 (mlp64) and 784-256-10 (mlp256),
  LeakyReLU, Adam lr 1e-3, batch 1024, cross-entropy:
  * baseline - the notebook's pipeline, written correctly: every example is its own
    [1, 28, 28] tensor on the device (a list of (x, y) pairs wrapped in a torch Dataset),
    a DataLoader with the default collate (shuffle=True, batch 1024), a Flatten layer, and
    zero_grad / backward / optimizer.step() for every batch (the notebook's printed code
    steps once per epoch by mistake; that bug is not copied). As in the notebook, each
    batch's detached loss is appended to a list that is averaged once per epoch.
  * ours - `cl_runner.trainer.train_epoch`, as `cl-run` calls it: the split resident on
    the device as one tensor, a batch is an index selection, loss sums stay on the device
    and are read once per epoch (the single `.tolist()` sync of `cl_runner.run`).
  * ours+compile (only with --compile) - the same with `torch.compile(model)`, as
    `train.compile=true` does; the first (compiling) call happens in the warm-up.
- Fisher diagonal of mlp256 (trained by the mlp256 runs above, so both see the same weights),
  empirical labels, in seconds:
  * baseline - the notebook's loop: a DataLoader with batch_size=1, one forward and backward
    per example, squared gradients accumulated, divided by N.
  * ours - `cl_runner.fisher.fisher_diagonal` (closed form, one backward per chunk).
  The two results are compared in float64: the largest |ours - baseline| over all entries,
  divided by the largest baseline entry of the same tensor (max over tensors). Must be < 1e-5.
- Fisher diagonal of the convolutional models cnn and resnet18 on --model-fisher-samples
  validation images [N, 1, 28, 28]: the per-example loop against the closed form and against
  torch.func's vmap (bench/model_fisher.py says how); both must agree with the loop (< 1e-5).

How: for each measurement, `--warmup` untimed rounds first (for training: one epoch of a
throwaway model each), then `--repeats` timed rounds; the median is reported. A training
repeat is a fresh model per implementation (same seed, so the same initial weights for
both) trained for `--epochs` epochs, the implementations taking turns epoch by epoch, so a
busy neighbour on a shared machine slows both alike; its mean epoch time is that repeat's
seconds per epoch. The median single epoch over all repeats is shown as well: it is the
figure least disturbed by bursts of other work. Fisher repeats alternate the same way.
Evaluation is not part of the timed epoch. On CUDA, torch.cuda.synchronize() is called at
the edges of every timed region; TF32 stays off. Everything is seeded.

The thread count is torch's default unless --threads is given; the machine's load average
before and after is recorded, since other work on a shared machine slows both sides (parallel
CPU kernels wait for a descheduled worker thread) and makes the ratios noisy.

Output: a table on stdout and a JSON file (default bench/results-<cpu|cuda>.json).

    python bench/bench.py                       # 50 epochs, 3 repeats (a few minutes on CPU)
    python bench/bench.py --epochs 10 --repeats 3
    python bench/bench.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cl_runner import benchmarks, config
from cl_runner.context import RunContext
from cl_runner.device import resolve_device
from cl_runner.errors import ConfigError
from cl_runner.examples import Examples
from cl_runner.fisher import fisher_diagonal
from cl_runner.models.mlp import mlp
from cl_runner.seeds import Stream
from cl_runner.trainer import train_epoch
from model_fisher import CONFIGS as MODEL_FISHERS, time_model_fisher  # bench/ is the script's folder

SEED = 0
BATCH = 1024
LR = 1e-3
WIDTHS = {"mlp64": 64, "mlp256": 256}
FISHER_MODEL = "mlp256"  # the notebook's EWC model
TOLERANCE = 1e-5


# --------------------------------------------------------------------------- set-up

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--epochs", type=int, default=50, help="epochs per timed training round (default 50: one task)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per measurement; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed ones")
    p.add_argument("--fisher-samples", type=int, default=3000)
    p.add_argument("--model-fisher-samples", type=int, default=300, help="examples for the cnn and resnet18 Fishers")
    p.add_argument("--data-root", default=os.path.join(os.environ.get("CL_RUNNER_DATA", "data"), "mnist"))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--compile", action="store_true", help="also time ours with torch.compile(model)")
    p.add_argument("--out", default=None, help="JSON file (default bench/results-<device kind>.json)")
    args = p.parse_args()
    for name in ("epochs", "repeats", "fisher_samples", "model_fisher_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_task0(root: str, device: torch.device) -> benchmarks.Benchmark:
    """cl-runner's own Split MNIST (digits 0-4 then 5-9, 90/10 train/val split, seed 0)."""
    cfg = OmegaConf.structured(config.schema())
    cfg.data.root, cfg.data.download, cfg.seed = root, False, SEED
    return benchmarks.build(cfg, device)


class ExampleList(Dataset):
    """The notebook's CudaDataset: one (x, y) pair of tensors on the device per example."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.items = [(x[i].view(1, 28, 28).clone(), y[i].clone()) for i in range(len(y))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def notebook_model(width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.LeakyReLU(), nn.Linear(width, 10)).to(device)


def our_model(width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(SEED)  # Flatten has no parameters: the same initial weights as notebook_model
    return mlp(784, 10, width, 1, "leaky_relu").to(device)


# --------------------------------------------------------------------------- training

class NotebookTraining:
    """A fresh model trained the notebook's way, one epoch per call."""

    def __init__(self, width: int, examples: ExampleList, device: torch.device):
        self.model = notebook_model(width, device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.loader = DataLoader(examples, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(SEED))

    def epoch(self) -> float:
        losses = []
        for x, y in self.loader:
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        return torch.stack(losses).mean().item()  # the notebook's per-epoch mean of the batch losses


class OurTraining:
    """A fresh model trained by cl-runner's train_epoch (optionally compiled), one epoch per call."""

    def __init__(self, width: int, bench: benchmarks.Benchmark, data: Examples, device: torch.device, compiled: bool = False):
        self.model = our_model(width, device)
        self.data = data
        self.ctx = RunContext(OmegaConf.create({"seed": SEED}), bench, self.model,
                              torch.optim.Adam(self.model.parameters(), lr=LR), device,
                              forward=torch.compile(self.model) if compiled else None)
        self.ctx.begin(0, final=False)
        self.generator = self.ctx.generator(Stream.SHUFFLE)

    def epoch(self) -> float:
        self.ctx.epoch += 1
        sums, seen = train_epoch(self.ctx, self.data, BATCH, self.generator)
        return (sums / seen).tolist()[0]  # the one sync per epoch of cl_runner.run


def time_training(name: str, args, bench, data, examples, device) -> tuple[dict, nn.Module]:
    """Each repeat trains a fresh model per implementation for args.epochs epochs, the
    implementations taking turns epoch by epoch, so a burst of other work hits all alike.
    Returns the timings and the model cl-runner trained in the last repeat."""
    width = WIDTHS[name]
    makers = {
        "baseline": lambda: NotebookTraining(width, examples, device),
        "ours": lambda: OurTraining(width, bench, data, device),
    }
    if args.compile:
        makers["ours_compile"] = lambda: OurTraining(width, bench, data, device, compiled=True)
    for _ in range(args.warmup):  # one untimed epoch each (compilation happens here)
        for make in makers.values():
            make().epoch()
    per_repeat = {k: [] for k in makers}  # seconds per epoch of each repeat
    epoch_times = {k: [] for k in makers}  # every timed epoch
    final_loss = {}
    for r in range(args.repeats):
        runs = {k: make() for k, make in makers.items()}
        times = {k: [] for k in makers}
        for _ in range(args.epochs):
            for k, run in runs.items():
                sync(device)
                started = time.perf_counter()
                final_loss[k] = run.epoch()
                sync(device)
                times[k].append(time.perf_counter() - started)
        for k in makers:
            per_repeat[k].append(sum(times[k]) / args.epochs)
            epoch_times[k] += times[k]
        print(f"  {name} repeat {r + 1}/{args.repeats}: "
              + ", ".join(f"{k} {v[-1]:.4f} s/epoch" for k, v in per_repeat.items()), flush=True)
    return {
        "seconds_per_epoch": {k: statistics.median(v) for k, v in per_repeat.items()},
        "median_single_epoch": {k: statistics.median(v) for k, v in epoch_times.items()},
        "all_seconds_per_epoch": per_repeat,
        "final_train_loss": final_loss,
    }, runs["ours"].model


# --------------------------------------------------------------------------- Fisher

def baseline_fisher(model: nn.Module, examples: ExampleList) -> dict[str, torch.Tensor]:
    """The notebook's compute_fisher: batch size 1, one backward per example."""
    model = nn.Sequential(nn.Flatten(), model)  # the notebook's model starts with Flatten
    model.eval()
    loader = DataLoader(examples, batch_size=1, shuffle=True, generator=torch.Generator().manual_seed(SEED))
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in loader:
        model.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), dim=-1), y)
        loss.backward()
        for n, p in model.named_parameters():
            fisher[n] += p.grad.detach() ** 2
    for n in fisher:
        fisher[n] /= len(loader)
    model.zero_grad()
    return {n.removeprefix("1."): f for n, f in fisher.items()}


def relative_difference(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """max over tensors of max|ours - reference| / max|reference|, in float64."""
    worst = 0.0
    for n, ref in reference.items():
        ref, got = ref.double(), ours[n].double()
        worst = max(worst, ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item())
    return worst


def time_fisher(args, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> dict:
    examples = ExampleList(x, y)

    def timed(fn):
        sync(device)
        started = time.perf_counter()
        out = fn()
        sync(device)
        return time.perf_counter() - started, out

    impls = {"baseline": lambda: baseline_fisher(model, examples), "ours": lambda: fisher_diagonal(model, x, y)}
    for _ in range(args.warmup):
        for fn in impls.values():
            fn()
    seconds = {k: [] for k in impls}
    results = {}
    for r in range(args.repeats):
        for k, fn in impls.items():
            s, results[k] = timed(fn)
            seconds[k].append(s)
        print(f"  fisher repeat {r + 1}/{args.repeats}: "
              + ", ".join(f"{k} {v[-1]:.4f} s" for k, v in seconds.items()), flush=True)
    return {
        "seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "all_seconds": seconds,
        "max_relative_difference": relative_difference(results["ours"], results["baseline"]),
    }


# --------------------------------------------------------------------------- report

def main() -> None:
    args = parse_args()
    try:
        device = resolve_device(args.device)
    except ConfigError:
        sys.exit("bench: --device cuda, but CUDA is not available on this machine")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(SEED)
    bench = load_task0(args.data_root, device)
    task = bench.tasks[0]
    # The model inputs as floats, however the benchmark stores its images (both sides train
    # the bare MLP, without the run model's input preparation in front).
    data = dataclasses.replace(task.train, x=bench.prepare(task.train.x))
    examples = ExampleList(data.x, data.y)
    info = {
        "device": device_name(device),
        "device_kind": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "train_examples": len(data),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "batch_size": BATCH,
    }
    print(f"bench: {info['device']} ({device.type}), torch {info['torch']}, {info['threads']} threads, "
          f"{len(data)} training examples, {args.epochs} epochs x {args.repeats} repeats", flush=True)

    training, trained = {}, {}
    for name in WIDTHS:
        training[name], trained[name] = time_training(name, args, bench, data, examples, device)

    # The Fisher of the notebook's EWC model, trained on task 0 by cl-runner, on validation examples.
    model = trained[FISHER_MODEL]
    count = min(args.fisher_samples, len(task.val))
    pick = torch.randperm(len(task.val), generator=torch.Generator().manual_seed(SEED))[:count].to(device)
    val_x = bench.prepare(task.val.x[pick])
    fisher = time_fisher(args, model, val_x, task.val.y[pick], device)
    fisher.update(model=FISHER_MODEL, samples=count)
    # The convolutional models on the first of those examples, as images.
    images, labels = val_x[: args.model_fisher_samples].view(-1, 1, 28, 28), task.val.y[pick][: args.model_fisher_samples]
    model_fishers = {name: time_model_fisher(name, images, labels, args.repeats, args.warmup, lambda: sync(device))
                     for name in MODEL_FISHERS}

    rows = []
    for name, t in training.items():
        for key, label in (("seconds_per_epoch", f"epoch {name} (s/epoch)"), ("median_single_epoch", f"  {name}, median single epoch (s)")):
            s = t[key]
            rows.append((label, s["baseline"], s["ours"]))
            if "ours_compile" in s:
                rows.append((label.replace(name, f"{name} +compile"), s["baseline"], s["ours_compile"]))
    rows.append((f"Fisher {FISHER_MODEL}, {count} ex. (s)", fisher["seconds"]["baseline"], fisher["seconds"]["ours"]))
    for name, f in model_fishers.items():
        for way in ("closed", "vmap"):
            rows.append((f"Fisher {name}, {f['samples']} ex., loop vs {way} (s)", f["seconds"]["loop"], f["seconds"][way]))
    ratios = {label: base / ours for label, base, ours in rows}

    print()
    print(f"device: {info['device']} ({device.type}); torch {info['torch']}; threads {info['threads']}; "
          f"{args.epochs} epochs, median of {args.repeats} repeats after {args.warmup} warm-up")
    print(f"| {'measurement':<48} | {'baseline':>10} | {'ours':>10} | {'ratio':>7} |")
    print(f"|{'-' * 50}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
    for label, base, ours in rows:
        print(f"| {label:<48} | {base:>10.4f} | {ours:>10.4f} | {ratios[label]:>6.1f}x |")
    diff = fisher["max_relative_difference"]
    print(f"Fisher max relative difference (float64, relative to each tensor's max): {diff:.2e} "
          f"({'OK' if diff < TOLERANCE else 'FAIL'}: < {TOLERANCE:g})")
    for name, f in model_fishers.items():
        for way, d in f["max_relative_difference"].items():
            d32 = f["max_relative_difference_float32"][way]
            print(f"Fisher {name}, {way} vs loop, max relative difference in float64: {d:.2e} "
                  f"({'OK' if d < TOLERANCE else 'FAIL'}; float32: {d32:.2e})")
            diff = max(diff, d)
    for name, t in training.items():
        print(f"final train loss {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in t["final_train_loss"].items()))

    load_after = os.getloadavg()
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other work on the machine slows both sides and adds noise)")

    out = Path(args.out) if args.out else Path(__file__).resolve().parent / f"results-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info["load_average_1min_before_after"] = [round(load_before[0], 2), round(load_after[0], 2)]
    info["cpu_count"] = os.cpu_count()
    result = {**info, "training": training, "fisher": fisher, "model_fishers": model_fishers,
              "ratios_baseline_over_ours": ratios}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    if diff >= TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
