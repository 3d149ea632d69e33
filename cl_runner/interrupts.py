"""SIGINT and SIGTERM as one exception, from the first line of `cl-run` to its last.

Python turns SIGINT (Ctrl-C) into KeyboardInterrupt; `install()` makes SIGTERM (`kill`, a
cluster's time limit) raise `Interrupted`, a KeyboardInterrupt too, so one `except
KeyboardInterrupt` handles both and no `except Exception` can swallow either. The CLI
installs it before it imports anything heavy; `ignored()` holds both off while a run's
folder is being tidied up, so the tidying is never left half done.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGTERM arrived; str() is the signal's name."""


def raise_interrupted(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install() -> None:
    signal.signal(signal.SIGTERM, raise_interrupted)


def describe(err: KeyboardInterrupt) -> str:
    """`SIGTERM` for a signal, `KeyboardInterrupt` for Ctrl-C (as summary.json has said so far)."""
    return str(err) if isinstance(err, Interrupted) else type(err).__name__


@contextmanager
def ignored():
    if threading.current_thread() is not threading.main_thread():  # only the main thread handles signals
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
