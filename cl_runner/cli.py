"""`cl-run`: the Hydra command line around `cl_runner.run.run`.

`main()` first makes SIGTERM an interruption like Ctrl-C -- before anything heavy is
imported, so a `kill` in the first second is handled too -- then registers the config schema,
checks the whole command line (`precheck`: a mistake ends in one line and exit code 2 before
anything runs), claims the output folder (`rundir`: made unique, locked, never another run's
results) and passes it to Hydra, whose task function `hydra_main` runs one experiment and
prints a one-line summary: a plain run through Hydra's `run_job` on the precheck's own
composition, a sweep through Hydra's multirun (`hydra_app`: neither reads nor rewrites
sys.argv), a command that runs nothing (`--help`, `--cfg`, ...) through `hydra.main`.
However it ends, it ends in one line and an exit code: 0 done, 2 bad config, 3 bad or
missing data, 4 the run failed (diverged), 5 results could not be written, 6 a cluster
launcher could not run the sweep, 130 interrupted (SIGINT or SIGTERM). A sweep of which a job
was refused (its folder another run's) ends with 2 once its other jobs have run.
A command that fails or is interrupted before training leaves no folder behind. The process
then ends without Python's slow teardown of torch (`_exit`).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import sys
import threading
from pathlib import Path

# Only the standard library and these small modules here: Hydra, torch and the training code
# are imported inside main(), once the signal handler is in place.
from . import interrupts, rundir, threads, timing
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, ConfigError, LaunchError, UserError, WriteError

log = logging.getLogger("cl_runner.logfile")  # the lines printed here, kept in cl-run.log too
log.addHandler(logging.NullHandler())  # until Hydra gives it the file: the lines are printed already
log.propagate = False  # nor through Hydra's own console logging (a sweep's launcher failure)


def main() -> None:
    try:
        threads.prepare_openmp()  # before torch loads OpenMP: a short spin, then sleep (cl_runner.threads)
        interrupts.install()
        logging.raiseExceptions = False  # a log line that cannot be written (a full disk) is dropped, not a traceback
        code = _launch(sys.argv[1:])
    except UserError as err:
        code = _say(f"cl-run: error: {err}", err.exit_code)
    except OSError as err:  # Hydra's own files (.hydra/, the log) in the claimed folder; or no Ray cluster
        launcher = _launcher_failure(err)
        code = (_say(f"cl-run: error: {launcher}", LaunchError.exit_code) if launcher else
                _say(f"cl-run: error: {WriteError(err.filename or rundir.any_held() or '.', err)}", WriteError.exit_code))
    except KeyboardInterrupt as err:
        code = _say(f"cl-run: interrupted ({interrupts.describe(err)}); {_kept_after(err)}", EXIT_INTERRUPTED)
    except SystemExit as exit_:
        code = exit_.code
    except Exception as err:  # noqa: BLE001 - only a cluster launcher's failure is handled here
        launcher = _launcher_failure(err)
        if launcher is None:
            raise
        code = _say(f"cl-run: error: {launcher}", LaunchError.exit_code)
    finally:
        with interrupts.ignored():
            rundir.release_all()
    _exit(code)


def _exit(code) -> None:
    """End the process with `code`. Once the exit handlers have run (they close the log file
    and the trackers' sessions) and the output is flushed, skip the interpreter's teardown:
    freeing torch's objects module by module takes about 0.5 s, a third of a short run's
    fixed cost over a plain PyTorch script (bench/startup.py). sys.exit instead where a
    non-daemon thread still runs (it waits for those), a profiler or debugger is attached (it
    writes its results after main() returns) or the code is not a number."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's, present since 3.0
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if not isinstance(code, int) or run_exit_handlers is None or busy or watched:
        sys.exit(code)
    try:
        run_exit_handlers()
    except KeyboardInterrupt:  # Ctrl-C while a tracker syncs: stop waiting, as Python's own exit would
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


# The cluster launchers' packages, by the name of their top-level module.
LAUNCHERS = {"submitit": "Slurm launcher (submitit)", "ray": "Ray launcher"}
# A local launcher's own failures, by the module of their class only (where they are raised is
# no sign: joblib raises a job's own exception again, and a job's bug must show as one):
# loky's TerminatedWorkerError, a worker process killed (the others are ended with it).
LOCAL_LAUNCHERS = {"joblib.externals.loky": "joblib launcher"}


def _kept_after(err: BaseException) -> str:
    """What the command's folder holds after `err` stopped it before its run or sweep could
    say so: a sweep's jobs whose processes ended with it are recorded first (`sweep_jobs`)."""
    from . import status, sweep_jobs

    folder = rundir.any_held()
    if folder is not None and rundir.held(folder).target.sweep:
        with interrupts.ignored():
            return sweep_jobs.kept(folder, sweep_jobs.settle(folder, err))
    if folder is not None:  # a run's folder: nothing yet, or a resumed run's results
        return status.kept(folder)
    resumed = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("resume=")), None)
    return f"before the resume started; {rundir.absolute(resumed)} is as it was" if resumed else \
        "before training started; nothing was kept"


