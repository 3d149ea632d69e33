"""The Python API: compose a config, run it into a folder, get the results back as DataFrames.

    from cl_runner import api

    cfg = api.compose(["strategy=replay", "replay.share=0.1"])    # a DictConfig, checked as cl-run checks it
    result = api.run(["strategy=replay", "train.epochs=5"])        # trains; returns a cl_runner.result.Result
    result.metrics, result.accuracy_matrix, result.summary, result.figures, result.folder
    results = api.sweep([["strategy=naive"], ["strategy=replay", "replay.share=0.01"]])
    api.table(results)                                             # one row per run, a pandas DataFrame

Overrides are cl-run's command line (`key=value`, `group=option`), and everything cl-run
checks is checked here, with the same messages, raised as the exceptions of
`cl_runner.errors` (`ConfigError` for a bad value or a key the run would not read, `DataError`
for missing data, `WriteError`), before anything trains; a run that diverges raises
`cl_runner.run.Diverged` (its rows so far are kept). The schema is registered here: no set-up.

Folders follow cl-run's rules (`cl_runner.rundir`): by default a new folder
outputs/<date>/<time> (multirun/<date>/<time>/<job> for a sweep), made unique; a folder given
that already holds results is refused unless `overwrite=True`; a folder is locked while a
run writes into it. A run writes what cl-run writes (metrics.csv is byte for byte the same
for the same overrides), its log lines in cl-run.log, and its overrides in .hydra/overrides.yaml.

Made for notebooks: progress bars are tqdm's notebook bars in Jupyter (`tqdm.auto`), warnings
and notices go to stderr, and nothing global is left changed: the `cl_runner` logger's handlers,
the signal handlers (Ctrl-C interrupts a cell, and the run records that it was interrupted) and
Hydra's global state are as they were before each call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence, Union

from hydra.core.global_hydra import GlobalHydra
from hydra.core.singleton import Singleton
from omegaconf import DictConfig, OmegaConf, open_dict

from . import config, interrupts, overrides as override_syntax, precheck, rundir, timing, usage
from .errors import ConfigError, UserError
from .result import Result, table
from .run import Diverged, run as run_config

__all__ = ["ConfigError", "Diverged", "Result", "UserError", "compose", "run", "sweep", "table"]

Overrides = Sequence[str]
log = logging.getLogger("cl_runner")
notice = logging.getLogger("cl_runner.notice")  # shown on stderr, as cl-run's notices


def compose(overrides: Overrides = ()) -> DictConfig:
    """The config cl-run would run for these overrides, composed and checked as cl-run checks
    it; ConfigError (or another UserError) with cl-run's message when it would refuse them."""
    return _checked(list(overrides))[0]


def run(overrides: Union[Overrides, DictConfig] = (), folder: str | Path | None = None, overwrite: bool = False) -> Result:
    """Train one experiment and return its Result. `overrides`: cl-run's overrides, or a config
    from `compose` (its keys were checked there). `folder`: where to write (default: a new
    folder under outputs/); one holding a run's results is refused unless `overwrite`."""
    if isinstance(overrides, DictConfig):
        cfg, target, given = _as_config(overrides), _default_target("run", overwrite), []
        if folder is not None:
            target = rundir.Target("folder", str(folder), overwrite=overwrite)
    else:
        given = list(overrides)
        cfg, target = _checked(given, folder, overwrite)
    return _run_claimed(cfg, target, given)


def sweep(jobs: Union[Sequence[Overrides], Mapping[str, Overrides]], folder: str | Path | None = None,
          overwrite: bool = False) -> list[Result]:
    """Run each list of overrides in `jobs` into its own folder <folder>/0, 1, ... (default:
    a new folder under multirun/), or <folder>/<name> for jobs given as {name: overrides},
    and return their Results, in order. Every job is checked
    before any trains; a key set in some jobs is refused only when none of them reads it
    (each job lists the ones it ignores in summary.json's `unused_overrides`). As in a cl-run
    sweep, a job that fails (diverges, or its data is missing) is recorded as failed (its
    Result's status) and the others go on; Ctrl-C stops the sweep."""
    names = [str(name) for name in jobs] if isinstance(jobs, Mapping) else [str(n) for n in range(len(jobs))]
    jobs = [list(job) for job in (jobs.values() if isinstance(jobs, Mapping) else jobs)]
    if not jobs:
        raise ConfigError("jobs", [], "a sweep needs at least one list of overrides")
    for name in names:
        if not re.fullmatch(r"[\w.-]+", name) or name in (".", ".."):
            raise ConfigError("jobs", name, "a job's name is the name of its folder: letters, digits, '-', '_', '.'")
    default = _default_target("sweep", overwrite)
    target = dataclasses.replace(default, folder=str(folder), unique=False) if folder is not None else default
    claim = rundir.claim(target)
    try:
        checked = []
        with usage.deferred():  # judged over the whole sweep below
            for name, job in zip(names, jobs):
                checked.append(_checked(job, claim.folder / name))
        _refuse_unread(jobs, [cfg for cfg, _ in checked])
        return [_run_claimed(cfg, job_target, job, f"job {n + 1} of {len(jobs)} ({name}): {' '.join(job)}", claim)
                for n, ((cfg, job_target), job, name) in enumerate(zip(checked, jobs, names))]
    finally:
        with interrupts.ignored():
            rundir.release(claim)


