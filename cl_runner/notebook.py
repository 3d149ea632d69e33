"""`make notebook`: run the teaching notebook's experiments and compare them in one table.

    python -m cl_runner.notebook [EXPERIMENT ...] [-- OVERRIDE ...]

Each experiment is a preset in conf/experiment/; all run in this one process through the
Python API (`cl_runner.api.sweep`, so a GPU run is not dominated by interpreter start-up),
each into its own folder outputs/notebook/<date>_<time>/<experiment>/, and the comparison is
written to notebook.md there and printed. Extra overrides after `--` apply to every
experiment; like a sweep's, one is refused only when no experiment reads it. Each row says
what ran as the run's saved config says it (`train.epochs=2` reads "2 epochs per task").
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from . import api
from .errors import UserError
from .result import Result

DEFAULT_EXPERIMENTS = ["naive", "replay10", "replay1", "scratch", "ewc", "ewc_replay"]


def table(results: list[Result]) -> str:
    """The comparison as a Markdown table: one row per experiment, its test accuracy per task."""
    names = next((r.summary["tasks"] for r in results if r.summary.get("tasks")), [])
    lines = [
        "| experiment | what ran | " + " | ".join(f"test acc task {j} ({n})" for j, n in enumerate(names))
        + " | mean | forgetting | training s | output folder |",
        "|---|---|" + "---|" * len(names) + "---|---|---|---|",
    ]
    for result in results:
        summary = result.summary
        acc = summary.get("final_test_acc") or []
        cells = [f"{a:.3f}" for a in acc] + ["–"] * (len(names) - len(acc))
        mean = summary.get("average_accuracy")
        forgetting = summary.get("forgetting")
        lines.append(
            f"| {result.folder.name} | {result.what() or result.status} | {' | '.join(cells)} | "
            f"{'–' if mean is None else f'{mean:.3f}'} | {'–' if forgetting is None else f'{forgetting:.3f}'} | "
            f"{sum(summary.get('task_seconds') or []):.1f} | {result.folder} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    experiments, overrides = argv[:split] or DEFAULT_EXPERIMENTS, argv[split + 1 :]
    started = time.perf_counter()
    base = Path("outputs") / "notebook" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:  # every experiment is checked before any trains
        results = api.sweep({name: [f"experiment={name}", *overrides] for name in experiments}, folder=base)
    except UserError as err:
        sys.exit(f"cl-run notebook: error: {err}")
    report = table(results)
    total = time.perf_counter() - started
    text = f"# Notebook experiments\n\n{report}\n\nTotal wall time in this process: {total:.1f} s.\n"
    (base / "notebook.md").write_text(text)
    print(f"\n{report}\n\nTotal wall time {total:.1f} s; table saved to {base / 'notebook.md'}")


if __name__ == "__main__":
    main()
