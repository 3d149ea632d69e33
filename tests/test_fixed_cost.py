"""What keeps a run's fixed cost low, and that it changes no result: the cache of decoded data
beside the data set, small data sets held as floats, the run's own reading of its logs without
pandas, the per-phase time line in cl-run.log, one composition of a plain run's config, the
process's quick exit, the sweep workers' thread split, and bench/plain.py (the baseline
`bench/startup.py` compares with)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import cl_runner.run as run_module
from cl_runner import benchmarks, diagnose, metrics, sources
from cl_runner.errors import DataError
from cl_runner.sources import cache
from cl_runner.table import Table

from .conftest import REPO, compose_cfg, interrupted_at

benchmark_build = importlib.import_module("cl_runner.benchmarks.build")  # the module, not its build()

TINY = ("data.verify=false", "train.iterations=3", "train.progress=false", "device=cpu")


@pytest.fixture
def data_folder(tiny_mnist, tmp_path) -> Path:
    folder = tmp_path / "mnist"
    shutil.copytree(tiny_mnist, folder, ignore=shutil.ignore_patterns(cache.FOLDER))
    cache._LOADED.clear()  # as in a new process
    return folder


def counting_source(calls: list):
    """MNIST's source, counting its decodes."""
    real = sources.SOURCES["mnist"]

    def decode(source, root, verify):
        calls.append(verify)
        return real.decode(source, root, verify)

    return dataclasses.replace(real, decode=decode)


def same_arrays(a: sources.Arrays, b: sources.Arrays) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) and getattr(a, k).dtype == getattr(b, k).dtype
               for k in ("train_x", "train_y", "test_x", "test_y")) and a.num_classes == b.num_classes


def fresh_process() -> None:
    cache._LOADED.clear()


def test_cache_is_built_once_then_read(data_folder):
    calls = []
    source = counting_source(calls)
    first = cache.decoded(source, data_folder, verify=False)
    assert calls == [False] and (data_folder / cache.FOLDER / cache.MANIFEST).is_file()
    fresh_process()
    second = cache.decoded(source, data_folder, verify=False)
    assert calls == [False]  # read from the cache, not decoded
    assert same_arrays(first, second) and same_arrays(second, sources.SOURCES["mnist"].decode(
        sources.SOURCES["mnist"], data_folder, False))


def test_cache_is_rebuilt_when_a_data_file_changes(data_folder):
    calls = []
    source = counting_source(calls)
    cache.decoded(source, data_folder, verify=False)
    labels = data_folder / "train-labels-idx1-ubyte.gz"
    stat = labels.stat()
    labels.write_bytes(labels.read_bytes())  # same bytes, same size
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    fresh_process()
    cache.decoded(source, data_folder, verify=False)
    assert calls == [False, False]  # the change time gave it away
    (data_folder / "extra.txt").write_text("a new file")
    fresh_process()
    cache.decoded(source, data_folder, verify=False)
    assert calls == [False, False, False]


def test_a_damaged_cache_file_is_caught_and_rebuilt(data_folder, caplog):
    calls = []
    source = counting_source(calls)
    expected = cache.decoded(source, data_folder, verify=False)
    manifest = json.loads((data_folder / cache.FOLDER / cache.MANIFEST).read_text())
    array_file = data_folder / cache.FOLDER / manifest["arrays"]["train_x"]["file"]
    content = bytearray(array_file.read_bytes())
    content[-1] ^= 0xFF  # one pixel, same size
    array_file.write_bytes(bytes(content))
    fresh_process()
    again = cache.decoded(source, data_folder, verify=False)
    assert calls == [False, False] and same_arrays(expected, again)
    assert "damaged" in caplog.text
    fresh_process()
    cache.decoded(source, data_folder, verify=False)
    assert calls == [False, False]  # the rebuilt cache is good


def test_a_cache_built_unverified_is_not_trusted_for_a_verified_load(data_folder):
    calls = []
    source = counting_source(calls)
    cache.decoded(source, data_folder, verify=False)
    fresh_process()
    with pytest.raises(DataError):
        cache.decoded(source, data_folder, verify=True)  # the tiny files fail MNIST's checksums
    assert calls == [False, True]


