"""`cl-run`: the Hydra command line around `cl_runner.run.run`.

Before Hydra starts, `precheck` composes the config for every value on the command line
(each sweep value too) and validates it, so a typo fails in well under a second with one
line naming the key and what is allowed, and exit code 2, instead of a traceback or a
half-finished sweep. Exit codes: 0 done, 2 bad config, 3 bad or missing data, 4 the run
failed (diverged), 130 interrupted.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from . import config
from .errors import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, UserError
# `cl_runner.run` (pandas, matplotlib, the training code) is imported in `hydra_main`, after the
# precheck, so that a bad command line fails without paying for those imports.

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


def _unknown_key(full_key: str) -> str:
    parent, _, leaf = full_key.rpartition(".")
    keys = _keys_under(OmegaConf.structured(config.Config), parent)
    close = difflib.get_close_matches(leaf, keys.split(", "), n=1)
    where = f"under {parent}" if parent else "at the top level"
    hint = f" (did you mean {(parent + '.' if parent else '') + close[0]!r}?)" if close else ""
    return f"invalid config: unknown key {full_key!r}{hint}: keys {where}: {keys}"


def _check_schema(cfg: DictConfig, schema: DictConfig, prefix: str = "") -> None:
    """Keys added with `+key=...` or removed with `~key` escape the struct check of composition."""
    if OmegaConf.get_type(schema) in (dict, None):  # a free-form dict field: any key goes
        return
    for key in cfg.keys():
        if key not in schema:
            raise UserError(_unknown_key(prefix + str(key)))
    for key in schema.keys():
        if key not in cfg:
            raise ConfigError(prefix + str(key), None, "this key is required (it was removed with ~)")
        sub, sub_schema = cfg._get_node(key), schema._get_node(key)
        if isinstance(sub, DictConfig) and isinstance(sub_schema, DictConfig) and not sub._is_none():
            _check_schema(sub, sub_schema, f"{prefix}{key}.")


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
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and re.search(r"Key '[^']*' (?:is )?not in", str(cause)):
        # `ewc.alhpa=1`: OmegaConf says "Key 'alhpa' not in 'EWCConfig'"; name the allowed keys.
        return _unknown_key(getattr(cause, "full_key", "") or "")
    if isinstance(cause, OmegaConfBaseException):
        full_key = getattr(cause, "full_key", None)
        first = str(cause).splitlines()[0]
        return f"invalid config: {full_key}: {first}" if full_key else f"invalid config: {first}"
    return "invalid config: " + " ".join(line.strip() for line in text.splitlines() if line.strip())


def _check_resume(folder: str) -> None:
    """`resume=PATH` must name the output folder of a run that finished at least one task."""
    path = Path(folder).expanduser()
    for name, why in (("config.yaml", "expected a cl-run output folder"),
                      ("checkpoint.pt", "the run finished no task, so there is nothing to resume; start it again")):
        if not (path / name).is_file():
            raise ConfigError("resume", folder, f"no {name} in {path}: {why}")


def _check_output_dir(config_name: str, overrides: list[str], multirun: bool) -> None:
    """Hydra creates the output folder before the run starts and fails with a traceback if it
    cannot; say so in one line instead. Nothing is created here (the name may hold ${now:...})."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = OmegaConf.select(compose(config_name, overrides=overrides, return_hydra_config=True), key)
    except Exception:  # noqa: BLE001 - an interpolation only Hydra's run can resolve: leave it to Hydra
        return
    if not folder:
        return
    existing = Path(folder).expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, folder, f"cannot create the output folder: {existing} is a file, not a folder")
    try:  # a real probe: os.access says yes to root even where the file system says no (/proc)
        os.rmdir(tempfile.mkdtemp(prefix=".cl-run-probe-", dir=existing))
    except OSError as err:
        raise ConfigError(key, folder, f"cannot create the output folder in {existing}: {err.strerror}") from None


def precheck(argv: list[str]) -> None:
    """Compose and validate every configuration the command line asks for; raise ConfigError."""
    if any(a.split("=")[0] in _NO_PRECHECK for a in argv):
        return
    config_name, overrides = _split_argv(argv)
    try:
        variants = _variants(overrides)
    except HydraException as err:
        raise ConfigError("command line", " ".join(overrides), str(err).splitlines()[0]) from None
    multirun = any(a in ("-m", "--multirun") for a in argv) or "hydra.mode=MULTIRUN" in overrides
    if len(variants) > 1 and not multirun:
        sweep = next(o for o, ov in zip(overrides, OverridesParser.create().parse_overrides(overrides)) if ov.is_sweep_override())
        key, _, value = sweep.partition("=")
        raise ConfigError(key, value, f"a sweep needs -m (--multirun); for a list write {key}=[{value}]")
    schema = OmegaConf.structured(config.Config)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for variant in variants:
            try:
                cfg = compose(config_name, overrides=variant)
            except (HydraException, OmegaConfBaseException) as err:
                raise UserError(_one_line(err, config_name, variant)) from None
            _check_schema(cfg, schema)
            try:
                OmegaConf.to_container(cfg, resolve=True)  # e.g. ${oc.env:VAR} with VAR unset
                config.validate(cfg)
            except OmegaConfBaseException as err:
                raise UserError(_one_line(err, config_name, variant)) from None
            if cfg.resume is not None:
                _check_resume(cfg.resume)
        _check_output_dir(config_name, variants[0], multirun)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
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
    # A resumed run trains the config saved in its folder, not the one composed today.
    strategy = OmegaConf.load(Path(cfg.resume) / "config.yaml").strategy.name if cfg.resume else cfg.strategy.name
    accs = " ".join(f"{a:.3f}" for a in summary["final_test_acc"])
    forgetting = summary.get("forgetting")
    print(
        f"cl-run: {strategy} done: final test acc per task [{accs}], mean {summary['average_accuracy']:.3f}"
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