def _checked(given: list[str], folder: str | Path | None = None, overwrite: bool = False) -> tuple[DictConfig, rundir.Target]:
    """(config, output folder) of one run's overrides, through cl-run's own precheck."""
    for text in given:
        if text.startswith("-"):
            raise ConfigError("overrides", text, "the API takes overrides (key=value, group=option), not cl-run's flags")
    for text, parsed in zip(given, override_syntax.parse(given)):
        if parsed.is_sweep_override():
            raise ConfigError(parsed.key_or_group, text.partition("=")[2], "one run takes one value: for several runs "
                              "pass a list of override lists to api.sweep (for a list value write key=[...])")
    try:
        argv = given + ([override_syntax.quoted("hydra.run.dir", str(folder))] if folder is not None else [])
    except ValueError:
        raise ConfigError("folder", str(folder), "Hydra cannot read this folder name back; choose another") from None
    config.register()
    with _own_hydra():
        checked = precheck.check(argv)
    if checked.target is None or checked.composed is None:
        raise ConfigError("hydra.run.dir", None, "only Hydra can name this folder: give it as folder=")
    cfg = checked.composed.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, dataclasses.replace(checked.target, overwrite=checked.target.overwrite or overwrite)


def _refuse_unread(jobs: list[list[str]], cfgs: list[DictConfig]) -> None:
    """UnusedSetting for a key that some jobs set and none of them reads."""
    unread: dict[str, str] = {}
    read: set[str] = set()
    values: dict[str, list[str]] = {}
    for job, cfg in zip(jobs, cfgs):
        typed = usage.set_keys(cfg, job)
        ignored = usage.unused(cfg, job)
        for key, value in typed.items():
            values.setdefault(key, []).append(value)
            if key in ignored:
                unread.setdefault(key, ignored[key])
            else:
                read.add(key)
    for key, why in unread.items():
        if key not in read:
            raise usage.UnusedSetting(key, ",".join(dict.fromkeys(values[key])), why)


def _run_claimed(cfg: DictConfig, target: rundir.Target, given: list[str], job: str | None = None,
                 sweep: rundir.Claim | None = None) -> Result:
    """Claim the target's folder, run the config into it, release it; the Result. `job`: a
    sweep's job, announced so; a job that fails is recorded, not raised. `sweep`: that sweep's claim."""
    claim = rundir.claim(target, sweep=sweep)
    folder = claim.folder
    try:
        timing.new_job()
        with _run_logging(folder):
            if job is not None:
                notice.info(job)
            if not cfg.get("resume"):
                _record_overrides(folder, given)
            try:
                summary = run_config(cfg, folder, overrides=given)
            except (UserError, Diverged) as err:
                if job is None:
                    raise
                log.error("job in %s failed: %s", folder, err)
                summary = _failed_summary(folder, err)
    finally:
        with interrupts.ignored():
            rundir.release(claim)
    return Result(folder, summary, given)


def _record_overrides(folder: Path, given: list[str]) -> None:
    """.hydra/overrides.yaml, as cl-run's Hydra writes it (cl-report shows a run's overrides)."""
    (folder / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(OmegaConf.create(given), folder / ".hydra" / "overrides.yaml")


def _failed_summary(folder: Path, err: Exception) -> dict:
    """A failed sweep job's summary (the run's own where it wrote one, as cl-run's sweeps do)."""
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {"status": "failed", "error": str(err)}
        try:
            (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        except OSError:  # the folder itself is the problem
            pass
        return summary


def _as_config(cfg: DictConfig) -> DictConfig:
    """A config given as such: typed onto the schema and checked (a `compose` result passes as it is)."""
    config.register()
    values = OmegaConf.to_container(cfg, resolve=False)
    values.pop("hydra", None)  # composed with Hydra's own node (return_hydra_config=True)
    typed = config.typed(values)
    config.validate(typed)
    return typed


def _default_target(kind: str, overwrite: bool) -> rundir.Target:
    """cl-run's default folder of a run or a sweep (conf/config.yaml's hydra.run.dir /
    hydra.sweep.dir: a name from the clock, made unique)."""
    raw = OmegaConf.to_container(OmegaConf.load(config.CONF_DIR / "config.yaml").hydra[kind], resolve=False)["dir"]
    now = datetime.now()
    folder = re.sub(r"\$\{now:([^}]*)\}", lambda m: now.strftime(m.group(1)), raw)
    return rundir.Target(f"hydra.{kind}.dir", folder, unique=True, overwrite=overwrite, sweep=kind == "sweep")


@contextmanager
def _own_hydra():
    """Hydra's global state cleared for cl-runner's composition, and given back after (a
    notebook may hold its own `initialize(...)`)."""
    # The singleton itself is set aside and put back, as Hydra's own initialize() does with a copy
    # (hydra/initialize.py, get_gh_backup): a user's references to it stay valid.
    saved = Singleton._instances.pop(GlobalHydra, None)
    try:
        yield
    finally:
        Singleton._instances.pop(GlobalHydra, None)
        if saved is not None:
            Singleton._instances[GlobalHydra] = saved


class _Console(logging.Filter):
    """What cl-run shows on the terminal: warnings, and the notices meant for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == "cl_runner.notice"


@contextmanager
def _run_logging(folder: Path):
    """The run's log lines as cl-run writes them (conf/hydra/job_logging/cl_run.yaml): from
    INFO up into the folder's cl-run.log, warnings and notices on stderr; the `cl_runner`
    logger's handlers, level and propagation are restored afterwards."""
    logger = logging.getLogger("cl_runner")
    saved = logger.handlers[:], logger.level, logger.propagate
    file = logging.FileHandler(folder / "cl-run.log", delay=True)
    file.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("cl_runner: %(message)s"))
    console.addFilter(_Console())
    logger.handlers, logger.propagate = [file, console], False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
        file.close()
