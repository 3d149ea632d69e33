"""The data faults found by the fault-injection review, each ending in one DataError line that
names the absolute path: through sources.load (fast), then through `cl-run` (exit 3, one line
on stderr, nothing trained; slow: one process each)."""

from __future__ import annotations

import gzip
import os
import pathlib
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

from cl_runner import sources
from cl_runner.errors import DataError

from .conftest import REPO, write_idx
from .standins import IDX_STEMS, write_idx_folder

def _corrupt_deflate(path: pathlib.Path) -> None:
    """Change one byte inside the deflate stream so that zlib itself fails (not the CRC check)."""
    data = path.read_bytes()
    for at in range(len(data) // 2, len(data) - 8):
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            path.write_bytes(damaged)
            return
        except (OSError, EOFError):
            continue
    raise AssertionError("no single byte change breaks the deflate stream")


def test_corrupted_deflate_stream_is_a_data_error(tmp_path):
    write_idx_folder(tmp_path)
    _corrupt_deflate(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is unreadable: damaged \(Error -3"):
        sources.load("mnist", tmp_path, download=False, verify=False)


def test_data_root_that_is_a_file(tmp_path):
    (tmp_path / "mnist").write_text("not a folder")
    with pytest.raises(DataError, match=f"data.root {tmp_path / 'mnist'} is a file, not a folder"):
        sources.load("mnist", tmp_path / "mnist", download=True, verify=True)
    with pytest.raises(DataError, match="is a file, not a folder"):
        sources.load("cifar10", tmp_path / "mnist", download=True, verify=True)


def test_a_folder_where_a_file_is_expected(tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").mkdir()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is unreadable \(Is a directory\)"):
        sources.load("mnist", tmp_path, download=True, verify=False)


def test_permission_denied_on_a_file_and_on_the_folder(tmp_path, monkeypatch):
    write_idx_folder(tmp_path)
    real_read, real_exists = pathlib.Path.read_bytes, pathlib.Path.exists

    def denied(path, *args):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda p: denied(p) if p.name.startswith("train-labels") else real_read(p))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is unreadable \(Permission denied\)"):
        sources.load("mnist", tmp_path, download=False, verify=False)
    # What stat() inside a folder without read/search permission raises (Python 3.11 passes it on).
    monkeypatch.setattr(pathlib.Path, "exists", lambda p: denied(p) if p.parent == tmp_path else real_exists(p))
    with pytest.raises(DataError, match="is unreadable \\(Permission denied\\)"):
        sources.load("mnist", tmp_path, download=True, verify=False)


def _as_unprivileged(command: list[str]) -> list[str]:
    """As root, drop the capabilities that bypass file permissions, so chmod 000 really bites."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root without setpriv (util-linux): cannot make file permissions apply"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]


def test_chmod_000_folder_for_real(tmp_path, mnist_root):
    locked = tmp_path / "mnist"
    locked.mkdir()
    for stem in IDX_STEMS:
        shutil.copy(mnist_root / f"{stem}.gz", locked)
    locked.chmod(0)
    try:
        result = subprocess.run(_as_unprivileged([sys.executable, "-m", "cl_runner.sources", "mnist", str(locked)]),
                                capture_output=True, text=True, cwd=REPO, timeout=120)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{locked}/train-images-idx3-ubyte.gz is unreadable (Permission denied)" in result.stderr


def test_out_of_range_label_is_refused_at_load_even_unverified(tmp_path):
    write_idx_folder(tmp_path)
    labels = np.arange(30) % 10
    labels[7] = 255
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: label 255 is out of range \(allowed 0\.\.9\)"):
        sources.load("kmnist", tmp_path, download=False, verify=False)


def test_messages_name_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        sources.load("mnist", "data/mnist", download=False)
    assert f"mnist not found in {tmp_path / 'data' / 'mnist'}:" in str(err.value)
    assert all(stem in str(err.value) for stem in IDX_STEMS)
    write_idx_folder(tmp_path / "data" / "mnist")
    write_idx(tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz", np.full(30, 12))
    with pytest.raises(DataError, match=f"^{tmp_path}/data/mnist/t10k-labels-idx1-ubyte.gz: label 12"):
        sources.load("mnist", "data/mnist", download=False, verify=False)


# --- the same faults through `cl-run` ----------------------------------------------------------------


def _cl_run(tmp_path, *overrides: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # downloads go nowhere (conftest's $CL_RUNNER_MIRROR)
    command = [sys.executable, "-m", "cl_runner.cli", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
               "train.progress=false", "device=cpu"]
    return subprocess.run(_as_unprivileged(command), capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**env, "PYTHONPATH": str(REPO)})


def _fault(kind: str, tmp_path: pathlib.Path) -> tuple[list[str], str]:
    """Plant one fault; return the overrides that meet it and what the one line must say."""
    root = tmp_path / "mnist"
    if kind == "root is a file":
        root.write_text("x")
        return [f"data.root={root}"], f"data.root {root} is a file, not a folder"
    if kind == "download fails":
        return [f"data.root={tmp_path / 'new' / 'mnist'}"], "could not download train-images-idx3-ubyte.gz"
    write_idx_folder(root)
    if kind == "corrupted deflate":
        _corrupt_deflate(root / "train-images-idx3-ubyte.gz")
        return [f"data.root={root}", "data.verify=false"], f"{root}/train-images-idx3-ubyte.gz is unreadable: damaged"
    if kind == "chmod 000 folder":
        root.chmod(0)
        return [f"data.root={root}"], f"{root}/train-images-idx3-ubyte.gz is unreadable (Permission denied)"
    if kind == "folder in a file's place":
        (root / "t10k-labels-idx1-ubyte.gz").unlink()
        (root / "t10k-labels-idx1-ubyte.gz").mkdir()
        return [f"data.root={root}", "data.verify=false"], f"{root}/t10k-labels-idx1-ubyte.gz is unreadable"
    labels = np.arange(30) % 10
    labels[3] = 255
    write_idx(root / "train-labels-idx1-ubyte.gz", labels)
    return [f"data.root={root}", "data.verify=false"], f"{root}/train-labels-idx1-ubyte.gz: label 255 is out of range"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["corrupted deflate", "root is a file", "chmod 000 folder", "folder in a file's place",
                                  "label 255", "download fails"])
def test_cl_run_exits_3_with_one_line(kind, tmp_path):
    overrides, expected = _fault(kind, tmp_path)
    try:
        result = _cl_run(tmp_path, *overrides)
    finally:
        if kind == "chmod 000 folder":
            (tmp_path / "mnist").chmod(0o755)  # so that pytest can remove it
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()
    assert not (tmp_path / "new").exists()  # a failed download leaves no folder behind


@pytest.mark.slow
def test_cl_run_names_the_absolute_folder(tmp_path):
    result = _cl_run(tmp_path, "data.root=data/missing", "data.download=false", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert f"mnist not found in {tmp_path / 'data' / 'missing'}:" in result.stderr
