"""One writer per store: an OS file lock held for the whole run of every stage that writes a store.

Two writers on one store would each remove what they take for the other's interrupted parts and
commit over each other. The lock is `flock` on a file beside the store (`<store>.lock`, outside the
store so DVC never hashes it): the kernel drops it when its holder exits, however it exits, so the lock
of a killed run is taken over by the next one without any clean-up. Beside it, `<store>.writer`
names the holder (PID, host, command) for the message a second writer gets.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import StoreLocked


def lock_paths(store: Path) -> tuple[Path, Path]:
    """(lock file, holder file) beside the store."""
    store = Path(store)
    return store.parent / f"{store.name}.lock", store.parent / f"{store.name}.writer"


@contextmanager
def store_lock(store: str | Path) -> Iterator[None]:
    """Hold the store's writer lock; fail at once, naming the holder, when another process holds it."""
    lock_file, holder_file = lock_paths(Path(store))
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise StoreLocked(f"{store} is being written by another process ({_holder(holder_file)}). A store takes "
                          f"one writer at a time: wait for that run to finish (or stop it), then run this "
                          f"command again; it resumes from what is committed.") from None
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
        holder_file.write_text(json.dumps(holder) + "\n")
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return "PID unknown: it has not written its holder file yet"
    return f"PID {holder['pid']} on {holder['host']}: {holder['command']}"