def _launcher_failure(err: BaseException) -> str | None:
    """One line for an error raised by a cluster launcher (sbatch refused the jobs, no Ray
    cluster answered), or None for any other error (a bug, shown as a traceback)."""
    seen = err
    while seen is not None:
        tb = seen.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        raised_in = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
        # Its class (submitit's FailedJobError), or where it was raised (Ray's ConnectionError).
        launcher = LAUNCHERS.get(type(seen).__module__.split(".")[0]) or LAUNCHERS.get(raised_in.split(".")[0])
        local = next((name for module, name in LOCAL_LAUNCHERS.items() if type(seen).__module__.startswith(module)), None)
        if launcher is not None or local is not None:
            first = next((line.strip() for line in str(seen).splitlines() if line.strip()), type(seen).__name__)
            kept = rundir.any_held()
            logs = f" (its job scripts and logs: {kept / '.submitit'})" if kept and (kept / ".submitit").is_dir() else ""
            jobs = f"; {_kept_after(seen)}" if local is not None else ""
            return f"the {launcher or local} could not run the sweep: {first}{logs}{jobs}"
        seen = seen.__cause__ or seen.__context__
    return None


def _launch(argv: list[str]) -> int:
    """Check the command line, claim its folder, run Hydra; the exit code."""
    if "--version" in argv:  # cl-runner's own, not Hydra's (which --version would print)
        from .versions import versions

        return _say(versions(), 0, sys.stdout)
    with timing.phase("import"), interrupts.deferred():  # a signal waits for the imports (numpy's, torch's)
        import hydra

        from . import config, hydra_app
        from .precheck import check

        config.register()
    checked = check(argv)
    # Hydra prints a failure of its own (writing .hydra/ to a full disk) as a traceback unless
    # told to raise it; main() then reports it in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if checked.target is None:  # nothing runs (--help, --cfg, ...): hydra.main, on sys.argv as typed
        hydra.main(version_base="1.3", config_path=str(config.CONF_DIR), config_name="config")(hydra_main)()
        return 0
    claimed = rundir.claim(checked.target).folder
    folder = _folder_overrides(checked.target, claimed)
    if not checked.multirun:  # one run: Hydra's run mode on the config composed once
        composed = hydra_app.with_hydra_overrides(checked.composed, folder)
        hydra_app.run(hydra_app.with_hydra_overrides(composed, list(checked.extra)), hydra_main, checked.cmd)
        return 0
    # The process that cleans up after joblib's workers (multiprocessing's resource tracker,
    # started with this process's -W options) warns in three lines about the semaphores of
    # workers a failed or interrupted sweep left; it cleans them, and the sweep's line says why.
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    hydra_app.multirun(checked.cmd, hydra_main, [*folder, *checked.extra])  # hydra.main: the mode last
    refused = _take_refusals(claimed)
    if not refused:
        return 0
    which = f"{len(refused)} sweep jobs were refused, the first: job" if len(refused) > 1 else "sweep job"
    # Printed only: the log file Hydra set up last is a job's, maybe the refused one's.
    print(f"cl-run: error: {which} {refused[0]}; the other jobs ran, their results are in {claimed}", file=sys.stderr)
    return ConfigError.exit_code


def _record_refusal(sweep: Path, line: str) -> None:
    """Note in the sweep folder that one of its jobs was refused (its folder is another run's),
    for the sweep's own process to report (`_take_refusals`): a job may run in another process,
    or on another machine of a cluster, that shares the folder. One short append is atomic."""
    try:
        fd = os.open(sweep / rundir.REFUSED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line.replace("\n", " ") + "\n").encode())
        finally:
            os.close(fd)
    except OSError:  # the sweep folder cannot take it: the job's result is lost from the exit code only
        pass


def _take_refusals(sweep: Path) -> list[str]:
    """The refusals its jobs recorded (see _record_refusal), removing the record."""
    try:
        lines = (sweep / rundir.REFUSED).read_text().splitlines()
        os.unlink(sweep / rundir.REFUSED)
    except OSError:
        return []
    return lines


