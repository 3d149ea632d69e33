"""`make notebook`: run the teaching notebook's experiments and compare them in one table.

    python -m cl_runner.notebook [EXPERIMENT ...] [-- OVERRIDE ...]

Each experiment is a preset in conf/experiment/; all run in this one process (so a GPU
run is not dominated by interpreter start-up), each into its own folder under
outputs/notebook/<date>_<time>/, and the comparison is written to notebook.md there and
printed. Extra Hydra-style overrides after `--` apply to every experiment.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir

from . import config
from .config import CONF_DIR
from .errors import UserError
from .run import run

DEFAULT_EXPERIMENTS = ["naive", "replay10", "replay1", "scratch", "ewc", "ewc_replay"]
DESCRIPTIONS = {
    "naive": "naive, mlp64",
    "replay10": "replay 10% of task 0, mlp64",
    "replay1": "replay 1% of task 0, mlp64",
    "scratch": "from scratch on task 1 + 1% of task 0, mlp64",
    "ewc": "EWC alpha 1e8, mlp256",
    "ewc_replay": "EWC alpha 1e8 + replay 10%, 100 epochs on task 1, mlp256",
}


def table(results: list[tuple[str, dict, float]]) -> str:
    lines = [
        "| experiment | what | test acc task 0 (0-4) | test acc task 1 (5-9) | mean | seconds | output folder |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, summary, seconds in results:
        acc = summary["final_test_acc"]
        lines.append(
            f"| {name} | {DESCRIPTIONS.get(name, name)} | {acc[0]:.3f} | {acc[1]:.3f} | "
            f"{summary['average_accuracy']:.3f} | {seconds:.1f} | {summary['output_dir']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    experiments, overrides = argv[:split] or DEFAULT_EXPERIMENTS, argv[split + 1 :]
    started = time.perf_counter()
    base = Path("outputs") / "notebook" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    config.register()
    cfgs = {}
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            for name in experiments:  # compose and check all before training any
                cfgs[name] = compose("config", overrides=[f"experiment={name}", *overrides])
                config.validate(cfgs[name])
    except UserError as err:
        sys.exit(f"cl-run notebook: error: {err}")
    except Exception as err:  # noqa: BLE001 - Hydra's composition errors, as one line
        sys.exit(f"cl-run notebook: error: {' '.join(str(err).split())}")
    results = []
    for name, cfg in cfgs.items():
        print(f"== {name}: {DESCRIPTIONS.get(name, name)}", flush=True)
        t0 = time.perf_counter()
        summary = run(cfg, base / name)
        results.append((name, summary, time.perf_counter() - t0))
    report = table(results)
    total = time.perf_counter() - started
    text = f"# Notebook experiments\n\n{report}\n\nTotal wall time in this process: {total:.1f} s.\n"
    (base / "notebook.md").write_text(text)
    print(f"\n{report}\n\nTotal wall time {total:.1f} s; table saved to {base / 'notebook.md'}")


if __name__ == "__main__":
    main()
