"""Epoch time on a busy machine: idle against beside one competing CPU-bound process.

The thread policy of `cl_runner.threads` is meant to hold when other work takes a core (a
shared workstation, a cluster node): this measures it. For each model -- the MLP 784-64-10
(`model=mlp64`, a whole epoch of Split MNIST task 0: 27.5k examples, batches of 1024), the
CNN (`model=cnn`, --cnn-steps batches of 128) and the reduced ResNet-18 (`model=resnet18`,
--resnet-steps batches of 128) -- cl-runner's `train_epoch` is timed, in turns, with the
machine as it is ("idle") and with one competing process spinning on a core ("loaded"),
started just before and stopped just after that epoch by this script. Each turn is a fresh
model (same seed) after one untimed warm-up epoch. The loaded/idle ratio of each pair of
turns is reported: its median, and its range over the repeats as the noise.

Each setting runs in its own worker process, because OpenMP reads its wait policy once,
when torch is loaded:

  * `auto`: what `cl-run` does (a short spin before sleeping, fixed thread counts; `train.threads=auto`).
  * `torch-default` (with --baseline, on by default): a plain PyTorch script's settings,
    as cl-run had them before: every core as a thread, OpenMP's spinning wait.

The settings take turns too (setting by setting within each repeat), so a burst of other
work hits them alike. Then (unless --no-sweep) a sweep: `cl-run -m seed=0,1,2,3
model=mlp64 train.epochs=1` (basic launcher, one process), idle and loaded in turns, its wall
time and the sum of its runs' training epochs (train_log.csv).

    python bench/load.py                 # about 3 minutes on 2 cores
    python bench/load.py --repeats 5 --no-baseline --no-sweep

Output: a table on stdout and bench/load-cpu.json. Targets (issue 21): loaded epochs at most
2x idle under `auto`; the machine's load average before and after says how quiet "idle" was.
Options of bench.py and startup.py (which `make bench` passes to all three) are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = {"mlp": ("mlp64", 1024), "cnn": ("cnn", 128), "resnet": ("resnet18", 128)}  # name: (model config, batch)
SWEEP = ["-m", "seed=0,1,2,3", "model=mlp64", "train.epochs=1", "device=cpu", "train.progress=false"]
TARGET = 2.0


# --------------------------------------------------------------------------- the worker

def worker(setting: str, steps: dict[str, int | None]) -> None:
    """Serve timing requests on stdin ("<model>" per line), one JSON line each on stdout."""
    if setting == "auto":
        from cl_runner import threads

        threads.prepare_openmp()  # as cl-run does, before torch is imported
    import torch
    from hydra import compose, initialize_config_dir

    from cl_runner import benchmarks, config, device as torch_device, models
    from cl_runner.context import RunContext
    from cl_runner.seeds import Stream
    from cl_runner.trainer import train_epoch

    config.register()
    with initialize_config_dir(str(config.CONF_DIR), version_base="1.3"):
        base = compose("config", overrides=["device=cpu", "data.download=false"])
    bench = benchmarks.build(base, torch.device("cpu"))
    data = bench.tasks[0].train
    threads_setting = "auto" if setting == "auto" else os.cpu_count()

    def one_epoch(name: str) -> float:
        model_name, batch = MODELS[name]
        with initialize_config_dir(str(config.CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"model={model_name}", "device=cpu", f"train.batch_size={batch}"])
        torch.manual_seed(0)
        net = models.build(cfg.model, bench.input_shape, bench.num_outputs, torch.device("cpu"))
        torch_device.set_threads(threads_setting, net, bench.input_shape, batch)
        model = benchmarks.Prepared(bench.prepare, net)
        ctx = RunContext(cfg, bench, model, torch.optim.Adam(model.parameters(), lr=1e-3), torch.device("cpu"))
        ctx.begin(0, final=False)
        started = time.perf_counter()
        sums, _ = train_epoch(ctx, data, batch, ctx.generator(Stream.SHUFFLE), steps[name])
        sums.tolist()  # the epoch's one read, as cl_runner.run does
        return time.perf_counter() - started

    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:  # "warm <model>" or "time <model>": the same epoch, the answer ignored or not
        seconds = one_epoch(line.split()[1])
        print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}), flush=True)


# --------------------------------------------------------------------------- the parent

class Competitor:
    """One process spinning on a core while the block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)  # scheduled and running before the timed work starts
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


