"""Run folders, Hydra and the command line: one claim of the folder Hydra really uses, and
nothing written into a folder before it is cl-run's.

- a run folder named through an interpolation (`${hydra:runtime.choices.dataset}`) that holds
  a finished run, or a run still training: the second run is refused and every file of the
  first is byte for byte what it was (hashes of every file, .hydra/ and cl-run.log included);
- sweeps whose jobs would share a folder, or leave the sweep folder: refused before any job
  starts (basic and joblib launchers); a job refused mid-sweep (its folder locked by a process
  that bypassed cl-run's claim) makes the sweep exit 2, the other jobs' results intact; a run
  inside a running sweep, and a sweep around a folder in use, are refused;
- Hydra's flags anywhere on the line (`seed=0,1 -m`, `-cn`, `--config-dir` at the end), a flag
  that is not Hydra's (`-epochs=2`), sweep syntax in a plain run, and the hydra.* keys cl-run
  refuses (chdir, a job name that is not a file name, an unresolvable interpolation);
- what a sweep and a `--config-dir` run record in .hydra/ and multirun.yaml is what hydra.main
  records.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, config_error
from .test_faults import RUN, TINY, finish, run_cl, start, training, wait_for
from .test_fixed_cost import HYDRA_MAIN
from .test_robustness import EXIT_CONFIG, _env, one_line, summary_of


def hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too), by its path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- a run folder named through an interpolation ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rt_${hydra:runtime.choices.dataset}", "${hydra:job.name}-${hydra:job.config_name}"])
def test_an_interpolated_folder_holding_a_finished_run_is_left_byte_identical(name, tmp_path, tiny_mnist):
    args = [*TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={tmp_path}/{name}"]
    first = run_cl(args)
    assert first.returncode == 0, first.stderr
    out = Path(first.stdout.strip().rsplit("results in ", 1)[1])
    assert out.parent == tmp_path and "$" not in out.name
    before = hashes(out)
    assert ".hydra/overrides.yaml" in before and "cl-run.log" in before
    second = run_cl([*args, "seed=1"])
    assert second.returncode == EXIT_CONFIG
    line = one_line(second.stderr)
    assert f"{out} already holds a run" in line and f"resume={out}" in line, line
    assert hashes(out) == before


@pytest.mark.slow
def test_an_interpolated_folder_in_use_is_left_as_it_is(tmp_path, mnist_root):
    """The first run still trains: the second is refused before Hydra writes its .hydra/ there."""
    args = [*RUN, f"data.root={mnist_root}", f"hydra.run.dir={tmp_path}/rt_${{hydra:runtime.choices.dataset}}"]
    out = tmp_path / "rt_split_mnist"
    first = start(args)
    wait_for(first, training(out, 1), "epoch of task 1")
    record = {name: digest for name, digest in hashes(out).items() if name.startswith(".hydra/")}
    second = run_cl([*args, "seed=5"])
    assert second.returncode == EXIT_CONFIG
    line = one_line(second.stderr)
    assert f"{out} is in use by another cl-run (process {first.pid})" in line, line
    assert {name: digest for name, digest in hashes(out).items() if name.startswith(".hydra/")} == record
    assert finish(first).returncode == 0
    assert "seed=5" not in (out / ".hydra" / "overrides.yaml").read_text()
    assert "in use" not in (out / "cl-run.log").read_text()
    assert "seed: 0" in (out / "config.yaml").read_text()


# --- sweep jobs and their folders -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep_jobs_sharing_a_folder_are_refused_before_any_starts(launcher, tmp_path, tiny_mnist):
    sweep = tmp_path / "sweep"
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    result = run_cl(["-m", *extra, "seed=0,1", "hydra.sweep.subdir=same", *TINY, f"data.root={tiny_mnist}",
                     f"hydra.sweep.dir={sweep}"])
    assert result.returncode == EXIT_CONFIG
    line = one_line(result.stderr)
    assert "hydra.sweep.subdir='same'" in line and "jobs 0 (seed=0) and 1 (seed=1)" in line, line
    assert f"{sweep}/same" in line and "${hydra.job.num}" in line, line
    assert not sweep.exists() and result.stdout == ""


def test_job_folders_are_resolved_per_job_as_the_launchers_resolve_them(tmp_path):
    def refused(*args: str) -> str:
        err = config_error(["-m", "hydra.sweep.dir=/tmp/cl-run-sweep", *args])
        return "" if err is None else str(err)

    assert refused("seed=0,1") == ""  # the default, ${hydra.job.num}
    assert refused("seed=0,1", "hydra.sweep.subdir=${hydra.job.id}", "hydra/launcher=joblib") == ""
    assert refused("seed=0,1", "train.lr=0.1,0.2", "hydra.sweep.subdir=${hydra.job.override_dirname}") == ""
    assert refused("seed=0,1", "train.lr=0.1,0.2", "hydra.sweep.subdir=s${seed}_${train.lr}") == ""
    line = refused("seed=0,1", "train.lr=0.1,0.2", "hydra.sweep.subdir=s${seed}")
    assert "jobs 0 (train.lr=0.1) and 1 (train.lr=0.2)" in line and "/tmp/cl-run-sweep/s0" in line, line
    assert "jobs 0 (seed=0) and 1 (seed=1)" in refused("seed=0,1", "hydra.sweep.subdir=${now:%H}")  # one clock, one folder
    for outside in ("..", "/tmp/elsewhere", "''", "a/../..", "."):
        assert "is not inside the sweep folder /tmp/cl-run-sweep" in refused("seed=0,1", f"hydra.sweep.subdir={outside}")
    # The sweeper's params (hydra.sweeper.params, from a config file) are jobs too.
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "grid.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n"
                                                        "      seed: 0,1\n")
    line = refused("--config-dir", str(tmp_path), "experiment=grid", "hydra.sweep.subdir=x")
    assert "jobs 0 (seed=0) and 1 (seed=1)" in line, line
    assert "hydra.sweeper.params" in refused("+hydra.sweeper.params.seed=1")  # one line, not OmegaConf's AssertionError


@pytest.mark.slow
def test_a_job_refused_mid_sweep_fails_the_sweep_and_keeps_the_other_jobs(tmp_path, tiny_mnist):
    """Job 1's folder locked by a process that bypassed cl-run's claim (as an older cl-run
    might), after the sweep started: the sweep exits 2 in one line; job 0's results stay."""
    sweep = tmp_path / "sweep"
    proc = start(["-m", "seed=0,1", *TINY, f"data.root={tiny_mnist}", f"hydra.sweep.dir={sweep}"])
    wait_for(proc, lambda: (sweep / "0" / ".hydra").exists(), "job 0's folder")
    (sweep / "1").mkdir()
    fd = os.open(sweep / "1" / ".cl-run.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        result = finish(proc)
    finally:
        os.close(fd)
    assert result.returncode == EXIT_CONFIG, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("cl-run: error: sweep job 1 (seed=1 ") and "in use by another cl-run (process 4242)" in line
    assert line.endswith(f"the other jobs ran, their results are in {sweep}"), line
    assert summary_of(sweep / "0")["status"] == "completed"
    assert not [name for name in os.listdir(sweep / "1") if name in ("summary.json", "metrics.csv", "cl-run.log")]
    assert not (sweep / ".cl-run.refused").exists()


def test_a_run_inside_a_sweep_in_use_and_a_sweep_around_a_folder_in_use_are_refused(tmp_path):
    from cl_runner import rundir
    from cl_runner.errors import ConfigError

    sweep = tmp_path / "sweep"
    held = rundir.claim(rundir.Target("hydra.sweep.dir", str(sweep), sweep=True))
    with pytest.raises(ConfigError, match=rf"{sweep} is in use by another cl-run \(process {os.getpid()}\), and "
                                          rf"{sweep / '7'} is inside it"):
        rundir.claim(rundir.Target("hydra.run.dir", str(sweep / "7")))
    assert not (sweep / "7").exists()  # made for the claim, removed with it
    rundir.release(held)
    job = rundir.claim(rundir.Target("hydra.run.dir", str(sweep / "7")))
    with pytest.raises(ConfigError, match=rf"{sweep / '7'} is in use .* and {sweep} is around it"):
        rundir.claim(rundir.Target("hydra.sweep.dir", str(sweep), sweep=True))
    rundir.release(job)
    rundir.release(rundir.claim(rundir.Target("hydra.sweep.dir", str(sweep), sweep=True)))  # no one holds it now


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["-m"], ["--multirun"], ["-cn", "config"], ["--config-dir", "{extra}"]],
                         ids=["-m", "--multirun", "-cn", "--config-dir"])
