"""How much memory a device has: the limit that sizes computed before allocating are held to.

`host_memory()` is the machine's memory as this process may use it: MemTotal and MemAvailable
of /proc/meminfo (os.sysconf where there is none), lowered to the memory cgroup's limit when a
container sets one (v2 `memory.max`, v1 `memory.limit_in_bytes`), as the OOM killer applies
that. `device_memory(device)` is the same for a run's device: the host for the CPU, and
`torch.cuda.mem_get_info` (total and free, as the driver reports them) for a CUDA device.
`format_bytes` writes a size as people read it (GiB, binary units, as `free -h` does).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

UNLIMITED = 2**60  # a cgroup "limit" at or above this (v1 writes 2^63 rounded to pages) is none


@dataclass(frozen=True)
class Memory:
    total: int  # bytes
    available: int  # bytes free for this process now (never above total)


def host_memory() -> Memory:
    total, available = _meminfo()
    limit = _cgroup_limit()
    if limit is not None and limit < total:
        used = _cgroup_usage()
        total, available = limit, min(available, max(limit - used, 0) if used is not None else limit)
    return Memory(total, min(available, total))


def device_memory(device) -> Memory:
    """The memory of `device` (a torch.device): the host's for the CPU."""
    if device.type == "cuda":
        import torch  # only here: reading host memory (the data loaders do) must not import torch

        free, total = torch.cuda.mem_get_info(device)
        return Memory(total, free)
    return host_memory()


def _meminfo() -> tuple[int, int]:
    try:
        text = Path("/proc/meminfo").read_text()
        fields = {m.group(1): int(m.group(2)) * 1024 for m in re.finditer(r"^(\w+):\s+(\d+) kB$", text, re.M)}
        return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", fields["MemTotal"]))
    except (OSError, KeyError):  # not Linux: what POSIX says
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page


def _read_int(*paths: str) -> int | None:
    for path in paths:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        return int(value) if value.isdigit() and int(value) < UNLIMITED else None  # "max": no limit
    return None


def _cgroup_limit() -> int | None:
    return _read_int("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _cgroup_usage() -> int | None:
    return _read_int("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'; 3.2e12 -> '2.9 TiB'; beyond PiB still in PiB."""
    if count < 1024:
        return f"{count:.0f} bytes"
    units = ("KiB", "MiB", "GiB", "TiB")
    for unit in units:
        count /= 1024
        if count < 1024:
            return f"{count:.1f} {unit}"
    return f"{count / 1024:,.1f} PiB"
