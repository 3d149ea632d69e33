"""Where a command line's jobs will write, resolved as Hydra resolves it, checked before anything runs.

Hydra names a run's folder by `hydra.run.dir`, a sweep's by `hydra.sweep.dir` and each of its
jobs' by `hydra.sweep.subdir` inside it, resolving them in `run_job` (hydra/core/utils.py)
with HydraConfig set to the job's config, so that `${hydra:runtime.choices.dataset}` resolves
there. `run_target` and `sweep_target` resolve them the same way, so that `rundir` claims the
folder before Hydra writes anything; cl-run then hands Hydra the claimed folder itself.

`check_jobs` resolves every job's subdir as the launchers do (the job's config composed with
`load_sweep_config`, `hydra.job.id` and `hydra.job.num` set) and refuses a sweep whose jobs
would share a folder or write outside the sweep folder, before any job starts: so every job
writes a folder of its own inside the one the sweep claimed. A sweeper that picks its jobs as
it goes (Optuna) has no list of them: its job folders must then differ by job number.

`check_hydra_keys` refuses, in one line, what Hydra would fail on later with a traceback or
use against cl-run's promises: an interpolation that cannot be resolved in a `hydra.*` key
Hydra resolves (`hydra.sweep.subdir=${oc.env:NOPE}`), `hydra.job.chdir=true` (cl-run never
changes the working directory), a `hydra.job.name` that is not a file name (the log file is
named after it) and a `hydra.output_subdir` outside the run folder.
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from . import rundir
from .errors import ConfigError

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BY_NUMBER = ("${hydra.job.num}", "${hydra.job.id}")  # a folder per job, whatever the jobs are
# The hydra.* keys Hydra resolves while it runs a job (run_job, configure_log, the callbacks),
# and those it resolves for a sweep (its launcher and sweeper).
RESOLVED = ("mode", "verbose", "output_subdir", "job.name", "job.chdir", "job.env_set", "job_logging", "hydra_logging",
            "callbacks")
RESOLVED_IN_SWEEPS = ("launcher", "sweeper")


@contextmanager
def hydra_config_of(cfg: DictConfig):
    """A copy of `cfg` with HydraConfig set to it, as run_job sets it (set_config makes the
    config's hydra node read-only, hence the copy); HydraConfig as it was afterwards."""
    instance = HydraConfig.instance()
    previous, probe = instance.cfg, copy.deepcopy(cfg)
    instance.set_config(probe)
    try:
        yield probe
    finally:
        instance.cfg = previous


def _raw(cfg: DictConfig, key: str):
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent)
    return OmegaConf.to_container(node, resolve=False).get(leaf) if isinstance(node, DictConfig) else None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _resolved(probe: DictConfig, key: str):
    """`key` of a config under hydra_config_of, resolved; ConfigError naming it if it cannot be."""
    try:
        node = OmegaConf.select(probe, key, throw_on_missing=True)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as err:
        full_key = getattr(err, "full_key", None) or key
        where = full_key if full_key.startswith("hydra.") else f"{key} ({full_key})"
        raise ConfigError(where, _raw(probe, full_key) if full_key.startswith("hydra.") else _raw(probe, key),
                          f"cannot be resolved: {_first_line(err)}") from None


def _folder(cfg: DictConfig, key: str) -> str:
    with hydra_config_of(cfg) as probe:
        folder = _resolved(probe, key)
    if key != "hydra.sweep.subdir" and (folder is None or not str(folder).strip()):
        raise ConfigError(key, folder, "an empty folder name would put the results in the current folder; "
                                       f"name a folder, e.g. {key}=outputs/my-run")
    return str(folder)  # as run_job takes it


def run_target(composed: DictConfig, overwrite: bool) -> rundir.Target:
    """The folder a plain run of `composed` (its mode set) will write into."""
    folder = _folder(composed, "hydra.run.dir")
    check_hydra_keys(composed, folder, sweep=False)
    return rundir.Target("hydra.run.dir", folder, unique="${now:" in str(_raw(composed, "hydra.run.dir")), overwrite=overwrite)


def sweep_target(master: DictConfig, overwrite: bool) -> rundir.Target:
    """The folder a sweep of the multirun config `master` will write into."""
    folder = _folder(master, "hydra.sweep.dir")
    return rundir.Target("hydra.sweep.dir", folder, unique="${now:" in str(_raw(master, "hydra.sweep.dir")),
                         overwrite=overwrite, sweep=True)


def check_hydra_keys(cfg: DictConfig, folder: str, sweep: bool) -> None:
    """Refuse what Hydra cannot resolve or cl-run does not allow in the hydra.* keys of a job's
    config `cfg` writing into `folder` (see the module docstring)."""
    with hydra_config_of(cfg) as probe:
        with read_write(probe.hydra.runtime), open_dict(probe.hydra.runtime):
            probe.hydra.runtime.output_dir = os.path.abspath(folder)  # as run_job sets it
        values = {key: _resolved(probe, f"hydra.{key}") for key in RESOLVED + (RESOLVED_IN_SWEEPS if sweep else ())}
    if values["job.chdir"]:
        raise ConfigError("hydra.job.chdir", values["job.chdir"], "cl-run never changes the working directory "
                                                                  "(relative paths mean the folder it was started in)")
    name = values["job.name"]
    if not (isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable() and "/" not in name
            and name not in (".", "..")):
        raise ConfigError("hydra.job.name", name, "expected a plain file name (the run's log is <name>.log in its folder)")
    subdir = values["output_subdir"]
    if subdir is not None and (not _inside(str(subdir)) or os.path.normpath(str(subdir)).split("/")[0] in rundir.RESULT_FILES):
        raise ConfigError("hydra.output_subdir", subdir, "expected a folder name inside the run folder, e.g. .hydra "
                                                         "(or null: no record of Hydra's)")
    verbose = values["verbose"]
    if not (isinstance(verbose, (bool, str)) or isinstance(verbose, list) and all(isinstance(v, str) for v in verbose)):
        raise ConfigError("hydra.verbose", verbose, "expected true, false, a logger's name or a list of them")
    for key in ("job_logging", "hydra_logging"):
        _check_levels(f"hydra.{key}", values[key] or {})