def test_hydra_flags_at_the_end(flags, tmp_path, tiny_mnist):
    extra = tmp_path / "extra-conf"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "mine.yaml").write_text("# @package _global_\ntrain:\n  lr: 0.0123\n")
    sweep = "-m" in flags or "--multirun" in flags
    out = tmp_path / "out"
    args = [*TINY, f"data.root={tiny_mnist}", "seed=0,1" if sweep else "seed=3",
            f"hydra.{'sweep' if sweep else 'run'}.dir={out}"] + (["experiment=mine"] if "--config-dir" in flags else [])
    result = run_cl([*args, *[f.format(extra=extra) for f in flags]])
    assert result.returncode == 0, result.stderr
    assert "unrecognized arguments" not in result.stderr and result.stderr == ""
    for job in ([out / "0", out / "1"] if sweep else [out]):
        assert summary_of(job)["status"] == "completed"
    if "--config-dir" in flags:
        assert "lr: 0.0123" in (out / "config.yaml").read_text()


def test_a_flag_that_is_not_hydras_names_the_setting():
    for argv, shown in ((["strategy=ewc", "-epochs=2"], "'-epochs=2'"), (["strategy=ewc", "--epochs", "2"], "'--epochs 2'"),
                        (["--epochs=2", "strategy=ewc"], "'--epochs=2'")):
        err = str(config_error(argv))
        assert f"command line={shown}: not a flag of cl-run" in err and err.endswith("without dashes: train.epochs=2"), err
    assert "'strategy=ewc 2'" not in str(config_error(["strategy=ewc", "--epochs", "2"]))
    assert "--config could match --config-path, --config-name, --config-dir" in str(config_error(["--config", "x"]))
    # What Hydra itself would refuse later, with a traceback.
    assert "give one of --run, --multirun, --cfg" in str(config_error(["seed=0,1", "-m", "--run"]))
    assert "expects install=SHELL" in str(config_error(["seed=1", "--shell-completion"]))
    assert "goes with --cfg or --help" in str(config_error(["--resolve", "seed=1"]))
    err = str(config_error(["seed=1", "--cfg", "job", "strategy=ewc"]))  # hydra.main prints it, reading argv itself
    assert "give Hydra's flags before the overrides here: cl-run --cfg job seed=1 strategy=ewc" in err


