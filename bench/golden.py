"""The refactor guard: short runs covering every strategy and scenario, and their outputs.

    python bench/golden.py save  FOLDER     # run the set, keep each run's metrics.csv and accuracy_matrix.csv
    python bench/golden.py check FOLDER     # run the set again and compare byte for byte with FOLDER

A reshaping of the code must keep every file identical on the machine that saved them (CPUs
round differently, so take "before" and "after" on one machine). Each run is its own cl-run
process with one intra-op thread (OMP_NUM_THREADS=1), two at a time. The data comes from
$CL_RUNNER_DATA (make data).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

STRATEGIES = ["naive", "joint", "cumulative", "replay", "ewc", "ewc_replay", "si", "lwf", "agem", "der", "derpp",
              "icarl", "gdumb", "mas", "rwalk"]
COMMON = ["device=cpu", "train.progress=false"]
PROTOCOL = ["experiment=split_mnist_protocol", "train.iterations=25", "train.eval_every=25"]


def cases() -> dict[str, list[str]]:
    runs = {f"notebook-{name}": [f"experiment={name}", "train.epochs=2"]
            for name in ["naive", "replay10", "replay1", "scratch", "ewc", "ewc_replay"]}
    for scenario in ["class", "task", "domain"]:
        for strategy in STRATEGIES:
            runs[f"protocol-{scenario}-{strategy}"] = PROTOCOL + [f"scenario={scenario}", f"strategy={strategy}"]
    for strategy in STRATEGIES:
        runs[f"permuted-{strategy}"] = ["dataset=permuted_mnist", "train.epochs=1", "scenario=domain",
                                        f"strategy={strategy}", "train.batch_size=512"]
    runs["rotated-naive"] = ["dataset=rotated_mnist", "train.epochs=1", "scenario=domain"]
    runs["replay-share-0.5"] = ["strategy=replay", "replay.share=0.5", "train.epochs=2"]
    runs["ewc-online"] = ["strategy=ewc", "ewc.mode=online", "train.epochs=2", "model=mlp256"]
    runs["ewc-kept-optimizer"] = ["strategy=ewc", "train.reset_optimizer=false", "train.epochs=[1,3]"]
    runs["agem-class-balanced"] = PROTOCOL + ["strategy=agem", "agem.policy=class_balanced"]
    runs["der-small-memory"] = PROTOCOL + ["strategy=der", "der.memory_size=50"]
    # The BatchNorm models on the two-task split, a few steps each: evaluating them is what costs.
    runs["cnn-ewc"] = ["model=cnn", "strategy=ewc", "train.iterations=5", "train.batch_size=64"]
    runs["resnet-derpp"] = ["model=resnet18", "strategy=derpp", "train.iterations=3", "train.batch_size=32",
                            "der.memory_size=100", "der.batch_size=32"]
    return runs


def run_one(name: str, overrides: list[str], out: Path) -> tuple[str, int, str]:
    folder = out / name
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "cl_runner.cli", *COMMON, *overrides, f"hydra.run.dir={folder}"],
                          capture_output=True, text=True, env=env)
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return name, proc.returncode, lines[-1] if lines else ""


def run_all(out: Path, only: list[str] | None) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    codes = {}
    chosen = {name: overrides for name, overrides in cases().items() if not only or name in only}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, code, last in pool.map(lambda item: run_one(*item, out), chosen.items()):
            codes[name] = code
            print(f"{name:32s} exit {code}" + (f"  {last}" if code else ""), flush=True)
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "check"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", nargs="*", help="run only these cases (names as printed)")
    args = parser.parse_args()
    if args.action == "save":
        run_all(args.folder, args.only)
        return 0
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        fresh = Path(tmp)
        codes = run_all(fresh, args.only)
        differ = 0
        for name in codes:
            for file in ["metrics.csv", "accuracy_matrix.csv"]:
                saved, now = args.folder / name / file, fresh / name / file
                if saved.exists() != now.exists() or (saved.exists() and not filecmp.cmp(saved, now, shallow=False)):
                    differ += 1
                    print(f"DIFFERS {name}/{file} (exit {codes[name]})")
        print(f"{len(codes)} runs, {differ} files differ")
        return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
