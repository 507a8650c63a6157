"""Progress of every long loop: tqdm's bar on a terminal; in a log (DVC, CI, `dvc queue logs`), where a bar
redrawn with carriage returns would be one unreadable line or nothing, a plain line per tenth of the work."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

LINES = 10          # lines per loop of known length in a log
EVERY = 500         # a loop of unknown length: a line every so many steps


class LogProgress:
    """tqdm's update/close/context interface, writing `desc: n/total unit (p%), t s` lines to stderr."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it"):
        self.total, self.desc, self.unit, self.n, self.postfix = total, desc, unit, 0, ""
        self._step = max(1, -(-total // LINES)) if total else EVERY
        self._next, self._start, self._lock = self._step, time.monotonic(), threading.Lock()

    def update(self, n: int = 1) -> None:
        with self._lock:  # training updates from one thread per fold shard
            self.n += n
            if self.n >= self._next:
                self._next = (self.n // self._step + 1) * self._step
                self._line()

    def set_postfix_str(self, postfix: str) -> None:
        """What the loop is at: shown on the next line."""
        self.postfix = postfix

    def close(self) -> None:
        with self._lock:
            if self.n % self._step or not self.n:  # the last line, unless an update just wrote it
                self._line()
            self._next = float("inf")

    def _line(self) -> None:
        done = f"{self.n}/{self.total} {self.unit} ({100 * self.n // self.total}%)" if self.total else f"{self.n} {self.unit}"
        at = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done}, {time.monotonic() - self._start:.0f} s{at}", file=sys.stderr, flush=True)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Progress = tqdm | LogProgress


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True) -> Progress:
    """A progress counter (update(n), close(), a context manager): a bar on a terminal, lines in a log."""
    if not enabled:
        return tqdm(disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit)
    return LogProgress(total, desc, unit)


def tracked(items: Iterable, desc: str = "", unit: str = "it", total: int | None = None) -> Iterator:
    """Iterate `items`, counting them with `progress`."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress(total, desc, unit) as bar:
        for item in items:
            bar.update(1)  # counted when it is done, before the caller works on it
            yield item
