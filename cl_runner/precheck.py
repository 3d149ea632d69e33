"""Check a `cl-run` command line before Hydra starts: every configuration it asks for.

`precheck(argv)` composes the config for every value on the command line (each sweep value
too) and validates it, so a typo fails in about a second with one line naming the key and
what is allowed, and exit code 2, instead of a traceback or a half-finished sweep. Hydra's
multi-line composition errors are turned into that one line here. It also checks a
`resume=` (`cl_runner.resume`: the folder, its saved config, the other overrides) and
returns the output folder the command will write into (`rundir.Target`), resolved as
Hydra would, for the CLI to claim before Hydra starts -- or None when nothing will run
(`--cfg`, `--help`, ...) or only Hydra's run can name the folder.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from . import config, overrides, resume, rundir, usage
from .errors import ConfigError, UserError

_NO_PRECHECK = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
                "--experimental-rerun"}
_PRINT_ONLY = {"--cfg", "-c"}  # print the config; nothing runs, no folder is made
_COMPOSE_ERRORS = (HydraException, OmegaConfBaseException, ValueError, TypeError, OSError)


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


# Configs that Hydra plugins bring (`hydra/launcher=slurm` and `ray_cluster` build on the
# first two), by the extra of pyproject.toml that installs the plugin.
PLUGIN_EXTRAS = {"hydra/launcher/submitit_slurm": "slurm", "hydra/launcher/submitit_local": "slurm",
                 "hydra/launcher/ray": "ray", "hydra/launcher/joblib": "joblib", "hydra/sweeper/optuna": "optuna"}


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
        extra = PLUGIN_EXTRAS.get(f"{group}/{value}")
        if extra is not None:  # a Hydra plugin's config, missing because the plugin is
            return (f"invalid config: {group}={value!r} needs the {extra!r} extra, not installed here: "
                    f"pip install 'cl-runner[{extra}]' (from a clone: pip install -e '.[{extra}]')")
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        if not options:
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


def _output_target(cfg: DictConfig, hydra_cfg: DictConfig, multirun: bool) -> rundir.Target | None:
    """The folder this command line will write into, resolved as Hydra would resolve it."""
    if cfg.resume is not None:
        if multirun:
            raise ConfigError("resume", cfg.resume, "resume one run at a time (without -m)")
        return rundir.Target("resume", str(rundir.absolute(cfg.resume)), resume=True)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        raw = OmegaConf.to_container(hydra_cfg.hydra.sweep if multirun else hydra_cfg.hydra.run, resolve=False)["dir"]
        folder = OmegaConf.select(hydra_cfg, key)
    except Exception:  # noqa: BLE001 - an interpolation only Hydra's run can resolve: the run claims it
        return None
    if folder is None or not str(folder).strip():
        raise ConfigError(key, folder, "an empty folder name would put the results in the current folder; "
                                       f"name a folder, e.g. {key}=outputs/my-run")
    return rundir.Target(key, str(folder), unique="${now:" in str(raw), overwrite=bool(cfg.overwrite), sweep=multirun)


def _check_resume(cfg: DictConfig, variant: list[str], hydra_cfg: DictConfig) -> None:
    """A resumed run writes into its own folder: an output folder set beside it must be that one."""
    resume.prepare(cfg, variant)
    if any(o.lstrip("+").startswith("hydra.run.dir=") for o in variant):
        folder = OmegaConf.select(hydra_cfg, "hydra.run.dir")
        if rundir.absolute(folder) != rundir.absolute(cfg.resume):
            raise ConfigError("hydra.run.dir", folder, f"a resumed run goes on writing in its own folder "
                                                       f"{rundir.absolute(cfg.resume)}: leave hydra.run.dir out")


def _compose_checked(config_name: str, variant: list[str]) -> tuple[DictConfig, DictConfig]:
    """(the config, with Hydra's node) of one list of overrides, composed and validated;
    UserError if it is bad. One composition serves both (it is most of the precheck's time)."""
    overrides.check_groups(variant, GlobalHydra.instance().config_loader().get_group_options)
    try:
        hydra_cfg = compose(config_name, overrides=variant, return_hydra_config=True)
    except _COMPOSE_ERRORS as err:
        raise as_user_error(err, variant) from None
    cfg = hydra_cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        _check_schema(cfg, config.typed({"model": {"name": cfg.model.get("name")}}), variant)
        resolved = OmegaConf.to_container(cfg, resolve=True)  # e.g. ${oc.env:VAR} with VAR unset
        _check_resolved_types(cfg, resolved)
        config.validate(cfg)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise as_user_error(err, variant) from None
    return cfg, hydra_cfg


def _check_resolved_types(cfg: DictConfig, resolved: dict) -> None:
    """An interpolation of the wrong type (`joint.task_shares=${train.lr}`) passes composition,
    which types the text, not the value: type the resolved values too."""
    try:
        config.typed(resolved)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        if not key:
            raise
        raw = OmegaConf.to_container(cfg, resolve=False)
        for part in key.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else raw
        value = OmegaConf.select(cfg, key)
        raise ConfigError(key, raw, f"resolves to {value!r}, which this key cannot take "
                                    f"({str(err).splitlines()[0]})") from None


@dataclass(frozen=True)
class Checked:
    """What the precheck found: the folder the command writes into (None when nothing runs, or
    only Hydra's run can name it), and for one plain run (no -m, no Hydra flag) its config,
    Hydra's node included, for `cl_runner.single_run` to run without composing it again."""

    target: rundir.Target | None
    composed: DictConfig | None = None


def precheck(argv: list[str]) -> rundir.Target | None:
    """Compose and validate every configuration the command line asks for; raise UserError.
    Return the output folder it will write into (None when nothing runs, or Hydra must name it)."""
    return check(argv).target


def check(argv: list[str]) -> Checked:
    """`precheck`, keeping the composed config of a plain run (see Checked)."""
    if any(a.split("=")[0] in _NO_PRECHECK for a in argv):
        return Checked(None)
    config_name, given = overrides.split_argv(argv)
    variants = overrides.variants(given)
    multirun = any(a in ("-m", "--multirun") for a in argv) or "hydra.mode=MULTIRUN" in given
    if len(variants) > 1 and not multirun:
        sweep = next(o for o, ov in zip(given, overrides.parse(given)) if ov.is_sweep_override())
        key, _, value = sweep.partition("=")
        raise ConfigError(key, value, f"a sweep needs -m (--multirun); for a list write {key}=[{value}]")
    with initialize_config_dir(str(config.CONF_DIR), version_base="1.3"):
        for i, variant in enumerate(variants):
            cfg, hydra_cfg = _compose_checked(config_name, variant)
            if cfg.resume is not None:
                _check_resume(cfg, variant, hydra_cfg)
            if i == 0:
                first = cfg, hydra_cfg
        if any(a.split("=")[0] in _PRINT_ONLY for a in argv):
            return Checked(None)
        usage.check(first[0], variants, lambda variant: _compose_checked(config_name, variant)[0])
        target = _output_target(*first, multirun)
    plain = not multirun and not any(a.startswith("-") for a in argv)
    return Checked(target, first[1] if plain and target is not None else None)
