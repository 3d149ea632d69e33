"""`cl-run` works from a built wheel, not only from the source checkout (conf/ ships inside)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_ships_conf_and_cl_run_works_from_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("cl_runner-*.whl"))
    # A venv that sees the installed dependencies but imports cl_runner from the wheel only.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], check=True)
    bin_dir = tmp_path / "venv" / "bin"
    subprocess.run([bin_dir / "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel], check=True, capture_output=True)
    where = subprocess.run([bin_dir / "python", "-c", "import cl_runner.cli as c; print(c.CONF_DIR)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")) and where.endswith("cl_runner/conf")
    shown = subprocess.run([bin_dir / "cl-run", "--cfg", "job", "experiment=ewc_replay"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "ewc_replay" in shown.stdout and "width: 256" in shown.stdout
    bad = subprocess.run([bin_dir / "cl-run", "strategy=nope"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "strategy" in bad.stderr
