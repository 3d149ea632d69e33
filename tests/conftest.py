"""Shared test fixtures: config composition, real MNIST, and tiny generated IDX data.

Real MNIST comes from $CL_RUNNER_DATA/mnist or the repository's data/mnist (`make data` fills it
from ../shared/data/mnist); a test that needs it fails, never skips, when it is missing. Real
Fashion-MNIST comes from $CL_RUNNER_DATA/fashion_mnist (`make data DATASET=fashion_mnist`), else
from Debian's package dataset-fashion-mnist (`make test` installs it as root where apt-get can),
fetched and checked into a temporary folder; without either a test that needs it skips, saying
so, except under CI=true, where it fails.

Tests never reach the network: a download goes to the test's own server on 127.0.0.1 or its
own folder (tests/test_download.py), and any other one to a loopback port where nothing
listens ($CL_RUNNER_MIRROR, set here for this process and every cl-run the tests start); this
process also refuses any connection beyond loopback.
"""

from __future__ import annotations

import gzip
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from cl_runner import config
from cl_runner.config import CONF_DIR
from cl_runner.sources import MIRROR_ENV

REPO = Path(__file__).resolve().parent.parent
NO_MIRROR = "http://127.0.0.1:9/"  # the discard port: nothing listens there, a download fails at once
config.register()  # the schema Hydra composes against, as `cl-run` registers it


def pytest_configure(config):
    # A shell's background job (`make test &`) starts with SIGINT ignored, and every process it
    # starts inherits that, so the Ctrl-C tests would find cl-run deaf to it. A handled signal is
    # reset to the default in a started program: take SIGINT back here, for this process and all.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ[MIRROR_ENV] = NO_MIRROR  # a test that serves files sets its own (monkeypatch)
    socket.socket.connect = _loopback_only(socket.socket.connect)
    socket.socket.connect_ex = _loopback_only(socket.socket.connect_ex)


def _loopback_only(connect):
    """`connect` refusing an internet address other than loopback (unix sockets pass)."""

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                ip = ipaddress.ip_address(socket.getaddrinfo(address[0], None)[0][4][0].split("%")[0])
            except (OSError, ValueError):
                ip = None
            if ip is None or not ip.is_loopback:
                raise OSError(f"tests never reach the network: a connection to {address[0]} was refused")
        return connect(sock, address)

    return guarded


def real_mnist_root() -> Path:
    root = Path(os.environ.get("CL_RUNNER_DATA", REPO / "data")) / "mnist"
    if not any(root.glob("train-images-idx3-ubyte*")):
        pytest.fail(f"real MNIST not found in {root}: run `make data` first (tests never download)")
    return root


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    return real_mnist_root()


FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")  # Debian's package dataset-fashion-mnist
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")  # as the Makefile reads it


def debian_fashion_mnist(elsewhere: Path | None = None) -> Path:
    """Debian's Fashion-MNIST folder; skip when it is missing (fail under CI=true). `elsewhere`:
    a folder that was looked in first, named in the message."""
    if not all((FASHION_MNIST_DEBIAN / f"{stem}.gz").is_file() for stem in IDX_FILES):
        looked = f"in {elsewhere} nor {FASHION_MNIST_DEBIAN}" if elsewhere else f"in {FASHION_MNIST_DEBIAN}"
        message = (f"real Fashion-MNIST not found {looked}: apt-get install dataset-fashion-mnist (as root; "
                   f"`make test` does it where it can)" + (", or `make data DATASET=fashion_mnist`" if elsewhere else ""))
        if under_ci():
            pytest.fail(f"{message} (CI=true: required)")
        pytest.skip(message)
    return FASHION_MNIST_DEBIAN


@pytest.fixture(scope="session")
def fashion_mnist_root(tmp_path_factory) -> Path:
    """The folder of the real Fashion-MNIST: $CL_RUNNER_DATA/fashion_mnist when it holds the four
    files, else a temporary folder filled from Debian's package by `make data`'s command (which
    checks every file's checksum). Neither there: skip, or fail under CI=true."""
    root = Path(os.environ.get("CL_RUNNER_DATA", REPO / "data")) / "fashion_mnist"
    if all(any(root.glob(f"{stem}*")) for stem in IDX_FILES):
        return root
    debian_fashion_mnist(elsewhere=root)
    target = tmp_path_factory.mktemp("fashion_mnist")
    command = [sys.executable, "-m", "cl_runner.sources", "fashion_mnist", str(target), "--mirror", str(FASHION_MNIST_DEBIAN)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return target


def config_error(overrides: list[str]):
    """The error `cl-run <overrides>` stops with before anything runs (composition or
    validation), or None when the configuration is fine."""
    from cl_runner.errors import UserError
    from cl_runner.precheck import precheck

    try:
        precheck(list(overrides))
    except UserError as err:
        return err
    return None


def interrupted_at(task: int, epoch: int):
    """cl_runner.run's train_epoch, raising KeyboardInterrupt (as Ctrl-C does) when `epoch` of
    `task` begins; for monkeypatching into cl_runner.run."""
    import cl_runner.run as run_module

    real = run_module.train_epoch

    def train_epoch(ctx, *args):
        if ctx.task == task and ctx.epoch == epoch:
            raise KeyboardInterrupt
        return real(ctx, *args)

    return train_epoch


def make_ctx(bench, task: int = 0, model=None, seed: int = 0, lr: float = 1e-2, final: bool = False):
    """A RunContext for driving plugins by hand: an MLP of width 16 and Adam, on the CPU."""
    import torch
    from omegaconf import OmegaConf

    from cl_runner.benchmarks import Prepared
    from cl_runner.context import RunContext
    from cl_runner.models.mlp import mlp

    if model is None:
        torch.manual_seed(seed)
        model = mlp(bench.in_features, bench.num_outputs, 16, 1, "relu")
        if bench.prepare is not None:  # stored bytes -> floats, as a run's model does
            model = Prepared(bench.prepare, model)
    ctx = RunContext(OmegaConf.create({"seed": seed}), bench, model, torch.optim.Adam(model.parameters(), lr=lr),
                     torch.device("cpu"))
    ctx.begin(task, final)
    return ctx


def compose_cfg(overrides: list[str] = (), config_name: str = "config"):
    """The config `cl-run <overrides>` would run, composed with Hydra's compose API."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the MNIST format)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A tiny MNIST look-alike: 600 train / 200 test images, each digit a distinct bright block
    (so it is learnable in a few steps), in the four IDX files. Load with data.verify=false."""
    root = tmp_path_factory.mktemp("tiny_mnist")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 600), ("t10k", 200)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(count, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 6, 4:24] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def cl_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `cl-run` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cl_runner.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
