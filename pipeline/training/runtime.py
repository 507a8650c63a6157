"""Where and how training runs: cores, torch threads and precision (train.fusion.precision; it and train.device
are checked when params load)."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import Pipe

import torch

from pipeline.progress import Progress
from pipeline.store.parts import parallel_map

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def training_runtime(n: int) -> Iterator[None]:
    """n intra-op threads (0 = every core), deterministic kernels (CUDA has non-deterministic ones), and
    subnormal floats flushed to zero on the CPU, in this thread and the threads it starts (they inherit it).

    A model that fits its data drives gradients and Adam's second moments below float32's normal range
    (1.2e-38), where x86 computes in microcode, tens of times slower: on the release's separable features a
    round's epoch grew from 2.2 s to 9 s within 12 epochs (benchmarks/bench_release.py). Flushed, such
    values are 0, which is what they are to every figure."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(n if n > 0 else available_cores())
    _deterministic(True, warn_only=True)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _deterministic(deterministic, warn_only)
        torch.set_flush_denormal(False)


def _deterministic(mode: bool, warn_only: bool) -> None:
    """torch.use_deterministic_algorithms(mode, warn_only) for eager kernels: the public call also imports
    torch._inductor (1.4 s, once per process) to set a flag only torch.compile reads, which nothing here uses."""
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def autocast(precision: str, device: str):
    """The training forward's precision: fp32, or bf16 matmuls under autocast (weights stay fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


FORKS = sys.platform == "linux"  # where fold shards train in forked processes (`shard_map`)
_TICK = b"."


def shard_map(fn: Callable, items: list, bar: Progress) -> list:
    """[fn(item, bar) for item in items], side by side: the first item in this thread, every other one in a
    forked child process (on Linux; elsewhere in threads), each reporting its progress to `bar`.

    Why processes: a fold shard's per-step Python (the forward's, backward's and Adam's bookkeeping, the
    dropout draws) holds the GIL, so shards in threads wait for each other at every step
    (benchmarks/bench_train.py measures both). A child shares this process's tensors copy-on-write, computes
    the same bits on the same kernels, and sends its result back pickled. Forking is safe here, unlike in
    the stages that spawn: the children run torch on the one thread `training_runtime` set, so no OpenMP pool
    is entered after the fork (as in torch's DataLoader workers). A child inherits the signal handlers (a
    Ctrl-C stops it at its next step); if this process stops first, its children are killed."""
    if len(items) <= 1 or not FORKS:
        return parallel_map(lambda item: fn(item, bar), items, threads=len(items))
    children = [_Child(fn, item) for item in items[1:]]  # every fork before any reader thread starts
    try:
        for child in children:
            child.listen(bar)
        first = fn(items[0], bar)
        return [first, *(child.result() for child in children)]
    finally:
        for child in children:
            child.end()


class _Child:
    """One forked fold shard: its pipe (progress ticks, then its pickled outcome) and the thread reading it."""

    def __init__(self, fn: Callable, item):
        self.reader, writer = Pipe(duplex=False)
        with warnings.catch_warnings():  # Python 3.12+ warns of fork in a threaded process: see shard_map
            warnings.simplefilter("ignore", DeprecationWarning)
            self.pid = os.fork()
        if self.pid == 0:
            self._run(fn, item, writer)
        writer.close()
        self.outcome: tuple | None = None
        self.thread: threading.Thread | None = None

    def _run(self, fn: Callable, item, writer) -> None:
        """The child: compute, send the outcome, and leave without running any of the parent's exit code."""
        try:
            self.reader.close()
            try:
                outcome = ("result", fn(item, _Ticks(writer)))
            except BaseException as error:  # an Interrupted too: the parent raises it
                outcome = ("error", error)
            try:
                message = pickle.dumps(outcome)
            except Exception:
                message = pickle.dumps(("error", RuntimeError(f"fold shard {item}: {outcome[1]!r}")))
            writer.send_bytes(message)
        finally:
            os._exit(0)

    def listen(self, bar: Progress) -> None:
        self.thread = threading.Thread(target=self._read, args=(bar,), daemon=True)
        self.thread.start()

    def _read(self, bar: Progress) -> None:
        try:
            while (message := self.reader.recv_bytes()) == _TICK:
                bar.update(1)
            self.outcome = pickle.loads(message)
        except EOFError:  # killed (the OOM killer, a signal) before it could send anything
            self.outcome = ("error", RuntimeError(f"fold shard process {self.pid} ended without a result"))
        except Exception as error:  # an outcome that does not unpickle
            self.outcome = ("error", RuntimeError(f"fold shard process {self.pid}: unreadable outcome ({error!r})"))

    def result(self):
        self.thread.join()
        kind, value = self.outcome
        if kind == "error":
            raise value
        return value

    def end(self) -> None:
        """Reap the child; kill it first if it is still running (this process stopped before it)."""
        if self.outcome is None:
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        if self.thread is not None:
            self.thread.join()
        self.reader.close()


class _Ticks:
    """A child's progress bar: each update is a tick down the pipe."""

    def __init__(self, writer):
        self.writer = writer

    def update(self, n: int = 1) -> None:
        for _ in range(n):
            self.writer.send_bytes(_TICK)