def _check_levels(key: str, logging_config: dict) -> None:
    """The levels of a logging config (Python's dictConfig), which would fail Hydra's logging set-up."""
    nodes = [("root", logging_config.get("root") or {})]
    for group in ("loggers", "handlers"):
        nodes += [(f"{group}.{name}", node or {}) for name, node in (logging_config.get(group) or {}).items()]
    for where, node in nodes:
        level = node.get("level") if isinstance(node, dict) else None
        if level is not None and not isinstance(level, int) and not isinstance(logging.getLevelName(str(level).upper()), int):
            raise ConfigError(f"{key}.{where}.level", level, "expected a logging level: DEBUG, INFO, WARNING, ERROR, "
                                                             "CRITICAL or a number")


def _inside(relative: str) -> bool:
    """A path that names something strictly inside the folder it is joined to."""
    normal = os.path.normpath(relative)
    return bool(relative.strip()) and not os.path.isabs(relative) and normal != "." and not normal.startswith("..")


def check_jobs(master: DictConfig, folder: str, loader) -> None:
    """Refuse a sweep whose jobs would not each write a folder of their own inside `folder` (the
    sweep's), resolving each job's `hydra.sweep.subdir` as its launcher will; `master` is the
    multirun config with `folder` set, `loader` Hydra's config loader."""
    raw = str(_raw(master, "hydra.sweep.subdir"))
    basic = master.hydra.sweeper.get("_target_") == BASIC_SWEEPER
    jobs = _job_overrides(master, loader) if basic else [[], []]
    seen: dict[str, int] = {}
    for num, overrides in enumerate(jobs):
        job = loader.load_sweep_config(master, list(overrides))
        with open_dict(job):
            job.hydra.job.id, job.hydra.job.num = _job_id(master, num), num
        subdir = _folder(job, "hydra.sweep.subdir")
        if num == 0:
            check_hydra_keys(job, os.path.join(folder, subdir), sweep=True)
        if not _inside(subdir):
            raise ConfigError("hydra.sweep.subdir", raw, f"job {num}'s folder {os.path.join(folder, subdir)} is not "
                                                         f"inside the sweep folder {folder}; e.g. {BY_NUMBER[0]}")
        if subdir in seen:
            other = jobs[seen[subdir]]
            what = (f"jobs {seen[subdir]} ({_apart(other, overrides)}) and {num} ({_apart(overrides, other)})" if basic
                    else f"this sweeper ({master.hydra.sweeper._target_.rpartition('.')[2]}) picks its jobs as it goes, "
                         "and any two jobs")
            raise ConfigError("hydra.sweep.subdir", raw, f"{what} would write one folder, {os.path.join(folder, subdir)}; "
                                                         f"name each job's folder apart, e.g. {BY_NUMBER[0]}")
        seen[subdir] = num
        if raw in BY_NUMBER and num == 0:
            return  # a folder per job number: the first job's checks are every job's


def _apart(job: list[str], other: list[str]) -> str:
    """The overrides of `job` that `other` lacks: what the sweep varies between them."""
    return " ".join(o for o in job if o not in other) or "the same overrides"


def _job_overrides(master: DictConfig, loader) -> list[list[str]]:
    """The jobs of the basic sweeper, in its order (`BasicSweeper.sweep`: its params first)."""
    params = [f"{key}={value}" for key, value in (master.hydra.sweeper.get("params") or {}).items()]
    arguments = params + OmegaConf.to_container(master.hydra.overrides.task, resolve=False)  # as Hydra.multirun
    try:
        batches = BasicSweeper.split_arguments(OverridesParser.create(config_loader=loader).parse_overrides(arguments), None)
    except HydraException as err:  # an interval or a tagged sweep: values to pick from, not a list
        sweep = next((a for a in arguments if "interval(" in a or "tag(" in a), " ".join(arguments))
        raise ConfigError("command line", sweep, f"{_first_line(err)}: the basic sweeper runs lists of values "
                                                 "(a,b,c, range(), choice(), glob()); to sample from an interval use "
                                                 "hydra/sweeper=optuna (the optuna extra)") from None
    return [job for batch in batches for job in batch]


def _job_id(master: DictConfig, num: int):
    """`hydra.job.id` as the launcher sets it: joblib's `<job name>_<num>`, the basic launcher's
    number; any other launcher's is unique per job too (submitit's cluster job id)."""
    launcher = str(master.hydra.launcher.get("_target_", ""))
    return f"{master.hydra.job.name}_{num}" if launcher.endswith("JoblibLauncher") else num
