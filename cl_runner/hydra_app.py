"""cl-run's Hydra application, built and run as `hydra.main` would, without reading sys.argv.

`hydra.main` reads sys.argv, builds the config search path (cl-run's conf/, or `-cp`, and a
`--config-dir`) and a Hydra instance, and calls Hydra's run or multirun. cl-run reads its
command line itself (`overrides.read_argv`, with Hydra's own parser), checks it (`precheck`)
and claims the output folder first, which it must then hand to Hydra: so it takes those steps
here, as Hydra 1.3 takes them (`_run_hydra` in hydra/_internal/utils.py, `Hydra.run` in
hydra/_internal/hydra.py; the package is pinned < 1.4, and tests/test_fixed_cost.py and
tests/test_run_folders.py compare what they record with hydra.main's):

- `initialized(cmd)`: the search path and the Hydra instance of hydra.main, in which the
  precheck composes;
- `run(composed, task, cmd)`: one plain run on the config the precheck composed (composing it
  again would cost 0.1 s twice): Hydra's logging, `hydra.mode=RUN`, the run callbacks, and
  Hydra's `run_job`, which makes .hydra/, sets up the job's logging and calls the task;
- `multirun(cmd, task, extra)`: a sweep, Hydra's own multirun on the command line's overrides
  and `extra` (the claimed sweep folder).

Commands that run nothing (`--help`, `--cfg`, `--info`, ...) go through hydra.main itself, on
the command line as typed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from hydra import version
from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_automatic_config_search_path
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import configure_log, run_job
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from . import config
from .errors import ConfigError
from .overrides import CommandLine

# hydra.main's task name: the file that calls it (cl_runner/cli.py), as Hydra's detect_task_name.
TASK_NAME = "cli"
CALLING_FILE = str(Path(__file__).with_name("cli.py"))


@contextmanager
def initialized(cmd: CommandLine):
    """Hydra initialized as hydra.main initializes it for `cmd` (its -cp and --config-dir too);
    the Hydra instance. What was initialized before comes back after."""
    backup = get_gh_backup()
    version.setbase("1.3")
    search_path = create_automatic_config_search_path(CALLING_FILE, None, cmd.args.config_path or str(config.CONF_DIR))
    if cmd.args.config_dir is not None:
        extra = os.path.abspath(cmd.args.config_dir)
        if not os.path.isdir(extra):
            raise ConfigError("--config-dir", cmd.args.config_dir, f"{extra} is not a folder")
        search_path.prepend(provider="command-line", path=f"file://{extra}", anchor=SearchPathQuery(provider="schema"))
    try:
        yield Hydra.create_main_hydra2(task_name=TASK_NAME, config_search_path=search_path)
    finally:
        restore_gh_from_backup(backup)


def with_hydra_overrides(composed: DictConfig, extra: list[str]) -> DictConfig:
    """`composed` as if `extra` (overrides of `hydra.*` keys, such as the claimed output
    folder) had been on the command line: their values set, and recorded in
    `hydra.overrides.hydra` in place of earlier ones of the same keys, as .hydra/ shows them."""
    parsed = OverridesParser.create().parse_overrides(extra)
    keys = {override.key_or_group for override in parsed}
    with open_dict(composed):
        for override in parsed:
            OmegaConf.update(composed, override.key_or_group, override.value(), merge=True)
        given = OmegaConf.to_container(composed.hydra.overrides.hydra, resolve=False)  # texts, `${` in them too
        recorded = [text for text in given if text.lstrip("+").split("=", 1)[0] not in keys]
        composed.hydra.overrides.hydra = recorded + list(extra)
    return composed


def with_run_mode(composed: DictConfig) -> DictConfig:
    """`hydra.mode=RUN` added as hydra.main adds it (`_run_app`), and recorded in .hydra/."""
    return composed if composed.hydra.mode is not None else with_hydra_overrides(composed, [f"hydra.mode={RunMode.RUN.name}"])


def run(composed: DictConfig, task_function: TaskFunction, cmd: CommandLine) -> None:
    """Run `task_function` on `composed` (the config with Hydra's node, its mode set) as
    `hydra.main`'s run mode would; the task's exception, if it raised one, is raised here."""
    with initialized(cmd) as hydra:
        configure_log(composed.hydra.hydra_logging, composed.hydra.verbose)
        callbacks = Callbacks(composed)
        config_name = composed.hydra.job.config_name
        callbacks.on_run_start(config=composed, config_name=config_name)
        done = run_job(
            hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
            task_function=task_function, config=composed, job_dir_key="hydra.run.dir", job_subdir_key=None,
        )
        callbacks.on_run_end(config=composed, config_name=config_name, job_return=done)
        _ = done.return_value  # raises the task's exception, as Hydra.run does


def multirun(cmd: CommandLine, task_function: TaskFunction, extra: list[str]) -> None:
    """Hydra's multirun of `cmd` with the overrides `extra` in place of the command line's of
    the same keys, as hydra.main's would be with them typed at the end instead."""
    keys = {text.lstrip("+").split("=", 1)[0] for text in extra}
    given = [text for text in cmd.overrides if text.lstrip("+").split("=", 1)[0] not in keys]
    with initialized(cmd) as hydra:
        hydra.multirun(config_name=cmd.config_name, task_function=task_function, overrides=given + extra)
