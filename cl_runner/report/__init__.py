"""`cl-report`: compare the runs of a sweep in one table and a few plots.

    cl-report PATH [PATH ...] [--out DIR]

PATH is a multirun folder (what `cl-run -m ...` writes: multirun.yaml and one folder per
job), a single run folder, or any folder holding run folders (searched recursively, so
`cl-report outputs/` works too). For every run it reads config.yaml, summary.json and
metrics.csv, and computes the accuracy matrix and its summary with `cl_runner.metrics` --
the same code a run uses for its own summary.json -- and checks that the two agree.

Runs are grouped into settings by the swept config keys and aggregated over seeds
(mean and sample standard deviation). Written into the folder given (or the common
parent of several PATHs, or --out DIR):

- report.md     the table, the runs that failed or are incomplete or inconsistent (never
                silently dropped), and notes such as jobs missing from a sweep
- report.html   the same as one self-contained page, figures embedded
- report.csv    one row per setting, full precision
- runs.csv      one row per run (completed or not) with its own numbers and status
- final_acc_vs_<key>.png, val_curves.png   the figures

The package, top to bottom: `runs` (finding and reading run folders, with the strict
`metrics_csv` reader), `settings` (swept keys, aggregation), `notes`, `content` (what the
report says), `figures`, `markdown` and `html` (writing), `build` (`report`), `cli` (`main`).
"""

from .build import report
from .cli import EXIT_BAD_PATH, main
from .runs import Run, find_runs, load_run
from .settings import aggregate, swept_keys

__all__ = ["EXIT_BAD_PATH", "Run", "aggregate", "find_runs", "load_run", "main", "report", "swept_keys"]
