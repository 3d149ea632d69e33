"""Run one job as `hydra.main` does, on the config the precheck has composed already.

For one run, `hydra.main` composes the config twice more (once to read `hydra.mode`, once to
run it), about 0.1 s each, after the precheck composed and checked it. A plain command line --
`cl-run key=value ...`, no -m and no Hydra flag -- comes here instead and goes through the
steps of Hydra's run mode (`Hydra.run` in hydra/_internal/hydra.py, Hydra 1.3): Hydra's own
logging, `hydra.mode=RUN`, the run callbacks, and Hydra's `run_job`, which makes the output
folder, writes .hydra/, sets up the job's logging and calls the task function. Sweeps and
every command with a Hydra flag (`--cfg`, `-cn`, `--help`, ...) go through `hydra.main`.
"""

from __future__ import annotations

from hydra import initialize_config_dir
from hydra._internal.callbacks import Callbacks  # what Hydra.run uses; the package is pinned < 1.4
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import configure_log, run_job
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict


def with_hydra_overrides(composed: DictConfig, extra: list[str]) -> DictConfig:
    """`composed` as if `extra` (overrides of `hydra.*` keys, such as the claimed output
    folder) had been on the command line: their values set, and recorded in
    `hydra.overrides.hydra` in place of earlier ones of the same keys, as .hydra/ shows them."""
    parsed = OverridesParser.create().parse_overrides(extra)
    keys = {override.key_or_group for override in parsed}
    with open_dict(composed):
        for override in parsed:
            OmegaConf.update(composed, override.key_or_group, override.value(), merge=True)
        recorded = [text for text in composed.hydra.overrides.hydra if text.lstrip("+").split("=", 1)[0] not in keys]
        composed.hydra.overrides.hydra = recorded + list(extra)
    return composed


def run(composed: DictConfig, task_function: TaskFunction, conf_dir: str) -> None:
    """Run `task_function` on `composed` (the config with Hydra's node) as `hydra.main`'s run
    mode would; the task's exception, if it raised one, is raised here."""
    with initialize_config_dir(conf_dir, version_base="1.3", job_name=composed.hydra.job.name):
        configure_log(composed.hydra.hydra_logging, composed.hydra.verbose)
        if composed.hydra.mode is None:  # as hydra.main adds it (`_run_app`), recorded in .hydra/
            composed = with_hydra_overrides(composed, [f"hydra.mode={RunMode.RUN.name}"])
        callbacks = Callbacks(composed)
        config_name = composed.hydra.job.config_name
        callbacks.on_run_start(config=composed, config_name=config_name)
        done = run_job(
            hydra_context=HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=callbacks),
            task_function=task_function, config=composed, job_dir_key="hydra.run.dir", job_subdir_key=None,
        )
        callbacks.on_run_end(config=composed, config_name=config_name, job_return=done)
        _ = done.return_value  # raises the task's exception, as Hydra.run does