class Worker:
    def __init__(self, setting: str, args):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                                                                 "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
        steps = json.dumps({"mlp": None, "cnn": args.cnn_steps, "resnet": args.resnet_steps})
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", setting, "--worker-steps", steps],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self._read()
        self.warmed: set[str] = set()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"bench/load.py: a worker failed (exit {self.proc.wait()})")
        return json.loads(line)

    def time(self, name: str, loaded: bool) -> dict:
        """One timed epoch of model `name`, beside a competitor if `loaded`; the first of each
        model is preceded by an untimed one, run idle."""
        if name not in self.warmed:
            self._ask(f"warm {name}")
            self.warmed.add(name)
        if loaded:
            with Competitor():
                return self._ask(f"time {name}")
        return self._ask(f"time {name}")

    def _ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def measure_epochs(args) -> dict:
    settings = ["auto"] + (["torch-default"] if args.baseline else [])
    workers = {s: Worker(s, args) for s in settings}
    times = {s: {m: {"idle": [], "loaded": []} for m in MODELS} for s in settings}
    threads = {}
    try:
        for repeat in range(args.repeats):
            for name in MODELS:
                order = settings if repeat % 2 == 0 else settings[::-1]
                for setting in order:
                    for loaded in ((False, True) if repeat % 2 == 0 else (True, False)):
                        answer = workers[setting].time(name, loaded)
                        times[setting][name]["loaded" if loaded else "idle"].append(answer["seconds"])
                        threads[(setting, name)] = answer["threads"]
                print(f"  repeat {repeat + 1}/{args.repeats} {name}: " + ", ".join(
                    f"{s} idle {times[s][name]['idle'][-1]:.3f} s loaded {times[s][name]['loaded'][-1]:.3f} s"
                    for s in settings), flush=True)
    finally:
        for w in workers.values():
            w.close()
    out = {}
    for s in settings:
        for name in MODELS:
            t = times[s][name]
            ratios = [lo / i for i, lo in zip(t["idle"], t["loaded"])]
            out.setdefault(s, {})[name] = {
                "threads": threads[(s, name)], "idle_s": statistics.median(t["idle"]),
                "loaded_s": statistics.median(t["loaded"]), "ratio": statistics.median(ratios),
                "ratio_range": [min(ratios), max(ratios)], "all": t}
    return out


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _train_seconds(folder: Path) -> float:
    total = 0.0
    for log in folder.glob("*/train_log.csv"):
        lines = log.read_text().splitlines()
        column = lines[0].split(",").index("seconds")
        total += sum(float(row.split(",")[column]) for row in lines[1:])
    return total


def measure_sweep(args, scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    rows = {"idle": [], "loaded": []}
    for repeat in range(args.sweep_repeats):
        for loaded in ((False, True) if repeat % 2 == 0 else (True, False)):
            folder = scratch / f"sweep-{repeat}-{int(loaded)}"
            command = [sys.executable, "-m", "cl_runner.cli", *SWEEP, f"hydra.sweep.dir={folder}"]
            started = time.perf_counter()
            if loaded:
                with Competitor():
                    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
            else:
                result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
            wall = time.perf_counter() - started
            if result.returncode:
                sys.exit(f"bench/load.py: the sweep failed ({result.returncode}): {result.stderr[-2000:]}")
            rows["loaded" if loaded else "idle"].append({"wall_s": wall, "training_s": _train_seconds(folder)})
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "training_s")} for k, v in rows.items()}
    return {"command": "cl-run " + " ".join(SWEEP), **med,
            "training_ratio": med["loaded"]["training_s"] / med["idle"]["training_s"],
            "wall_ratio": med["loaded"]["wall_s"] / med["idle"]["wall_s"], "all": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="idle/loaded pairs per model and setting")
    parser.add_argument("--cnn-steps", type=int, default=12)
    parser.add_argument("--resnet-steps", type=int, default=4)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a plain PyTorch script's settings (all cores, spinning threads)")
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sweep-repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=HERE / "load-cpu.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", help=argparse.SUPPRESS)
    args, ignored = parser.parse_known_args()
    if args.worker:
        return worker(args.worker, json.loads(args.worker_steps))
    load_before = os.getloadavg()
    print(f"bench/load.py: {os.cpu_count()} CPUs, load average {load_before[0]:.2f}; epochs idle and beside one "
          f"busy process, {args.repeats} pairs each" + (f"; ignored {' '.join(ignored)}" if ignored else ""), flush=True)
    epochs = measure_epochs(args)
    with tempfile.TemporaryDirectory(prefix="cl-load-") as scratch:
        sweep = measure_sweep(args, Path(scratch)) if args.sweep else None
    load_after = os.getloadavg()
    print(f"\n| {'model':<8} | {'setting':<14} | {'threads':>7} | {'idle s':>8} | {'loaded s':>8} | {'ratio':>6} | "
          f"{'range':>11} | target {TARGET:g}x |")
    print(f"|{'-' * 10}|{'-' * 16}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 13}|{'-' * 12}|")
    for setting, rows in epochs.items():
        for name, r in rows.items():
            mark = ("ok" if r["ratio"] <= TARGET else "OVER") if setting == "auto" else ""
            print(f"| {name:<8} | {setting:<14} | {r['threads']:>7} | {r['idle_s']:>8.3f} | {r['loaded_s']:>8.3f} | "
                  f"{r['ratio']:>5.2f}x | {r['ratio_range'][0]:>4.2f}-{r['ratio_range'][1]:<4.2f}x | {mark:>10} |")
    if sweep:
        print(f"\nsweep ({sweep['command']}): wall {sweep['idle']['wall_s']:.1f} s idle, {sweep['loaded']['wall_s']:.1f} s "
              f"loaded ({sweep['wall_ratio']:.2f}x); its training epochs {sweep['idle']['training_s']:.2f} s / "
              f"{sweep['loaded']['training_s']:.2f} s ({sweep['training_ratio']:.2f}x)")
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} CPUs "
          "(other work makes 'idle' less idle and the ratios noisy: see the ranges)")
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
              "platform": platform.platform(), "python": platform.python_version(),
              "repeats": args.repeats, "cnn_steps": args.cnn_steps, "resnet_steps": args.resnet_steps,
              "load_average_before": load_before, "load_average_after": load_after, "target": TARGET,
              "epochs": epochs, "sweep": sweep}
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
