"""The `cl-report` command line: arguments, one-line errors and exit codes.

Exit codes: 0 report written (even when some runs failed: they are in the report),
2 a bad PATH or --out, 5 the report could not be written (a full disk, a folder made
read-only: each file is written whole or not at all, so an earlier report's files stay as
they were or are replaced whole). The last lines name the strategy and warn of a swept key whose
values changed nothing (report.md's notes say the same).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import WriteError
from .build import report
from .content import strategy_names
from .notes import unchanged_notes
from .runs import find_runs
from .settings import swept_keys

EXIT_BAD_PATH = 2
EXIT_WRITE = 5


class ReportError(Exception):
    """A bad command line (PATH or --out): one line, exit 2."""


def _default_out(paths: list[Path]) -> Path:
    if len(paths) == 1:
        return paths[0]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    if common == Path(common.anchor):
        raise ReportError("the PATHs share no folder to write the report into: give --out DIR")
    return common


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cl-report",
        description="Compare cl-run runs: group them by the swept config keys, aggregate over seeds, "
        "write report.md, report.html, report.csv, runs.csv and plots.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path,
                        help="a multirun folder, a run folder, or a folder holding run folders")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: the PATH, or the common parent of several)")
    args = parser.parse_args(argv)
    try:
        paths = [p.resolve() for p in args.paths]
        for given, path in zip(args.paths, paths):
            if not path.is_dir():
                raise ReportError(f"{given}: {'not a folder' if path.exists() else 'no such folder'}")
            if not find_runs(path):
                raise ReportError(f"{given}: no cl-run output folders in it (none has summary.json, "
                                  "metrics.csv or .hydra/config.yaml)")
        out = args.out.resolve() if args.out else _default_out(paths)
        try:
            table, runs = report(paths, out)
        except WriteError as err:
            print(f"cl-report: error: the report could not be written: {err.path}: {err.reason}", file=sys.stderr)
            sys.exit(EXIT_WRITE)
        except OSError as err:  # --out not a folder, or one that cannot be made
            raise ReportError(f"cannot write the report into {out} ({err.strerror or err})") from None
    except ReportError as err:
        print(f"cl-report: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_PATH)
    bad = sum(1 for r in runs if not r.ok)
    names = strategy_names(runs)
    named = f" (strateg{'y' if len(names) == 1 else 'ies'} {', '.join(names)})" if names else ""
    print(f"cl-report: {len(runs)} runs ({len(runs) - bad} completed, {bad} failed or incomplete) "
          f"in {len(table)} settings{named}; report in {out / 'report.md'} and report.html")
    for note in unchanged_notes(runs, swept_keys(runs)):  # a sweep that compared nothing must not pass unseen
        print(f"cl-report: warning: {note.replace('`', '')}")
