"""Check a `cl-run` command line before Hydra starts: every configuration it asks for.

`precheck(argv)` composes the config for every value on the command line (each sweep value
too) and validates it, so a typo fails in about a second with one line naming the key and
what is allowed, and exit code 2, instead of a traceback or a half-finished sweep. Hydra's
multi-line composition errors are turned into that one line here.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from . import checkpoint, config
from .errors import ConfigError, UserError

# Flags of Hydra's own command line that take a value (so that value is not an override).
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--cfg", "-c", "--package", "-p", "--experimental-rerun"}
_NO_PRECHECK = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
                "--experimental-rerun"}


def split_argv(argv: list[str]) -> tuple[str, list[str]]:
    """(config name, overrides) of a cl-run command line."""
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


def _unknown_key(full_key: str, cfg: DictConfig | None = None, overrides: list[str] = ()) -> str:
    """The message for a key the schema lacks, listing the keys there are (of the chosen model,
    for `model.*`: composed without the offending override) and the closest one."""
    parent, _, leaf = full_key.rpartition(".")
    if cfg is None and overrides:
        others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != full_key]
        try:
            cfg = compose("config", overrides=others)
        except Exception:  # noqa: BLE001 - only a better list of keys is lost
            cfg = None
    keys = _keys_under(cfg if cfg is not None else OmegaConf.structured(config.schema()), parent)
    close = difflib.get_close_matches(leaf, keys.split(", "), n=1)
    where = f"under {parent}" if parent else "at the top level"
    hint = f" (did you mean {(parent + '.' if parent else '') + close[0]!r}?)" if close else ""
    return f"invalid config: unknown key {full_key!r}{hint}: keys {where}: {keys}"


def _check_schema(cfg: DictConfig, schema: DictConfig, overrides: list[str], prefix: str = "") -> None:
    """Keys added with `+key=...` or removed with `~key` escape the struct check of composition."""
    if OmegaConf.get_type(schema) in (dict, None):  # a free-form dict field: any key goes
        return
    for key in cfg.keys():
        if key not in schema:
            raise UserError(_unknown_key(prefix + str(key), cfg if not prefix else None, overrides))
    for key in schema.keys():
        if key not in cfg:
            raise ConfigError(prefix + str(key), None, "this key is required (it was removed with ~)")
        sub, sub_schema = cfg._get_node(key), schema._get_node(key)
        if isinstance(sub, DictConfig) and isinstance(sub_schema, DictConfig) and not sub._is_none():
            _check_schema(sub, sub_schema, overrides, f"{prefix}{key}.")


def as_user_error(err: Exception, overrides: list[str] = ()) -> UserError:
    """A composition error as a UserError of one line (a ConfigError where the key is known)."""
    cause = err.__cause__ or err
    full_key = getattr(cause, "full_key", None)
    choice = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]$", str(cause).splitlines()[0] if str(cause) else "")
    if isinstance(cause, OmegaConfBaseException) and choice and full_key:
        # A closed choice (an Enum): the message every other check gives.
        return ConfigError(full_key, choice.group(1), f"allowed: {choice.group(2)}")
    return UserError(one_line(err, overrides))


def one_line(err: Exception, overrides: list[str] = ()) -> str:
    """Hydra's and OmegaConf's multi-line composition errors, as one line naming the key and
    the choices."""
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
        return _unknown_key(getattr(cause, "full_key", "") or "", overrides=overrides)
    if isinstance(cause, OmegaConfBaseException):
        full_key = getattr(cause, "full_key", None)
        first = str(cause).splitlines()[0]
        return f"invalid config: {full_key}: {first}" if full_key else f"invalid config: {first}"
    return "invalid config: " + " ".join(line.strip() for line in text.splitlines() if line.strip())


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
    """Compose and validate every configuration the command line asks for; raise UserError."""
    if any(a.split("=")[0] in _NO_PRECHECK for a in argv):
        return
    config_name, overrides = split_argv(argv)
    try:
        variants = _variants(overrides)
    except HydraException as err:
        raise ConfigError("command line", " ".join(overrides), str(err).splitlines()[0]) from None
    multirun = any(a in ("-m", "--multirun") for a in argv) or "hydra.mode=MULTIRUN" in overrides
    if len(variants) > 1 and not multirun:
        sweep = next(o for o, ov in zip(overrides, OverridesParser.create().parse_overrides(overrides)) if ov.is_sweep_override())
        key, _, value = sweep.partition("=")
        raise ConfigError(key, value, f"a sweep needs -m (--multirun); for a list write {key}=[{value}]")
    with initialize_config_dir(str(config.CONF_DIR), version_base="1.3"):
        for variant in variants:
            try:
                cfg = compose(config_name, overrides=variant)
            except (HydraException, OmegaConfBaseException) as err:
                raise as_user_error(err, variant) from None
            try:
                _check_schema(cfg, config.typed({"model": {"name": cfg.model.get("name")}}), variant)
                OmegaConf.to_container(cfg, resolve=True)  # e.g. ${oc.env:VAR} with VAR unset
                config.validate(cfg)
            except OmegaConfBaseException as err:
                raise as_user_error(err, variant) from None
            if cfg.resume is not None:
                checkpoint.resumable(cfg.resume)
        _check_output_dir(config_name, variants[0], multirun)