def _folder_overrides(target: rundir.Target, folder: Path) -> list[str]:
    """The overrides that make the claimed folder Hydra's output folder. A resumed run writes
    into its own folder, where Hydra's record of the first run (.hydra/) is kept as it was."""
    from .overrides import quoted

    key = "hydra.sweep.dir" if target.sweep else "hydra.run.dir"
    try:
        return [quoted(key, str(folder))] + (["hydra.output_subdir=null"] if target.resume else [])
    except ValueError:
        raise ConfigError(key, str(folder), "Hydra cannot read this folder name back; choose another") from None


def hydra_main(cfg) -> float:
    """Hydra's task function: run, report one line, return the mean final accuracy (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    timing.new_job()
    with timing.phase("import"), interrupts.deferred():
        from .run import Diverged, run

    logging.raiseExceptions = False  # here too: a sweep's job may run in a process of its own
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = Path(hydra_cfg.runtime.output_dir)
    results_dir = rundir.absolute(cfg.resume) if cfg.resume else output_dir
    own = None
    if rundir.held(results_dir) is None:  # a sweep's job (maybe in another process), or --experimental-rerun
        try:
            own = rundir.claim(rundir.Target("hydra.sweep.subdir" if multirun else "hydra.run.dir", str(output_dir),
                                             overwrite=bool(cfg.overwrite)), hydra_made=True)
        except UserError as err:  # the folder is another run's: write nothing into it, its log neither
            if not multirun:
                print(f"cl-run: error: {err}", file=sys.stderr, flush=True)
                sys.exit(err.exit_code)
            # The sweep's own process reports it, and fails the sweep (the job may run in another).
            given = " ".join(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))  # as typed
            _record_refusal(Path(hydra_cfg.sweep.dir), f"{hydra_cfg.job.num} ({given}): {err}")
            return math.nan
    try:
        summary = run(cfg, output_dir, overrides=list(hydra_cfg.overrides.task))
    except UserError as err:
        return _failed(err, results_dir, multirun)
    except Diverged as err:
        code = _say(f"cl-run: run failed: {err} (rows so far kept in {results_dir})", EXIT_FAILED)
        if not multirun:  # one failed run must not end the sweep; it is listed as failed by cl-report
            sys.exit(code)
        return math.nan
    except KeyboardInterrupt as err:
        from .status import kept

        sys.exit(_say(f"cl-run: interrupted ({interrupts.describe(err)}); {kept(results_dir)}", EXIT_INTERRUPTED))
    finally:
        if own is not None:
            with interrupts.ignored():
                rundir.release(own)
    log.info(timing.summary())
    forgetting = summary.get("forgetting")
    accs = " ".join(_number(a) for a in summary["final_test_acc"])
    _say(f"cl-run: {summary['strategy']} done: final test acc per task [{accs}], mean {_number(summary['average_accuracy'])}"
         + (f", forgetting {_number(forgetting)}" if forgetting is not None else "")
         + f"; results in {summary['output_dir']}", 0, sys.stdout)
    return float(summary["average_accuracy"])


def _failed(err: UserError, folder: Path, multirun: bool) -> float:
    """A run stopped by a user error: one line; in a sweep the job's summary.json says why (so
    cl-report lists it) and the sweep goes on, else the command ends with the error's code."""
    line = f"cl-run: error: {err}"
    if isinstance(err, WriteError) and (folder / "checkpoint.pt").exists():
        line += f"; the run stopped; its finished tasks can be continued with resume={folder}"
    code = _say(line, err.exit_code)
    if not multirun:
        sys.exit(code)
    if not (folder / "summary.json").exists() and folder.is_dir():
        try:
            (folder / "summary.json").write_text(json.dumps({"status": "failed", "error": str(err)}, indent=2) + "\n")
        except OSError:  # the folder itself is the problem: the line above says so
            pass
    return math.nan


def _number(value: float) -> str:
    """Three decimals; a value that rounds to zero prints 0.000, never -0.000."""
    return re.sub(r"^-(?=0\.0+$)", "", f"{value:.3f}")


def _say(line: str, code: int, stream=None) -> int:
    """Print one line on stderr, or `stream` (and keep it in the run's cl-run.log); return the exit code."""
    line = line.replace("\n", "\\n")  # a value with a line break must not make two lines
    print(line, file=stream or sys.stderr, flush=True)
    (log.info if code == 0 else log.error)(line)
    return code


if __name__ == "__main__":
    main()
