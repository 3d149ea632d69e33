"""A fuzz of the command line: random values over every config key, each of which must end in a
documented exit code with one line and no traceback.

The values are what people and scripts get wrong: garbage strings (quotes, brackets, `=`, `$`,
line breaks, letters outside ASCII), NaN, infinities, huge numbers, empty lists and mappings,
interpolations (of the wrong type, to unset variables), `null`, sweeps, `+key` / `++key` /
`~key`, bare words, and group options (`strategy=nan`, `model=[1]`), one to three per command
line, some with `-m`. The generator is seeded (SEED): a failure names its command line and
reproduces. Most command lines go through the precheck in this process
(`cl_runner.precheck.precheck`, what `cl-run` runs first, a tenth of a second each); a sample
goes through the real command line. Run with `-s` to see the tallies.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from cl_runner.errors import EXIT_CONFIG, EXIT_DATA, UserError
from cl_runner.precheck import precheck

from .conftest import REPO, compose_cfg, config_error

SEED = 20261125
GROUPS = ["dataset", "model", "strategy", "experiment", "hydra/launcher"]
HYDRA_KEYS = ["hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.name", "hydra.job.chdir",
              "hydra.output_subdir", "hydra.verbose", "hydra.job_logging.root.level", "hydra.nope"]
UNKNOWN_KEYS = ["nope", "train.nope", "ewc.alhpa", "model.width.x", "x" * 5000]
FIXED_VALUES = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "9" * 40, "-9" * 20, "0", "-1", "0.5", "1e-320",
                "[]", "[[]]", "{}", "[1,2,3]", "[a,b]", "[1,[2,[3]]]", "{a: 1}", "null", "true", "False", "''", '""',
                "${train.lr}", "${seed}", "${nope}", "${oc.env:CL_RUN_FUZZ_UNSET}", "${now:%Y}", "${train}", "a,b,c",
                "1,2", "choice(1,2)", "range(3)", "", " ", "é", "my data", "${", "}", "[", "'", "\\", "a=b", "\n"]
GARBAGE = "abcXYZ019 _-.,=:;'\"[]{}()$%\\/\t\né日本+~*?@!#"


def _leaf_keys() -> list[str]:
    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                yield from walk(value, path + ".")
            else:
                yield path
    return list(walk(OmegaConf.to_container(compose_cfg(), resolve=False), ""))


def command_lines(count: int, seed: int, keys: list[str], with_sweeps: bool = True) -> list[list[str]]:
    """`count` random command lines (lists of arguments), the same for the same seed."""
    rng = random.Random(seed)

    def value() -> str:
        if rng.random() < 0.6:
            return rng.choice(FIXED_VALUES)
        return "".join(rng.choice(GARBAGE) for _ in range(rng.randint(1, 12)))

    def override() -> str:
        key = rng.choice(keys)
        form = rng.random()
        if form < 0.70:
            return f"{key}={value()}"
        if form < 0.80:
            return f"+{key}={value()}"
        if form < 0.85:
            return f"++{key}={value()}"
        if form < 0.93:
            return f"~{key}"
        return key  # a bare word

    lines = []
    for _ in range(count):
        argv = [override() for _ in range(rng.randint(1, 3))]
        if with_sweeps and rng.random() < 0.25:
            argv.insert(0, "-m")
        lines.append(argv)
    return lines


def all_keys() -> list[str]:
    return _leaf_keys() + GROUPS + HYDRA_KEYS + UNKNOWN_KEYS


def _outcomes(lines: list[list[str]]) -> collections.Counter:
    """Precheck each command line; fail on anything but a pass or one clear line."""
    tally = collections.Counter()
    for argv in lines:
        try:
            precheck(argv)
            tally["accepted"] += 1
        except UserError as err:
            message = str(err)
            assert message and "\n" not in message and "Traceback" not in message, (argv, message)
            assert err.exit_code == EXIT_CONFIG, (argv, err.exit_code)
            tally["refused with one line"] += 1
        except Exception as err:  # noqa: BLE001 - the point: name the command line that broke it
            pytest.fail(f"cl-run {argv!r}: {type(err).__name__}: {err}")
    return tally


def test_fuzz_precheck_quick_sample():
    """The first 40 command lines of the seeded fuzz, in the quick suite."""
    tally = _outcomes(command_lines(40, SEED, all_keys()))
    assert sum(tally.values()) == 40 and tally["refused with one line"] > 10


@pytest.mark.slow
def test_fuzz_precheck_300_command_lines():
    tally = _outcomes(command_lines(300, SEED, all_keys()))
    print(f"\nfuzz (precheck, seed {SEED}): 300 command lines: {dict(tally)}")
    assert sum(tally.values()) == 300 and tally["refused with one line"] > 100


def _sample(lines: list[list[str]], count: int) -> list[list[str]]:
    """`count` of the lines: every one the precheck accepts (those reach the data), then the
    first refused ones."""
    accepted = []
    for argv in lines:
        try:
            precheck(argv)
            accepted.append(argv)
        except UserError:
            pass
    return (accepted + [argv for argv in lines if argv not in accepted])[:count]


@pytest.mark.slow
def test_fuzz_real_command_line_sample(tmp_path):
    """A sample through `cl-run` itself, with no data to train on: exit 2 (config) or 3 (data),
    one line on stderr, no traceback, and nothing left behind."""
    mirror, work = tmp_path / "empty-mirror", tmp_path / "work"
    mirror.mkdir()
    work.mkdir()
    # Output folders stay in the (empty) working folder; training is never reached (no data).
    keys = [k for k in all_keys() if not k.startswith("hydra.") and k != "resume"]
    env = {k: v for k, v in os.environ.items() if k != "CL_RUNNER_DATA"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", CL_RUNNER_MIRROR=str(mirror))
    tally = collections.Counter()
    for argv in _sample(command_lines(200, SEED + 1, keys, with_sweeps=False), 12):
        result = subprocess.run([sys.executable, "-m", "cl_runner.cli", f"data.root={tmp_path / 'no-data'}", *argv],
                                capture_output=True, text=True, cwd=work, env=env, timeout=300)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode in (EXIT_CONFIG, EXIT_DATA), (argv, result.returncode, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("cl-run: error:") and "Traceback" not in result.stderr, \
            (argv, result.stderr)
        assert list(work.iterdir()) == [], (argv, list(work.iterdir()))
        tally[result.returncode] += 1
    print(f"\nfuzz (cl-run, seed {SEED + 1}): 12 command lines, exit codes {dict(tally)}")


# --- huge counts: refused by their bound or their size, or run (never an allocation error) ----------

COUNT_KEYS = {  # every integer key, with what makes it matter
    "dataset.num_tasks": [], "model.width": [], "model.depth": [], "train.epochs": [], "train.iterations": [],
    "train.batch_size": [], "train.eval_every": [], "train.eval_batch_size": [],
    "agem.memory_size": ["strategy=agem"], "agem.per_class": ["strategy=agem"], "agem.batch_size": ["strategy=agem"],
    "der.memory_size": ["strategy=der"], "der.batch_size": ["strategy=der"], "ewc.fisher_samples": ["strategy=ewc"],
    "gdumb.memory_size": ["strategy=gdumb"], "gdumb.per_class": ["strategy=gdumb"],
    "icarl.memory_size": ["strategy=icarl"], "icarl.per_class": ["strategy=icarl"],
    "replay.per_class": ["strategy=replay"], "replay.memory_size": ["strategy=replay", "replay.policy=reservoir"],
    "replay.batch_size": ["strategy=replay", "replay.mix=batch"],
}
HUGE = [2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**30]  # model.width=10**8 and such: tests/test_size_limits.py


@pytest.mark.slow
def test_fuzz_huge_counts_end_in_one_line_or_run(tiny_mnist, tmp_path):
    """Every integer key at every huge value: refused in one line (its bound, exit 2; its size,
    exit 2) or a run that ends (each is cut to 2 iterations; train.iterations itself is only
    prechecked: 2^31 - 1 of them is a long run, not an error), in this process under an address
    space limit of 6 GiB more than it uses now, so any allocation of what no machine holds fails."""
    import resource

    import cl_runner.run as run_module

    tally = collections.Counter()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    for key, context in COUNT_KEYS.items():
        for value in HUGE:
            argv = [*context, f"{key}={value}", f"data.root={tiny_mnist}", "data.verify=false", "device=cpu",
                    "train.progress=false"] + (["train.iterations=2"] if key != "train.iterations" else [])
            err = config_error_of(argv)
            if err is not None:
                assert err.exit_code == EXIT_CONFIG and "\n" not in str(err) and key in str(err), (argv, str(err))
                tally["refused by the precheck"] += 1
                continue
            if key == "train.iterations":
                tally["accepted (a long run)"] += 1
                continue
            used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (used + 6 * 2**30, hard))
            try:
                run_module.run(compose_cfg(argv), tmp_path / f"{key}-{value}")
                tally["ran to the end"] += 1
            except UserError as err:  # the size check, or the data's
                assert "\n" not in str(err) and err.exit_code in (EXIT_CONFIG, EXIT_DATA), (argv, str(err))
                tally[f"refused by its size (exit {err.exit_code})"] += 1
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(f"\nhuge counts: {len(COUNT_KEYS) * len(HUGE)} command lines: {dict(tally)}")
    assert sum(tally.values()) == len(COUNT_KEYS) * len(HUGE)
    assert tally["refused by the precheck"] >= len(COUNT_KEYS) * 4  # every value above 2^31 - 1
    assert tally["refused by its size (exit 2)"] >= 4  # model.width, model.depth, der and replay memories


def config_error_of(argv: list[str]):
    try:
        precheck(argv)
    except UserError as err:
        return err
    return None


# --- interpolations in the hydra.* keys: resolved as Hydra resolves them, before anything runs ---

# Every key Hydra resolves while it runs a job or a sweep, with the mode in which it does.
RESOLVED_HYDRA_KEYS = {"hydra.run.dir": "run", "hydra.sweep.dir": "sweep", "hydra.sweep.subdir": "sweep",
                       "hydra.job.name": "both", "hydra.job.chdir": "both", "hydra.output_subdir": "both",
                       "hydra.verbose": "both", "hydra.job_logging.root.level": "both",
                       "hydra.job_logging.handlers.file.filename": "both", "hydra.hydra_logging.root.level": "both",
                       "+hydra.job.env_set.CL_RUN_FUZZ": "both"}
BAD_INTERPOLATIONS = ["${oc.env:CL_RUN_FUZZ_UNSET}", "${nope}", "${oc.env:CL_RUN_FUZZ_UNSET}/x",
                      "a${nope}b", "${train.nope}", "${oc.decode:'[1'}"]


def _hydra_interpolations(keys: dict[str, str], values: list[str]) -> collections.Counter:
    tally = collections.Counter()
    for key, mode in keys.items():
        for value in values:
            for sweep in (False, True):
                argv = (["-m", "seed=0,1"] if sweep else []) + [f"{key}={value}"]
                try:
                    precheck(argv)
                    outcome = "accepted"
                except UserError as err:
                    assert "\n" not in str(err) and err.exit_code == EXIT_CONFIG, (argv, str(err))
                    assert key.lstrip("+") in str(err), (argv, str(err))
                    outcome = "refused with one line"
                except Exception as err:  # noqa: BLE001 - the point: name the command line that broke it
                    pytest.fail(f"cl-run {argv!r}: {type(err).__name__}: {err}")
                resolved = mode == "both" or mode == ("sweep" if sweep else "run")
                assert outcome == ("refused with one line" if resolved else "accepted"), (argv, outcome)
                tally[outcome] += 1
    return tally


def test_unresolvable_interpolations_in_hydra_keys_quick_sample():
    keys = {k: RESOLVED_HYDRA_KEYS[k] for k in ("hydra.sweep.subdir", "hydra.job.name")}
    assert _hydra_interpolations(keys, BAD_INTERPOLATIONS[:1])["refused with one line"] == 3


@pytest.mark.slow
def test_unresolvable_interpolations_in_hydra_keys_are_one_line():
    """Each key with each interpolation Hydra cannot resolve, in a plain run and in a sweep:
    refused in one line (exit 2) where Hydra resolves that key, never anything else."""
    tally = _hydra_interpolations(RESOLVED_HYDRA_KEYS, BAD_INTERPOLATIONS)
    # What Hydra sets only in a sweep's jobs, or once the folder is known, resolves only there.
    assert "cannot be resolved" in str(config_error(["hydra.run.dir=${hydra:job.id}"]))
    assert config_error(["-m", "seed=0,1", "hydra.sweep.subdir=${hydra:job.id}"]) is None
    assert "cannot be resolved" in str(config_error(["hydra.run.dir=${hydra:runtime.output_dir}"]))
    assert config_error(["hydra.job_logging.handlers.file.filename=${hydra:runtime.output_dir}/x.log"]) is None
    print(f"\nhydra.* interpolations: {sum(tally.values())} command lines: {dict(tally)}")


@pytest.mark.slow
def test_unresolvable_interpolations_in_hydra_keys_through_the_cli(tmp_path):
    """`hydra.sweep.subdir=${oc.env:NOPE}` was a 135-line traceback: now one line, exit 2, and
    nothing left behind, for it and the run's own folder and log settings."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    for argv in (["-m", "seed=0,1", "hydra.sweep.subdir=${oc.env:CL_RUN_FUZZ_UNSET}"],
                 ["hydra.run.dir=${oc.env:CL_RUN_FUZZ_UNSET}"], ["hydra.job.name=${oc.env:CL_RUN_FUZZ_UNSET}"],
                 ["hydra.job_logging.root.level=${oc.env:CL_RUN_FUZZ_UNSET}"], ["hydra.verbose=${nope}"]):
        result = subprocess.run([sys.executable, "-m", "cl_runner.cli", *argv], capture_output=True, text=True,
                                cwd=work, env=env, timeout=300)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == EXIT_CONFIG and len(lines) == 1, (argv, result.returncode, result.stderr)
        assert lines[0].startswith("cl-run: error: invalid config: hydra.") and "Traceback" not in result.stderr
        assert list(work.iterdir()) == [], (argv, list(work.iterdir()))
