"""A Ray head node on 127.0.0.1, for the real-cluster tests: `ray start --head --block` as a
child of this process, in a session of its own, with its temporary files in one folder.

Ray resolves 127.0.0.1 to the machine's network address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
is 0 (its single-machine mode), so that is set for the head, and must be set for the drivers
that join it (`head.env`); every port is chosen free on the loopback interface. Stopping sends
SIGTERM to `ray start`, which drains the node and stops the processes it started; whatever is
left of its session after 40 s is killed. By hand:

    python -m tests.cluster.ray_head     # starts it, prints the variables to export, Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .base import LocalCluster

INSTALL_HINT = "`make install-clusters` installs it (pip install -e \".[dev,ray]\")"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead(LocalCluster):
    """`with RayHead(num_cpus=2) as head:` starts the head, waits until it answers, and stops it
    on leaving, also when the block raised."""

    def __init__(self, num_cpus: int = 2, start_timeout: float = 90):
        self.num_cpus = num_cpus
        self.start_timeout = start_timeout
        self.address = f"127.0.0.1:{_free_port()}"
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for a driver (cl-run) to join this head with `ray.init(address="auto")`."""
        return {**os.environ, "RAY_ADDRESS": self.address, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self) -> None:
        try:
            import ray  # noqa: F401 - only to say clearly that it is missing
        except ImportError:
            raise RuntimeError(f"Ray is not installed here; {INSTALL_HINT}") from None
        # Short: Ray's unix sockets live below it, and their paths may not exceed 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="cl-run-ray-"))
        port = self.address.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                   "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={self.num_cpus}", "--num-gpus=0",
                   f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}",
                   f"--dashboard-agent-listen-port={_free_port()}", "--include-dashboard=false",
                   "--disable-usage-stats", f"--temp-dir={self.folder}"]
        with open(self.folder / "ray-start.log", "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start (waited up to {self.start_timeout:.0f} s)\n"
                                   + self.log())
            time.sleep(1)

    def _answers(self) -> bool:
        status = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "status", f"--address={self.address}"],
                                capture_output=True, text=True, env=self.env, timeout=60)
        return status.returncode == 0

    def log(self, lines: int = 40) -> str:
        path = self.folder / "ray-start.log" if self.folder else None
        if path is None or not path.exists():
            return ""
        return "--- ray start\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=40)
            with contextlib.suppress(ProcessLookupError):  # the raylet, GCS, workers: all in its session
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


if __name__ == "__main__":
    with RayHead() as head:
        print(f"export RAY_ADDRESS={head.address} RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