def test_no_cache_where_it_cannot_be_written(data_folder):
    (data_folder / cache.FOLDER).write_text("a file where the cache folder would go")
    calls = []
    source = counting_source(calls)
    first = cache.decoded(source, data_folder, verify=False)
    fresh_process()
    second = cache.decoded(source, data_folder, verify=False)
    assert calls == [False, False] and same_arrays(first, second)


def test_one_process_reuses_its_arrays_unless_they_were_changed(data_folder):
    calls = []
    source = counting_source(calls)
    first = cache.decoded(source, data_folder, verify=False)
    assert cache.decoded(source, data_folder, verify=False) is first  # a sweep's next run, same process
    first.train_x[:] = 0  # a run writing into what it was given
    third = cache.decoded(source, data_folder, verify=False)
    assert third is not first and third.train_x.any()  # read again (from the cache on disk)
    assert calls == [False]


def test_make_data_reads_the_files_whatever_the_cache_says(data_folder):
    calls = []
    source = counting_source(calls)
    cache.decoded(source, data_folder, verify=False)
    cache.decoded(source, data_folder, verify=False, read=False)
    assert calls == [False, False]


def test_real_mnist_from_the_cache_equals_the_files(mnist_root, tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_root, folder, ignore=shutil.ignore_patterns(cache.FOLDER))
    fresh_process()
    decoded = sources.load("mnist", folder, download=False, verify=True)  # checks the MD5s, builds the cache
    fresh_process()
    calls = []
    cached = cache.decoded(counting_source(calls), folder, verify=True)
    assert calls == [] and same_arrays(decoded, cached)


