"""Check a `cl-run` command line before Hydra starts: every configuration it asks for.

`check(argv)` reads the command line as hydra.main would (`overrides.read_argv`), composes
the config for every value on it (each sweep value too) and validates it, so a typo fails in
about a second with one line naming the key and what is allowed, and exit code 2, instead of
a traceback or a half-finished sweep. Hydra's multi-line composition errors are turned into
that one line here. It also checks a `resume=` (`cl_runner.resume`: the folder, its saved
config, the other overrides), refuses a sweep without -m, and resolves the folder the command
will write into exactly as Hydra will (`job_folders`: a sweep's job folders too, each its
own), for the CLI to claim before Hydra writes anything -- or None when nothing will run
(`--cfg`, `--help`, ...).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from . import config, hydra_app, job_folders, overrides, resume, rundir, usage
from .errors import ConfigError, UserError
from .models import MODELS

# What Hydra's composition raises for a bad command line; OmegaConf raises its own AssertionError
# or AttributeError for a key added under a null mapping (`+hydra.sweeper.params.seed=1`).
_COMPOSE_ERRORS = (HydraException, OmegaConfBaseException, ValueError, TypeError, OSError, AssertionError, AttributeError)


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
            # The keys there are: the schema's (cfg holds the unknown key too), or at a deeper level
            # those of the config composed without it (the chosen model's, for `model.*`).
            raise UserError(_unknown_key(prefix + str(key), schema if not prefix else None, overrides))
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
    if isinstance(err, (AssertionError, AttributeError)) and not isinstance(err, OmegaConfBaseException):
        suspects = [o for o in overrides if o.startswith("+") or "={" in o] or list(overrides)
        return UserError(f"invalid config: {' '.join(suspects)}: sets keys under a value that is null, "
                         "which Hydra's overrides cannot fill (set it in a config file, e.g. an experiment)")
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


def _check_resume(cfg: DictConfig, variant: list[str], hydra_cfg: DictConfig, multirun: bool) -> None:
    """A resumed run writes into its own folder: an output folder set beside it must be that one."""
    if multirun:
        raise ConfigError("resume", cfg.resume, "resume one run at a time (without -m)")
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
    """What the precheck found: the command line, the folder it writes into (None when nothing
    runs), for one plain run its config with Hydra's node (`hydra_app.run` runs it without
    composing it again), and the overrides hydra.main would add last (`hydra.mode`)."""

    target: rundir.Target | None
    cmd: overrides.CommandLine | None = None
    composed: DictConfig | None = None
    extra: tuple[str, ...] = ()

    @property
    def multirun(self) -> bool:
        return self.target is not None and self.target.sweep


def precheck(argv: list[str]) -> rundir.Target | None:
    """Compose and validate every configuration the command line asks for; raise UserError.
    Return the output folder it will write into (None when nothing runs)."""
    return check(argv).target


def check(argv: list[str]) -> Checked:
    """`precheck`, keeping what the run needs (see Checked)."""
    cmd = overrides.read_argv(argv, _setting_keys)
    if cmd.prints:  # hydra.main runs these, reading sys.argv as typed
        overrides.hydra_reads_as_given(argv, cmd)
        if not cmd.args.cfg:  # help, information: nothing to compose
            return Checked(None, cmd)
    given = cmd.overrides
    with hydra_app.initialized(cmd) as app:
        loader = app.config_loader
        variants = list(overrides.variants(given, loader))
        for i, variant in enumerate(variants):
            cfg, hydra_cfg = _compose_checked(cmd.config_name, variant)
            if i == 0:
                first, mode = (cfg, hydra_cfg), hydra_cfg.hydra.mode
                multirun = bool(cmd.args.multirun) or mode == RunMode.MULTIRUN
                _check_sweeps(given, loader, multirun)
            if cfg.resume is not None:
                _check_resume(cfg, variant, hydra_cfg, multirun)
        if cmd.prints:
            return Checked(None, cmd)
        usage.check(first[0], variants, lambda variant: _compose_checked(cmd.config_name, variant)[0])
        cfg, hydra_cfg = first
        if not multirun:
            composed = hydra_app.with_run_mode(hydra_cfg)
            extra = () if mode is not None else (f"hydra.mode={RunMode.RUN.name}",)
            if cfg.resume is None:
                return Checked(job_folders.run_target(composed, bool(cfg.overwrite)), cmd, composed, extra)
            folder = str(rundir.absolute(cfg.resume))
            job_folders.check_hydra_keys(composed, folder, sweep=False)
            return Checked(rundir.Target("resume", folder, resume=True), cmd, composed, extra)
        extra = () if mode == RunMode.MULTIRUN else (f"hydra.mode={RunMode.MULTIRUN.name}",)
        try:  # the sweep's own config, as Hydra's multirun composes it
            master = loader.load_configuration(cmd.config_name, given + list(extra), run_mode=RunMode.MULTIRUN)
        except _COMPOSE_ERRORS as err:
            raise as_user_error(err, given) from None
        target = job_folders.sweep_target(master, bool(cfg.overwrite))
        with_folder = hydra_app.with_hydra_overrides(master, [overrides.quoted("hydra.sweep.dir", target.folder)])
        job_folders.check_jobs(with_folder, target.folder, loader)
    return Checked(target, cmd, extra=extra)


def _check_sweeps(given: list[str], loader, multirun: bool) -> None:
    """A sweep (`a,b`, `range()`, `interval()`, `glob()`, ...) runs only with -m: refuse one in a
    plain run, which would run its first value, or none."""
    if multirun:
        return
    for text, override in zip(given, overrides.parse(given, loader)):
        if override.is_sweep_override():
            key, _, value = text.partition("=")
            as_list = f"; for a list write {key}=[{value}]" if override.value_type == ValueType.SIMPLE_CHOICE_SWEEP else ""
            raise ConfigError(key, value, f"a sweep needs -m (--multirun){as_list}")


def _setting_keys() -> list[str]:
    """Every key of the config, the models' own included (to name the one a mistyped flag means)."""
    def walk(node: dict, prefix: str):
        for key, value in node.items():
            yield from walk(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]

    nodes = [OmegaConf.structured(config.schema())] + [OmegaConf.create({"model": OmegaConf.structured(e.config)})
                                                       for e in MODELS.entries.values()]
    return sorted({key for node in nodes for key in walk(OmegaConf.to_container(node, resolve=False), "")})
