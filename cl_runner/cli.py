"""`cl-run`: the Hydra command line around `cl_runner.run.run`.

Before Hydra starts, `precheck` composes the config for every value on the command line
(each sweep value too) and validates it, so a typo fails in well under a second with one
line naming the key and what is allowed, and exit code 2, instead of a traceback or a
half-finished sweep. Exit codes: 0 done, 2 bad config, 3 bad or missing data, 4 the run
failed (diverged), 130 interrupted.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from . import config
from .errors import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, UserError
from .run import Diverged, Interrupted, run

log = logging.getLogger("cl_runner")


def _conf_dir() -> Path:
    """conf/ beside the package in a source checkout, or shipped inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"cl-runner's conf/ folder is missing (looked beside and inside {here})")


CONF_DIR = _conf_dir()
config.register()

# Flags of Hydra's own command line that take a value (so that value is not an override).
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--cfg", "-c", "--package", "-p", "--experimental-rerun"}
_NO_PRECHECK = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
                "--experimental-rerun"}


def _split_argv(argv: list[str]) -> tuple[str, list[str]]:
    config_name, overrides, skip = "config", [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in _FLAGS_WITH_VALUE:
            skip = True
            if arg in ("--config-name", "-cn") and i + 1 < len(argv):
                config_name = argv[i + 1]
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            overrides.append(arg)
    return config_name, overrides


def _variants(overrides: list[str]) -> list[list[str]]:
    """Override lists to compose: every sweep at its first value, then each other value once.
    Sweeps that cannot be listed (an optuna interval) are left to the sweeper."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for text, ov in zip(overrides, parsed):
        if not ov.is_sweep_override():
            choices.append([text])
            continue
        try:
            values = list(ov.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - interval/tag sweeps have no finite list of values
            continue
        prefix = text.split("=", 1)[0]
        choices.append([f"{prefix}={v}" for v in values])
    base = [c[0] for c in choices]
    variants = [base]
    for i, c in enumerate(choices):
        for value in c[1:]:
            variants.append(base[:i] + [value] + base[i + 1 :])
    return variants


def _keys_under(cfg: DictConfig, path: str) -> str:
    node = OmegaConf.select(cfg, path) if path else cfg
    return ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "none"


def _one_line(err: Exception, config_name: str, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors, as one line naming the key and the choices."""
    text = str(err)
    missing = re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", text)
    if isinstance(err, MissingConfigException) and missing:
        group, value = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        if not options:
            from hydra.core.global_hydra import GlobalHydra

            options = GlobalHydra.instance().config_loader().get_group_options(group)
        return f"invalid config: {group}={value!r}: allowed: {', '.join(options) or 'none found'}"
    cause = err.__cause__ or err
    if isinstance(cause, ConfigKeyError) and "not in struct" in str(cause):
        full_key = getattr(cause, "full_key", "") or ""
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            defaults = compose(config_name)
        where = f"under {parent}" if parent else "at the top level"
        return f"invalid config: unknown key {full_key!r}: keys {where}: {_keys_under(defaults, parent)}"
    if isinstance(cause, OmegaConfBaseException):
        full_key = getattr(cause, "full_key", None)
        first = str(cause).splitlines()[0]
        return f"invalid config: {full_key}: {first}" if full_key else f"invalid config: {first}"
    return "invalid config: " + " ".join(line.strip() for line in text.splitlines() if line.strip())


def precheck(argv: list[str]) -> None:
    """Compose and validate every configuration the command line asks for; raise ConfigError."""
    if any(a.split("=")[0] in _NO_PRECHECK for a in argv):
        return
    config_name, overrides = _split_argv(argv)
    try:
        variants = _variants(overrides)
    except HydraException as err:
        raise ConfigError("command line", " ".join(overrides), str(err).splitlines()[0]) from None
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for variant in variants:
            try:
                cfg = compose(config_name, overrides=variant)
            except (HydraException, OmegaConfBaseException) as err:
                raise UserError(_one_line(err, config_name, variant)) from None
            config.validate(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """Hydra's task function: run, report one line, return the mean final accuracy (for sweepers)."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = hydra_cfg.runtime.output_dir
    try:
        summary = run(cfg, output_dir)
    except UserError as err:
        print(f"cl-run: error: {err}", file=sys.stderr)
        if multirun:  # one bad run must not end the sweep; it is listed as failed by cl-report
            return math.nan
        sys.exit(err.exit_code)
    except Diverged as err:
        print(f"cl-run: run failed: {err} (rows so far kept in {output_dir})", file=sys.stderr)
        if multirun:
            return math.nan
        sys.exit(EXIT_FAILED)
    except (KeyboardInterrupt, Interrupted):
        print(f"cl-run: interrupted; finished epochs kept in {output_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    accs = " ".join(f"{a:.3f}" for a in summary["final_test_acc"])
    forgetting = summary.get("forgetting")
    print(
        f"cl-run: {cfg.strategy.name} done: final test acc per task [{accs}], mean {summary['average_accuracy']:.3f}"
        + (f", forgetting {forgetting:.3f}" if forgetting is not None else "")
        + f"; results in {summary['output_dir']}"
    )
    return float(summary["average_accuracy"])


def main() -> None:
    try:
        precheck(sys.argv[1:])
    except UserError as err:
        print(f"cl-run: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code if isinstance(err, ConfigError) else EXIT_CONFIG)
    hydra_main()


if __name__ == "__main__":
    main()
