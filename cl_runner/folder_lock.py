"""The lock of a run folder: `.cl-run.lock`, an exclusive flock held while a process writes there.

`take(folder)` locks it (BlockingIOError naming the holder when another process has it);
`holder(folder)` says which process holds it, if any. The kernel lets go of a lock when its
process ends, however it ends (SIGKILL too), so a lock file left behind guards nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK = ".cl-run.lock"


def take(folder: Path) -> int:
    """Open and lock `folder/.cl-run.lock`; BlockingIOError naming the holder if it is taken."""
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise BlockingIOError(f"process {holder or 'unknown'}") from None
        try:  # the holder removes the file as it lets go: a lock on a removed file guards nothing
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:  # e.g. a full disk: let go of the file as well as the lock
        os.unlink(path)
        os.close(fd)
        raise
    return fd


def holder(folder: Path) -> str | None:
    """The process holding `folder`'s lock, or None. (A shared lock, taken for a moment: a run
    claiming that folder at the very same moment is refused as if it were in use.)"""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)
