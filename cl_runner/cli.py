"""`cl-run`: the Hydra command line around `cl_runner.run.run`.

`main()` registers the config schema, checks the whole command line first (`precheck`: a
mistake ends in one line and exit code 2 before anything runs), then hands over to Hydra,
whose task function `hydra_main` runs one experiment and prints a one-line summary.
Exit codes: 0 done, 2 bad config, 3 bad or missing data, 4 the run failed (diverged),
130 interrupted.
"""

from __future__ import annotations

import logging
import math
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import config
from .errors import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, UserError
from .precheck import precheck

# `cl_runner.run` (pandas, matplotlib, the training code) is imported in `hydra_main`, after the
# precheck, so that a bad command line fails without paying for those imports.

log = logging.getLogger("cl_runner")


@hydra.main(version_base="1.3", config_path=str(config.CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """Hydra's task function: run, report one line, return the mean final accuracy (for sweepers)."""
    from .run import Diverged, Interrupted, run

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = hydra_cfg.runtime.output_dir
    results_dir = cfg.resume or output_dir  # a resumed run goes on writing in its own folder
    try:
        summary = run(cfg, output_dir)
    except UserError as err:
        print(f"cl-run: error: {err}", file=sys.stderr)
        if multirun:  # one bad run must not end the sweep; it is listed as failed by cl-report
            return math.nan
        sys.exit(err.exit_code)
    except Diverged as err:
        print(f"cl-run: run failed: {err} (rows so far kept in {results_dir})", file=sys.stderr)
        if multirun:
            return math.nan
        sys.exit(EXIT_FAILED)
    except (KeyboardInterrupt, Interrupted):
        print(f"cl-run: interrupted; finished epochs kept in {results_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    accs = " ".join(f"{a:.3f}" for a in summary["final_test_acc"])
    forgetting = summary.get("forgetting")
    print(
        f"cl-run: {summary['strategy']} done: final test acc per task [{accs}], mean {summary['average_accuracy']:.3f}"
        + (f", forgetting {forgetting:.3f}" if forgetting is not None else "")
        + f"; results in {summary['output_dir']}"
    )
    return float(summary["average_accuracy"])


def main() -> None:
    config.register()
    try:
        precheck(sys.argv[1:])
    except UserError as err:
        print(f"cl-run: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code if isinstance(err, ConfigError) else EXIT_CONFIG)
    hydra_main()


if __name__ == "__main__":
    main()
