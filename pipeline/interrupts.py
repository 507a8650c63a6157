"""Ctrl-C (SIGINT) and SIGTERM: one way to stop, seen by every thread and every commit.

Python runs a signal handler in the main thread only, between two bytecodes there. So a plain
KeyboardInterrupt never reaches the threads that train fold shards, and one raised inside a C library's
Python callback (openSMILE's) is printed and dropped by ctypes, leaving the library to return a NaN as if
the item had failed. The handler here also sets a flag: loops in other threads and encoders between
batches call `check()`, and no store part is committed once the flag is set, so nothing computed after an
interrupt is kept. SIGTERM (a scheduler's, DVC's) takes the same path as Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stop = threading.Event()
_signum = [signal.SIGINT]
_depth = [0]    # handled() blocks open in the main thread: only the outermost clears the flag
_deferring = [0]   # deferred() blocks open: the handler only sets the flag


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by a signal; a CLI exits with 128 + signum."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self):  # as a forked fold shard sends it back (pipeline.training.runtime.shard_map)
        return Interrupted, (self.signum,)


def _handler(signum, frame):
    _signum[0] = signum
    _stop.set()
    if not _deferring[0]:
        raise Interrupted(signum)


def _unraisable(info) -> None:
    """ctypes reports the Interrupted it dropped in a C callback with a traceback: the flag stands for it."""
    if not isinstance(info.exc_value, Interrupted):
        sys.__unraisablehook__(info)


def last_signal() -> int:
    """The signal that last asked this process to stop (SIGINT if none did: a plain KeyboardInterrupt)."""
    return _signum[0]


def check() -> None:
    """Raise Interrupted if a stop was asked for: call it between steps, batches and before commits."""
    if _stop.is_set():
        raise Interrupted(_signum[0])


def install() -> None:
    """Route SIGINT and SIGTERM through the handler for the rest of the process (a pool's worker)."""
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    sys.unraisablehook = _unraisable


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted and set the stop flag while the block runs (main thread
    only: elsewhere a no-op). The outermost block starts with the flag clear and clears it on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    if not _depth[0]:
        _stop.clear()
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        if not _depth[0]:
            _stop.clear()


@contextmanager
def deferred() -> Iterator[None]:
    """Finish the block (writing outputs that are already computed: a second or two), then stop if a
    signal came meanwhile: a stage's several output files are all written or none is."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    check()
