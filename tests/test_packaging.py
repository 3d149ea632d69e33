"""`cl-run` works from a built wheel, not only from the source checkout (conf/ ships inside)."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure show what it printed (a bare CalledProcessError says nothing)."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _venv_seeing_our_dependencies(folder: Path) -> Path:
    """A fresh venv that imports this interpreter's installed packages (torch, hydra, ...) but
    not cl_runner's editable install. `--system-site-packages` would not do: run from inside
    a virtualenv it shows the *base* Python's packages, not the virtualenv's. A .pth file
    listing our site-packages folders does, and the editable install's own .pth (its import
    hook) is not processed from there, so cl_runner comes from the wheel only."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    target = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (target / "_cl_runner_test_deps.pth").write_text("\n".join(sorted(p for p in ours if Path(p).is_dir())) + "\n")
    return folder / "bin"


def test_wheel_ships_conf_and_cl_run_works_from_it(tmp_path):
    # Built from a copy of the sources, so that a stale build/ folder of the checkout cannot
    # slip old modules into the wheel.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                                 "data", "outputs", "multirun", ".venv"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", source])
    wheel = next((tmp_path / "dist").glob("cl_runner-*.whl"))
    bin_dir = _venv_seeing_our_dependencies(tmp_path / "venv")
    _run([bin_dir / "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel])
    where = _run([bin_dir / "python", "-c", "import cl_runner.config as c; print(c.CONF_DIR)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")) and where.endswith("cl_runner/conf")
    shown = _run([bin_dir / "cl-run", "--cfg", "job", "experiment=ewc_replay"], cwd=tmp_path)
    assert "ewc_replay" in shown.stdout and "width: 256" in shown.stdout
    bad = subprocess.run([bin_dir / "cl-run", "strategy=nope"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "strategy" in bad.stderr, bad.stderr
