"""How many CPU threads a run's torch uses, and how they wait: a policy that holds on a shared machine.

Two settings, both chosen from measurements (`make bench`, bench/load.py):

- How threads wait. An OpenMP worker that finishes its share of an operation waits for the
  others; by default GNU OpenMP spins on a core for 300,000 rounds first, so on a machine where
  other processes hold cores, a worker that was descheduled keeps the spinning ones (and the
  operation) waiting for a whole time slice. With one other busy process on two cores that
  made epochs 40-45x slower. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) holds up under load
  but pays a wake-up at every parallel region of an idle machine: the EWC run's training
  phase 1.3x plain PyTorch's. `prepare_openmp` (called by `cl-run` before torch is imported:
  OpenMP reads these variables once, when torch loads it) asks GNU OpenMP, the runtime of
  PyTorch's Linux wheels, for a short spin before sleeping (GOMP_SPINCOUNT=SPIN_ROUNDS: long
  enough to bridge the gap between the operations of one training step, too short to hold a
  core that another process wants), and Intel and LLVM OpenMP to sleep at once
  (KMP_BLOCKTIME=0, what passive waiting meant there). It also turns off the runtimes'
  dynamic thread counts (OMP_DYNAMIC, MKL_DYNAMIC: GNU OpenMP's picks fewer threads from the
  load average, which would make the numbers depend on what else the machine is doing). Each
  is left alone where the environment sets it (any of OMP_WAIT_POLICY, GOMP_SPINCOUNT and
  KMP_BLOCKTIME for the wait).
- How many threads (`train.threads`, default `auto`; `choose`). An integer is used as
  given. `auto` respects an OMP_NUM_THREADS set in the environment (the user's choice, or
  joblib's share of the cores for each of its workers); otherwise it is one thread per
  WORK_PER_THREAD multiply-adds of a training step (forward and backward of one batch,
  counted once on one example: `step_work`), at least one, at most the cores this
  process may use (`usable_cores`: its CPU affinity, within a cgroup CPU quota as
  containers and Slurm set it). Small models gain nothing from threads and lose much
  when a core is taken. The count never depends on the current load: a reduction split
  over threads rounds differently for each thread count, and the same config and seed
  must give the same numbers however busy the machine is.

Measured on 2 cores (Xeon, AVX-512; machine nearly idle: load average 0.1-2; one run of
alternating turns, so a rough guide), ms per training step alone -> beside one busy process:

    model (batch)    2 threads spinning     2 threads passive     1 thread
    mlp64 (1024)     2.6 -> 18.9  (7.3x)    3.9 -> 5.3   (1.4x)    3.5 -> 4.0  (1.1x)
    mlp256 (1024)    7.8 -> 28.4  (3.6x)    10.9 -> 15.2 (1.4x)    13.7 -> 12.9 (0.9x)
    cnn (128)        150 -> 350   (2.3x)    160 -> 257   (1.6x)    247 -> 235  (1.0x)

and with the machine crowded (load average ~10) spinning threads were 4-7x slower than
passive ones. Hence one thread per WORK_PER_THREAD: mlp64 at batch 1024 (0.16 G
multiply-adds per step) gets one thread, mlp256 (0.62 G) two, the CNN and the ResNet every
usable core. The spin (2 cores, AMD EPYC, 2026-12-03): the training phase of `cl-run
experiment=ewc train.epochs=5` (mlp256, two threads), seconds idle / beside one busy
process, medians of two to five turns each in two alternating series:

    GOMP_SPINCOUNT     300000 (default)   30000   10000   3000   1000   300   passive
    idle                      2.2           2.3     2.3     2.2    2.6    2.7    2.8
    beside a busy one         7.5          13.2     7.8     5.0    4.2    3.9    4.5

3000 rounds keep most of spinning's idle speed at about passive waiting's cost under load. A
round is one pause instruction, whose length differs between processors (a few cycles on
recent AMD cores, about 140 on Intel's since Skylake), so on another CPU the spin lasts
longer or shorter: `make bench-load` shows what it does there, and GOMP_SPINCOUNT or
OMP_WAIT_POLICY in the environment override it.

This module imports nothing heavy at its top: `prepare_openmp` runs before torch is loaded.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

# Set unless the environment already says how OpenMP threads wait, or whether thread counts may vary.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# Rounds a GNU OpenMP thread spins before it sleeps (the measurements below); Intel's and LLVM's
# runtimes sleep at once.
SPIN_ROUNDS = 3000
WAIT = {"GOMP_SPINCOUNT": str(SPIN_ROUNDS), "KMP_BLOCKTIME": "0"}
PINNED = {"OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE"}
# Multiply-adds of a training step per thread: below it another thread costs more than it gives
# (the measurements above).
WORK_PER_THREAD = 3e8


def prepare_openmp(environ=os.environ) -> list[str]:
    """A short spin before sleeping and fixed thread counts for the OpenMP and MKL runtimes torch loads,
    where the environment does not say otherwise; returns the variables set. Nothing is set
    once torch is imported: the runtimes have read them already."""
    if "torch" in sys.modules:
        return []
    wanted = openmp_environment(environ)
    environ.update(wanted)
    return [f"{name}={value}" for name, value in wanted.items()]


def openmp_environment(environ) -> dict[str, str]:
    """The variables `prepare_openmp` sets, given the environment."""
    wanted = {} if any(name in environ for name in WAIT_VARIABLES) else dict(WAIT)
    wanted.update({name: value for name, value in PINNED.items() if name not in environ})
    return wanted


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, within a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole cores of a CFS quota (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us), None when unlimited."""
    try:
        text = (root / "cpu.max").read_text().split()
        quota, period = (None if text[0] == "max" else int(text[0])), int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            return None
        quota = None if quota <= 0 else quota
    return None if quota is None or period <= 0 else max(1, math.ceil(quota / period))


def choose(setting, work: float, cores: int, environ=os.environ) -> tuple[int | None, str]:
    """(threads to set, or None to keep torch's own; why), for `train.threads` = `setting`
    and `work` multiply-adds per training step."""
    if setting != "auto":
        return int(setting), f"train.threads={setting}"
    if environ.get("OMP_NUM_THREADS"):
        return None, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']}"
    wanted = max(1, int(work // WORK_PER_THREAD))
    return min(wanted, cores), f"auto: {work / 1e9:.2g} G multiply-adds per step, {cores} usable cores"


def step_work(model, input_shape: tuple[int, ...], batch_size: int) -> float:
    """Multiply-adds of one training step of `model` (forward and backward, about three
    forwards) on batches of `batch_size`, from its linear and convolutional layers, counted
    on one example of zeros in eval mode (nothing in the model changes)."""
    import torch
    from torch import nn

    from .models import evaluating

    counted = []

    def count(module, args, out):
        if isinstance(module, nn.Linear):
            counted.append(out.numel() * module.in_features)
        else:  # a convolution: every output value sums kernel x input channels (of its group)
            counted.append(out.numel() * module.weight[0].numel())

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), evaluating(model):
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return 3.0 * batch_size * sum(counted)


def waiting(environ=os.environ) -> str:
    """How OpenMP threads wait in this process, for the log."""
    said = [f"{name}={environ[name]}" for name in WAIT_VARIABLES if name in environ]
    return " ".join(said) or "OpenMP's default wait (spinning)"
