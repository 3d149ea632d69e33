"""Which device a run uses, and the process-wide torch settings a run makes, undone at its end.

`setup_torch` sets what the config asks for:

- the seed;
- TF32 (float32 matmuls and convolutions on Ampere and later GPUs with 10-bit mantissas):
  `train.tf32` null (default) keeps PyTorch's own defaults (TF32 for cuDNN convolutions,
  not for matmuls), except under `deterministic=true`, which turns TF32 off for both (full
  float32, as on the CPU); `train.tf32=true`/`false` turns it on/off for both;
- `cudnn.benchmark` (cuDNN times its convolution algorithms once per shape and keeps the
  fastest) unless `deterministic=true`, which instead switches on PyTorch's deterministic
  algorithms and cuDNN's deterministic mode (with the cuBLAS workspace setting they need).
  On a GPU, bitwise-equal reruns need deterministic=true, as in any PyTorch script;

`set_threads` applies the CPU thread policy of `cl_runner.threads` once the model is built.
`torch_state()` (a context manager, also usable as a decorator: `cl_runner.run.run` is
wrapped in it) records all of these global settings when a run starts and puts them back
when it ends, however it ends, so that the next run in the same process (a sweep's jobs
under the basic or joblib n_jobs=1 launcher, `make notebook`, the tests) starts from what
the process had, not from what the last run left.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from . import threads
from .errors import ConfigError

_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when PyTorch sees it, else the CPU; `cuda` without CUDA is a config error."""
    name = str(name)
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available on this machine; use device=auto or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# --- TF32: PyTorch 2.9 has per-backend `fp32_precision` strings; older ones `allow_tf32` flags.

def _tf32_settings() -> list[tuple[object, str]]:
    """(object, attribute) of every TF32 setting, in the API this PyTorch has."""
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):
        return [(backends, "fp32_precision"), (backends.cuda.matmul, "fp32_precision"),
                (backends.cudnn, "fp32_precision"), (backends.cudnn.conv, "fp32_precision"),
                (backends.cudnn.rnn, "fp32_precision")]
    return [(backends.cuda.matmul, "allow_tf32"), (backends.cudnn, "allow_tf32")]


def set_tf32(allow: bool) -> None:
    """TF32 on or off for CUDA matmuls and cuDNN convolutions."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        value = "tf32" if allow else "ieee"
        torch.backends.cuda.matmul.fp32_precision = value
        torch.backends.cudnn.conv.fp32_precision = value
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow


def global_state() -> dict:
    """Every process-wide torch setting a run may change, as values that `restore` takes."""
    cudnn = torch.backends.cudnn
    return {
        "threads": torch.get_num_threads(),
        "deterministic": (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn": (cudnn.benchmark, cudnn.deterministic),
        "tf32": [getattr(owner, name) for owner, name in _tf32_settings()],
        "workspace": os.environ.get(_WORKSPACE),
    }


def restore(state: dict) -> None:
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
    mode, warn_only = state["deterministic"]
    torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = state["cudnn"]
    for (owner, name), value in zip(_tf32_settings(), state["tf32"]):
        setattr(owner, name, value)
    if state["workspace"] is None:
        os.environ.pop(_WORKSPACE, None)
    else:
        os.environ[_WORKSPACE] = state["workspace"]


@contextmanager
def torch_state():
    """Inside: a run may change torch's global settings; afterwards they are as before."""
    saved = global_state()
    try:
        yield
    finally:
        restore(saved)


def setup_torch(seed: int, device: torch.device, tf32: bool | None, deterministic: bool) -> None:
    """The seed, TF32, cuDNN's benchmark mode and deterministic algorithms (module docstring)."""
    torch.manual_seed(seed)
    if tf32 is not None or deterministic:
        set_tf32(bool(tf32) if tf32 is not None else False)
    if deterministic:
        os.environ.setdefault(_WORKSPACE, ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def set_threads(setting, model: torch.nn.Module, input_shape: tuple[int, ...], batch_size: int) -> str:
    """Set the intra-op CPU threads for `train.threads` = `setting` (cl_runner.threads);
    the choice and its reason, for cl-run.log."""
    work = threads.step_work(model, input_shape, batch_size) if setting == "auto" else 0.0
    count, why = threads.choose(setting, work, threads.usable_cores())
    if count is not None and count != torch.get_num_threads():
        torch.set_num_threads(count)
    return f"threads by {why}; {threads.waiting()}"