def test_sweep_syntax_needs_m_and_the_basic_sweeper_lists_values():
    for value in ("interval(0.01,0.1)", "tag(log,interval(0.01,0.1))", "choice(0.1,0.2)", "range(1,3)"):
        err = str(config_error([f"train.lr={value}"]))
        assert f"train.lr={value!r}: a sweep needs -m (--multirun)" in err, err
    assert "a sweep needs -m" in str(config_error(["dataset=glob(split_*mnist)"]))
    assert "for a list write seed=[0,1]" in str(config_error(["seed=0,1"]))
    err = str(config_error(["-m", "train.lr=interval(0.01,0.1)"]))
    assert "BasicSweeper does not support sweep type" in err and "hydra/sweeper=optuna" in err and "\n" not in err
    assert config_error(["-m", "dataset=glob(split_*mnist)"]) is None  # the options, each composed and checked
    assert "train.lr=-1" in str(config_error(["-m", "train.lr=interval(-1,0.1)", "hydra/sweeper=basic"]))  # its ends


@pytest.mark.slow
def test_sweep_syntax_in_a_plain_run_is_one_line_through_the_cli(tmp_path):
    for args in (["train.lr=interval(0.01,0.1)"], ["-m", "train.lr=interval(0.01,0.1)"]):
        result = run_cl([*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
        assert result.returncode == EXIT_CONFIG
        assert "train.lr" in one_line(result.stderr) and not list(tmp_path.iterdir())


def test_hydra_keys_cl_run_refuses(tmp_path):
    assert "cl-run never changes the working directory" in str(config_error(["hydra.job.chdir=true"]))
    for name in ("../../evil", "a/b", "..", "''"):
        assert "expected a plain file name" in str(config_error([f"hydra.job.name={name}"])), name
    for subdir in ("../x", "/tmp/x", ".", "metrics.csv"):
        assert "hydra.output_subdir" in str(config_error([f"hydra.output_subdir={subdir}"])), subdir
    assert config_error(["hydra.output_subdir=null"]) is None
    assert "expected true, false, a logger's name" in str(config_error(["hydra.verbose=5"]))
    assert "expected a logging level" in str(config_error(["hydra.job_logging.root.level=LOUD"]))


def test_item_11_resume_messages(tmp_path):
    from omegaconf import OmegaConf

    from .conftest import compose_cfg

    folder = tmp_path / "run"
    folder.mkdir()
    OmegaConf.save(compose_cfg(["device=cpu", "data.root=/data/mnist"]), folder / "config.yaml", resolve=True)
    (folder / "checkpoint.pt").write_bytes(b"")
    for argv in ([f"resume={folder}", "+foo.bar=1"], ["+foo.bar=1"]):
        err = str(config_error(argv))
        assert "unknown key 'foo'" in err and "did you mean" not in err and ", foo," not in err, err
    assert "never changes the working directory" in str(config_error([f"resume={folder}", "hydra.job.chdir=true"]))


def test_overwrite_removes_the_trackers_folders_too(tmp_path):
    from cl_runner import rundir
    from cl_runner.trackers import mlflow, session, tensorboard

    assert {tensorboard.FOLDER, session.STATE, "wandb"} <= set(rundir.RESULT_FILES)
    assert mlflow.STORE in rundir.SWEEP_FILES  # a sweep's jobs share one store, in the sweep folder
    run = tmp_path / "run"
    for name in ("tensorboard/events.out", "wandb/offline-run-1/run.wandb", "summary.json", "trackers.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("old")
    (run / "notes.txt").write_text("mine")
    held = rundir.claim(rundir.Target("hydra.run.dir", str(run), overwrite=True))
    assert sorted(os.listdir(run)) == [".cl-run.lock", "notes.txt"]
    rundir.release(held)
    sweep = tmp_path / "sweep"
    (sweep / "0" / "tensorboard").mkdir(parents=True)
    (sweep / "mlruns").mkdir()
    (sweep / "mlruns" / "mlflow.db").write_text("old")
    held = rundir.claim(rundir.Target("hydra.sweep.dir", str(sweep), overwrite=True, sweep=True))
    assert sorted(os.listdir(sweep)) == [".cl-run.lock"]
    rundir.release(held)


# --- what is recorded: as hydra.main records it -----------------------------------------------------

def _records(folder: Path, names: tuple[str, ...], top: Path) -> dict[str, str]:
    return {name: (folder / name).read_text().replace(str(top), "<top>") for name in names}


@pytest.mark.slow
@pytest.mark.parametrize("form", ["sweep", "config-dir"])
def test_what_is_recorded_is_what_hydra_main_records(form, tiny_mnist, tmp_path):
    extra = tmp_path / "extra-conf"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 4\n")
    flags = ["-m"] if form == "sweep" else ["--config-dir", str(extra)]  # first: hydra.main reads them so only
    args = [*flags, *TINY, f"data.root={tiny_mnist}", "seed=0,1" if form == "sweep" else "experiment=mine"]
    key = "hydra.sweep.dir" if form == "sweep" else "hydra.run.dir"
    # Quoted, as cl-run hands Hydra the folder it claimed (overrides.quoted): one text in both records.
    ours = run_cl([*args, f"{key}='{tmp_path / 'ours'}'"])
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run([sys.executable, "-c", HYDRA_MAIN, *args, f"{key}='{tmp_path / 'theirs'}'"],
                            capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600)
    assert theirs.returncode == 0, theirs.stderr
    names = tuple(f".hydra/{n}" for n in ("config.yaml", "hydra.yaml", "overrides.yaml"))
    for sub in ["0", "1"] if form == "sweep" else ["."]:
        mine = _records(tmp_path / "ours" / sub, names, tmp_path / "ours")
        assert mine == _records(tmp_path / "theirs" / sub, names, tmp_path / "theirs")
        assert (tmp_path / "ours" / sub / "metrics.csv").read_bytes() == (tmp_path / "theirs" / sub / "metrics.csv").read_bytes()
    if form == "sweep":
        assert _records(tmp_path / "ours", ("multirun.yaml",), tmp_path / "ours") == \
            _records(tmp_path / "theirs", ("multirun.yaml",), tmp_path / "theirs")
