"""SIGINT and SIGTERM as one exception, from the first line of `cl-run` to its last.

Python turns SIGINT (Ctrl-C) into KeyboardInterrupt; `install()` makes SIGTERM (`kill`, a
cluster's time limit) raise `Interrupted`, a KeyboardInterrupt too, so one `except
KeyboardInterrupt` handles both and no `except Exception` can swallow either. The CLI
installs it before it imports anything heavy; `ignored()` holds both off while a run's
folder is being tidied up, so the tidying is never left half done.

`holding()` is for a block whose way out must be recorded (a run, once its summary.json
exists: `cl_runner.status`): inside it each signal raises its interrupt at once, as above,
until the first one has been raised or `Hold.start()` is called; from then on the later ones
are kept in `Hold.signals` instead of raised, so that the code deciding how the block ended,
and writing it down, runs whole -- there is no moment at which a second signal could cut it
short, because the handler itself, not the code it interrupted, turns the holding on.
`deferred()` holds them from the start of its block to its end, then raises the first.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGTERM arrived; str() is the signal's name."""


def interrupt(signum: int) -> KeyboardInterrupt:
    """The exception a signal raises: KeyboardInterrupt for SIGINT, as Python's own handler does."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signal.Signals(signum).name)


def raise_interrupted(signum, frame) -> None:
    raise interrupt(signum)


def install() -> None:
    signal.signal(signal.SIGTERM, raise_interrupted)


def describe(err: KeyboardInterrupt) -> str:
    """`SIGTERM` for a signal, `KeyboardInterrupt` for Ctrl-C (as summary.json has said so far)."""
    return str(err) if isinstance(err, Interrupted) else type(err).__name__


@contextmanager
def handlers_set(handlers: dict):
    """Set these signal handlers ({signal: handler}) for the block, and put back the ones they
    replaced when it ends. Outside the main thread, where no handler runs (and Python refuses
    to set one), nothing is changed. A handler set outside Python (None) comes back as the default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextmanager
def ignored():
    with handlers_set({sig: signal.SIG_IGN for sig in SIGNALS}):
        yield


class Hold:
    """The signals of a `holding()` block: raised until the holding starts, kept after."""

    def __init__(self):
        self.on = False
        self.signals: list[int] = []  # those that arrived once the holding was on

    def start(self) -> None:
        self.on = True

    def handle(self, signum, frame) -> None:
        if self.on:
            self.signals.append(signum)
            return
        self.on = True  # before the raise: the except clause that catches it is already held
        raise interrupt(signum)


@contextmanager
def holding():
    """Yield a `Hold` whose handler takes SIGINT and SIGTERM inside the block (see the module
    docstring). A signal set to be ignored (SIGINT in a shell's background job) stays ignored;
    outside the main thread, where no handler runs, the block runs as it is."""
    hold = Hold()
    with handlers_set({sig: hold.handle for sig in SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN}):
        yield hold


@contextmanager
def deferred():
    """SIGINT and SIGTERM wait until the block ends, then raise: for the imports of compiled
    modules, which an interrupt raised inside their initialisation leaves broken (numpy then
    says "cannot load module more than once per process", a traceback instead of exit 130)."""
    with holding() as hold:
        hold.start()
        yield
    if hold.signals:
        raise interrupt(hold.signals[0])
