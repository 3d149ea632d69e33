"""A one-node Slurm cluster that lives in one temporary folder, for the real-cluster tests.

Debian's slurm-wlm and munge packages (`make install-clusters`) provide the daemons. munged,
slurmctld and slurmd run as root, in the foreground, as children of this process, each in a
session of its own; every file they use (munge key and socket, slurm.conf, state, spool, logs)
is in the folder, so the system's own Slurm or munge, if any, is neither used nor changed.
Clients find the cluster through SLURM_CONF (`cluster.env`). The node is this machine, on
127.0.0.1, with one CPU-only partition and no accounting (so `sacct` fails, which submitit
reports as a warning and works around). By hand:

    python -m tests.cluster.slurm        # starts it, prints `export SLURM_CONF=...`, Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .base import LocalCluster

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "squeue", "scancel")
INSTALL_HINT = "`make install-clusters` installs them (as root, Debian/Ubuntu: apt-get install slurm-wlm munge)"


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mib() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024  # "MemTotal: N kB"


class SlurmCluster(LocalCluster):
    """`with SlurmCluster() as cluster:` starts the cluster, waits until its node is idle, and
    stops everything on leaving, also when the block raised."""

    def __init__(self, partition: str = "cpu", start_timeout: float = 60):
        self.partition = partition
        self.node = socket.gethostname().split(".")[0]  # slurmctld and slurmd insist on the host's name
        self.start_timeout = start_timeout
        self.folder: Path | None = None
        self.daemons: dict[str, subprocess.Popen] = {}  # by program name, in the order started

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's clients (sbatch, srun, sinfo, ...) to use this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.folder / "slurm.conf")}

    def start(self) -> None:
        missing = missing_programs()
        if missing:
            raise RuntimeError(f"Slurm is not installed here (missing: {', '.join(missing)}); {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise RuntimeError("the test cluster's daemons run as root: run the Slurm test as root")
        # munged wants every user to be able to reach its socket's folder: not a 0700 pytest tmp_path.
        self.folder = Path(tempfile.mkdtemp(prefix="cl-run-slurm-"))
        self.folder.chmod(0o755)
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir()
        key = self.folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.folder / "plugstack.conf").write_text("")  # no SPANK plugins of the system's
        (self.folder / "slurm.conf").write_text(self._slurm_conf())

        self._daemon("munged", "--foreground", f"--key-file={key}", f"--socket={self.folder / 'munge.sock'}",
                     f"--pid-file={self.folder / 'munged.pid'}", f"--seed-file={self.folder / 'munged.seed'}",
                     f"--log-file={self.folder / 'munged.log'}")
        self._wait("munged's socket", lambda: (self.folder / "munge.sock").exists())
        conf = str(self.folder / "slurm.conf")
        self._daemon("slurmctld", "-D", "-f", conf)
        self._daemon("slurmd", "-D", "-f", conf, "-N", self.node)
        self._wait(f"node {self.node} to be idle in sinfo", self._node_idle)

    def _slurm_conf(self) -> str:
        return f"""\
ClusterName=cl-run-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.folder / 'munge.sock'}
CredType=cred/munge
StateSaveLocation={self.folder / 'state'}
SlurmdSpoolDir={self.folder / 'spool'}
SlurmctldPidFile={self.folder / 'slurmctld.pid'}
SlurmdPidFile={self.folder / 'slurmd.pid'}
PlugStackConfig={self.folder / 'plugstack.conf'}
# No cgroups in a container: plain process tracking, no task binding, no accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# One job per core, so the runs of a sweep run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mib()} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _daemon(self, program: str, *args: str) -> None:
        with open(self.folder / f"{program}.out", "wb") as log:
            self.daemons[program] = subprocess.Popen([program, *args], stdout=log, stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL, cwd=self.folder, start_new_session=True)

    def _node_idle(self) -> bool:
        for program, daemon in self.daemons.items():
            if daemon.poll() is not None:
                raise RuntimeError(f"{program} exited with code {daemon.returncode}\n{self.logs()}")
        state = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%T"], capture_output=True, text=True,
                               env=self.env, timeout=10)
        return state.stdout.strip() == "idle"

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster did not start: waited {self.start_timeout:.0f} s for {what}\n"
                                   + self.logs())
            time.sleep(0.5)

    def logs(self, lines: int = 30) -> str:
        """The last lines of each daemon's log, for failure messages."""
        out = []
        for path in sorted(self.folder.glob("*.out")) if self.folder else ():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged (SIGTERM, then SIGKILL)."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            subprocess.run(["scancel", f"--partition={self.partition}"], env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self._jobs_left():
                time.sleep(0.5)
        for daemon in reversed(self.daemons.values()):
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait(timeout=15)
        self.daemons.clear()
        if self.folder is not None:
            self._kill_strays()
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _kill_strays(self) -> None:
        """slurmd starts a slurmstepd per job in a session of its own, working in this folder:
        one left behind by a job that did not end cleanly is found by that and killed."""
        for proc in Path("/proc").iterdir():
            try:
                cwd = os.readlink(proc / "cwd")
            except OSError:  # not a process, or gone, or a zombie
                continue
            if proc.name.isdigit() and Path(cwd).is_relative_to(self.folder):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)

    def _jobs_left(self) -> bool:
        queue = subprocess.run(["squeue", "--noheader"], capture_output=True, text=True, env=self.env, timeout=10)
        return queue.returncode == 0 and bool(queue.stdout.strip())


if __name__ == "__main__":
    with SlurmCluster() as cluster:
        print(f"export SLURM_CONF={cluster.folder / 'slurm.conf'}   # partition {cluster.partition}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