def test_table_answers_as_pandas_does(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for train_task in (-1, 0, 1, 2):
        for epoch in ((0,) if train_task < 0 else (1, 2)):
            for split in ("val", "test"):
                for eval_task in range(3):
                    rows.append((train_task, epoch, eval_task, split, rng.random(), rng.random()))
    rows.append((1, 2, 0, "test", 0.5, 0.25))  # a repeated row: both average it
    path = tmp_path / "metrics.csv"
    pd.DataFrame(rows, columns=["train_task", "epoch", "eval_task", "split", "loss", "acc"]).to_csv(path, index=False)
    ours, theirs = Table.read_csv(path), pd.read_csv(path)
    np.testing.assert_array_equal(metrics.accuracy_matrix(ours), metrics.accuracy_matrix(theirs))
    np.testing.assert_array_equal(metrics.initial_accuracy(ours), metrics.initial_accuracy(theirs))
    log = tmp_path / "train_log.csv"
    pd.DataFrame({"train_task": [0, 0, 1, 1], "epoch": [1, 2, 1, 2], "global_epoch": [1, 2, 3, 4],
                  "loss": [1.0, 0.5, 900.0, 800.0], "ce": [1.0, 0.5, 2.0, 0.0], "ewc": [0.0, 0.0, 898.0, 800.0],
                  "seconds": [0.1] * 4}).to_csv(log, index=False)
    matrix = np.array([[0.99, 0.0], [0.98, 0.1]])
    found = diagnose.warnings(matrix, Table.read_csv(log), ["0-4", "5-9"], [0.2, 0.2])
    assert found == diagnose.warnings(matrix, pd.read_csv(log), ["0-4", "5-9"], [0.2, 0.2])
    assert len(found) == 1 and "449 times" in found[0]


def test_a_malformed_log_is_an_error(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("train_task,epoch,acc\n0,1,0.5\n0,2\n")
    with pytest.raises(ValueError, match="line 3 has 2 fields"):
        Table.read_csv(path)


CHECK_EXIT = """
import atexit, sys
atexit.register(lambda: print("pandas imported:", "pandas" in sys.modules, file=sys.stderr))
from cl_runner.cli import main
sys.argv[0] = "cl-run"
main()
"""


@pytest.mark.slow
def test_a_run_writes_its_time_line_without_pandas_and_ends_at_once(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", CHECK_EXIT, *TINY, f"data.root={tiny_mnist}", f"hydra.run.dir={out}"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pandas imported: False" in result.stderr  # the exit handlers ran before the quick exit
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    line = next(line for line in (out / "cl-run.log").read_text().splitlines() if "] time: " in line)
    seconds = dict((name, float(value)) for name, value in
                   (part.strip().rsplit(" ", 2)[:2] for part in line.split("] time: ")[1].split(",")))
    assert list(seconds) == ["import", "config", "data", "model", "training", "evaluation", "outputs", "total"]
    assert all(value >= 0 for value in seconds.values())
    assert sum(v for k, v in seconds.items() if k != "total") <= seconds["total"] + 0.05


@pytest.mark.slow
def test_a_profiled_run_still_writes_its_profile(tiny_mnist, tmp_path):
    profile = tmp_path / "run.prof"
    result = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "cl_runner.cli", *TINY,
                             f"data.root={tiny_mnist}", f"hydra.run.dir={tmp_path / 'run'}"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert profile.stat().st_size > 0  # not skipped by the quick exit


@pytest.mark.slow
def test_joblib_workers_split_the_cores(tiny_mnist, tmp_path):
    import joblib

    sweep = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "cl_runner.cli", "-m", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", "seed=0,1", *TINY, f"data.root={tiny_mnist}",
                             f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = max(joblib.cpu_count() // 2, 1)
    for job in ("0", "1"):
        log = (sweep / job / "cl-run.log").read_text()
        assert f"({expected} CPU threads)" in log, log[:2000]
    assert expected * 2 <= max(joblib.cpu_count(), 2)


def _plain():
    spec = importlib.util.spec_from_file_location("plain", REPO / "bench" / "plain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("stored_as", ["floats", "bytes"])
def test_the_training_bench_runs_on_either_storage(mnist_root, tmp_path, monkeypatch, stored_as):
    # `make bench` must not depend on how the benchmark holds its images (it once fed bytes to
    # a bare model); a tiny round of every measurement, in this process.
    if stored_as == "bytes":
        monkeypatch.setattr(benchmark_build, "FLOAT_STORAGE_LIMIT", 0)
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when run as a script: its neighbour model_fisher.py
    spec = importlib.util.spec_from_file_location("bench_training", REPO / "bench" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results.json"
    monkeypatch.setattr(sys, "argv", ["bench.py", "--device", "cpu", "--epochs", "1", "--repeats", "1", "--warmup", "0",
                                      "--fisher-samples", "64", "--model-fisher-samples", "4",
                                      "--data-root", str(mnist_root), "--out", str(out)])
    bench.main()
    results = json.loads(out.read_text())
    assert results["training"]["mlp64"]["seconds_per_epoch"]["ours"] > 0


def test_plain_baseline_fishers_agree():
    plain = _plain()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.LeakyReLU(), torch.nn.Linear(16, 10))
    x, y = torch.randn(300, 20), torch.randint(0, 10, (300,))
    closed, per_example = plain.fisher_closed_form(model, x, y), plain.fisher_diagonal(model, x, y, chunk=64)
    for name in per_example:
        torch.testing.assert_close(closed[name], per_example[name], rtol=1e-4, atol=1e-6)
        assert per_example[name].max() == pytest.approx(1.0)


def test_nested_phases_count_their_time_once(monkeypatch):
    from cl_runner import timing

    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(timing, "_spent", timing.defaultdict(float))
    with timing.phase("outputs"):
        now[0] += 1.0
        with timing.phase("evaluation"):
            now[0] += 2.0
        now[0] += 4.0
    with timing.phase("evaluation"):
        now[0] += 8.0
    assert (timing._spent["outputs"], timing._spent["evaluation"]) == (5.0, 10.0)


# --- small data sets held as floats ---------------------------------------------------------


def _run_metrics(tiny_mnist, folder: Path, *overrides: str) -> bytes:
    run_module.run(compose_cfg([*TINY, f"data.root={tiny_mnist}", *overrides]), folder)
    return (folder / "metrics.csv").read_bytes()


def _stored_dtypes(tiny_mnist) -> set:
    bench = benchmarks.build(compose_cfg([*TINY, f"data.root={tiny_mnist}"]), torch.device("cpu"))
    return {split.x.dtype for task in bench.tasks for split in (task.train, task.val, task.test)}


def test_small_data_is_held_as_floats_with_the_same_numbers(tiny_mnist, tmp_path, monkeypatch):
    assert _stored_dtypes(tiny_mnist) == {torch.float32}
    as_floats = _run_metrics(tiny_mnist, tmp_path / "floats", "strategy=ewc_replay")
    monkeypatch.setattr(benchmark_build, "FLOAT_STORAGE_LIMIT", 0)  # as a data set too large for floats
    assert _stored_dtypes(tiny_mnist) == {torch.uint8}
    assert _run_metrics(tiny_mnist, tmp_path / "bytes", "strategy=ewc_replay") == as_floats


def test_a_checkpoint_holding_byte_images_resumes_to_the_same_numbers(tiny_mnist, tmp_path, monkeypatch):
    # A replay memory saved as uint8 (by a version that kept MNIST as bytes, here the limit
    # set to 0) must not join the float examples as values of 0-255 when resumed.
    whole = _run_metrics(tiny_mnist, tmp_path / "whole", "strategy=replay")
    folder = tmp_path / "resumed"
    monkeypatch.setattr(benchmark_build, "FLOAT_STORAGE_LIMIT", 0)
    monkeypatch.setattr(run_module, "train_epoch", interrupted_at(task=1, epoch=2))
    with pytest.raises(KeyboardInterrupt):
        _run_metrics(tiny_mnist, folder, "strategy=replay")
    monkeypatch.undo()
    saved = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert saved["plugins"][0]["memory"][0]["x"].dtype == torch.uint8
    run_module.run(compose_cfg([*TINY, f"data.root={tiny_mnist}", f"resume={folder}"]), tmp_path / "ignored")
    assert (folder / "metrics.csv").read_bytes() == whole


# --- one composition of a plain run's config ------------------------------------------------

COUNT_COMPOSITIONS = """
import atexit, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
calls, real = [], ConfigLoaderImpl.load_configuration
ConfigLoaderImpl.load_configuration = lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
atexit.register(lambda: print("compositions:", len(calls), file=sys.stderr))
from cl_runner.cli import main
sys.argv[0] = "cl-run"
main()
"""


HYDRA_MAIN = """
import sys
import hydra
from cl_runner import config
from cl_runner.cli import hydra_main
config.register()
sys.argv[0] = "cl-run"
hydra.main(version_base="1.3", config_path=str(config.CONF_DIR), config_name="config")(hydra_main)()
"""


def _hydra_records(folder: Path) -> dict[str, str]:
    return {name: (folder / ".hydra" / name).read_text().replace(str(folder), "<folder>")
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}


@pytest.mark.slow
def test_a_plain_run_composes_its_config_once_and_records_what_hydra_main_would(tiny_mnist, tmp_path):
    args = [*TINY, f"data.root={tiny_mnist}", "strategy=ewc"]
    # The folder quoted, as cl-run hands Hydra the one it claimed: one text in both records.
    plain = subprocess.run([sys.executable, "-c", COUNT_COMPOSITIONS, *args, f"hydra.run.dir='{tmp_path / 'plain'}'"],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert "compositions: 1" in plain.stderr  # the precheck's; hydra.main would compose twice more
    through_hydra = subprocess.run([sys.executable, "-c", HYDRA_MAIN, *args, f"hydra.run.dir='{tmp_path / 'hydra'}'"],
                                   capture_output=True, text=True, cwd=REPO, timeout=300)
    assert through_hydra.returncode == 0, through_hydra.stderr
    assert _hydra_records(tmp_path / "plain") == _hydra_records(tmp_path / "hydra")
    assert (tmp_path / "plain" / "metrics.csv").read_bytes() == (tmp_path / "hydra" / "metrics.csv").read_bytes()
