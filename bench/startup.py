"""Whole-process cost of a short `cl-run` against a plain PyTorch script doing the same training.

`bench.py` times the training loop inside one process; this times what a user waits for: the
command from start to exit, fixed costs included (imports, config, reading the data, outputs,
the interpreter's exit). Each case runs `cl-run` and `bench/plain.py` (the same data, split,
model, optimiser, epochs and evaluation; see its docstring) as separate processes, taking
turns, `--repeats` times after one untimed warm-up of each (which also builds cl-run's cache of
decoded data, as any first run does); the medians and their ratio are reported, with the
median seconds of each phase as each side measures it (cl-run: the `time:` line of its
cl-run.log; plain: its JSON line) and `exit`, the rest of the wall time (starting Python and
ending the process).

  * naive, MLP 784-64-10, 1 epoch per task (target: cl-run within 1.20x of plain)
  * EWC (alpha 1e8), MLP 784-256-10, 5 epochs per task (target: within 1.10x); plain.py's
    Fisher is its closed form too (`--fisher closed`), as fast as cl-runner's, so the ratio
    is about the fixed costs, not about the per-example gradients a plain script would use.

Then a 6-run sweep (the EWC case, seeds 0-5) with the basic launcher (one process, runs one
after the other) and the joblib launcher with n_jobs=1 (in the same process too) and n_jobs=2
(two worker processes): their wall times, taking turns. Each joblib worker gets cores / n_jobs torch threads (joblib sets
it), so two workers on two cores do not fight over them.

    python bench/startup.py                     # about 4 minutes on a 2-core CPU
    python bench/startup.py --repeats 5 --no-sweep
    python bench/startup.py --device cuda

Output: a table on stdout and bench/startup-<cpu|cuda>.json. Options it does not know (those of
bench.py, which `make bench` passes to both) are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASES = (  # name, cl-run overrides, plain.py arguments, target ratio
    ("naive mlp64, 1 epoch/task", ["model=mlp64", "train.epochs=1"], ["--width", "64", "--epochs", "1"], 1.20),
    ("EWC mlp256, 5 epochs/task", ["experiment=ewc", "train.epochs=5"],
     ["--width", "256", "--epochs", "5", "--ewc-alpha", "1e8", "--fisher", "closed"], 1.10),
)
PHASES = ("import", "config", "data", "model", "training", "evaluation", "outputs")
SWEEP_RUN = ("experiment=ewc", "train.epochs=5")  # the second case above, six seeds
SWEEPS = (("basic", []), ("joblib n_jobs=1", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"]),
          ("joblib n_jobs=2", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]))


def timed(command: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def cl_run_phases(folder: Path) -> dict[str, float]:
    line = next(line for line in (folder / "cl-run.log").read_text().splitlines() if "] time: " in line)
    return {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+) s", line.split("] time: ", 1)[1])}


def compare(case: tuple, args, env: dict, scratch: Path) -> dict:
    name, overrides, plain_args, target = case
    runs = {"cl-run": [], "plain": []}
    for repeat in range(args.repeats + 1):  # repeat 0: the warm-up
        order = ("plain", "cl-run") if repeat % 2 else ("cl-run", "plain")
        for side in order:
            out = scratch / f"{name.split()[0]}-{side}-{repeat}"
            if side == "cl-run":
                command = [sys.executable, "-m", "cl_runner.cli", *overrides, f"device={args.device}",
                           "train.progress=false", f"hydra.run.dir={out}"]
            else:
                command = [sys.executable, str(HERE / "plain.py"), "--data", str(args.data_root), "--out", str(out),
                           "--device", "cuda" if args.device == "cuda" else "cpu", *plain_args]
            seconds, stdout = timed(command, env)
            phases = cl_run_phases(out) if side == "cl-run" else json.loads(stdout.splitlines()[-1])["seconds"]
            phases["exit"] = seconds - (phases.get("total") or sum(phases.values()))
            if repeat:
                runs[side].append({"wall": seconds, **phases})
    medians = {side: {key: statistics.median(r.get(key, 0.0) for r in rows) for key in ("wall", *PHASES, "exit")}
               for side, rows in runs.items()}
    ratio = medians["cl-run"]["wall"] / medians["plain"]["wall"]
    return {"case": name, "target": target, "ratio": round(ratio, 3), "medians": medians, "runs": runs}


def sweep_times(args, env: dict, scratch: Path) -> dict:
    walls = {name: [] for name, _ in SWEEPS}
    for repeat in range(args.sweep_repeats):
        for index, (name, launcher) in (enumerate(SWEEPS) if repeat % 2 == 0 else reversed(list(enumerate(SWEEPS)))):
            folder = scratch / f"sweep{index}-{repeat}"
            command = [sys.executable, "-m", "cl_runner.cli", "-m", *launcher, "seed=0,1,2,3,4,5", *SWEEP_RUN,
                       f"device={args.device}", "train.progress=false", f"hydra.sweep.dir={folder}"]
            walls[name].append(timed(command, env)[0])
    return {name: {"median_s": round(statistics.median(w), 2), "walls_s": [round(s, 2) for s in w]}
            for name, w in walls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side per case (median reported)")
    parser.add_argument("--sweep-repeats", type=int, default=1, help="runs of each 6-run sweep")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep timings")
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("CL_RUNNER_DATA", REPO / "data")).absolute() / "mnist")
    parser.add_argument("--json", type=Path, default=None, help="output file (default bench/startup-<device>.json)")
    args, ignored = parser.parse_known_args()
    if args.device == "auto":
        args.device = "cpu"  # plain.py has no auto; say cuda to measure on a GPU
    env = {**os.environ, "CL_RUNNER_DATA": str(args.data_root.parent)}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cl-bench-") as scratch:
        results = [compare(case, args, env, Path(scratch)) for case in CASES]
        sweeps = None if args.no_sweep else sweep_times(args, env, Path(scratch))
    report = {"device": args.device, "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "python": platform.python_version(), "repeats": args.repeats, "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "cases": results, "sweeps_6_runs": sweeps}
    print(f"Whole processes, median of {args.repeats} (alternating), device {args.device}, "
          f"{os.cpu_count()} CPUs, load {load_before[0]:.2f} before / {os.getloadavg()[0]:.2f} after"
          + (f"; ignored {' '.join(ignored)}" if ignored else ""))
    for r in results:
        mark = "ok" if r["ratio"] <= r["target"] else "OVER"
        print(f"\n{r['case']}: cl-run {r['medians']['cl-run']['wall']:.2f} s, plain {r['medians']['plain']['wall']:.2f} s, "
              f"ratio {r['ratio']:.2f}x (target {r['target']:.2f}x: {mark})")
        print("  seconds    " + " ".join(f"{k:>10}" for k in (*PHASES, "exit")))
        for side in ("cl-run", "plain"):
            print(f"  {side:<10} " + " ".join(f"{r['medians'][side][k]:>10.2f}" for k in (*PHASES, "exit")))
    if sweeps:
        print(f"\n6-run sweep (seeds 0-5, {' '.join(SWEEP_RUN)}), wall seconds: "
              + ", ".join(f"{name} {s['median_s']:.1f}" for name, s in sweeps.items()))
    out = args.json or HERE / f"startup-{args.device}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
