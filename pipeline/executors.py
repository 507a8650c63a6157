"""Where per-part tasks run, a registry of executors: `local` (a process pool over this machine's cores)
or `dask` (a Dask cluster at a scheduler address).

Tasks are plain functions of picklable arguments that write their own store part and return a small
summary, so the same task runs unchanged on a `ProcessPoolExecutor` or a `distributed.Client`
(a `LocalCluster`, a scheduler started with `dask scheduler`, or one started by dask-jobqueue on SLURM or PBS).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pipeline import interrupts
from pipeline.progress import tracked
from pipeline.registry import Component, Registry


class Executor(Component):
    kind = "executor"

    def processes(self, workers: int) -> int:
        """Processes this executor runs on this machine for a stage's `workers` knob."""
        return 1

    def map(self, fn: Callable, tasks: list[Any], workers: int) -> Iterable[Any]:
        """fn(task) for every task, in completion order."""
        raise NotImplementedError


@dataclass(frozen=True)
class LocalConfig:
    pass


class LocalExecutor(Executor):
    """A process pool on this machine, `workers` processes (0 = all cores); one runs in-process."""

    name = "local"
    Config = LocalConfig

    def processes(self, workers: int) -> int:
        return workers or os.cpu_count() or 1

    def map(self, fn: Callable, tasks: list[Any], workers: int) -> Iterable[Any]:
        return _local(fn, tasks, min(self.processes(workers), max(len(tasks), 1)))


@dataclass(frozen=True)
class DaskConfig:
    address: str = ""         # the scheduler's, e.g. tcp://10.1.0.5:8786 (one started by dask-jobqueue on SLURM)
    scheduler_file: str = ""  # or the JSON file `dask scheduler --scheduler-file` writes (on the shared file system)


class DaskExecutor(Executor):
    """A Dask cluster at a scheduler address; the stores must sit on a file system every worker sees."""

    name = "dask"
    Config = DaskConfig
    packages = ("distributed",)
    install = "pip install 'dask[distributed]'"

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        ok, why = super().available(config)
        if not ok:
            return ok, why
        if bool(config.address) == bool(config.scheduler_file):
            return False, ("needs a scheduler address or a scheduler file, one of them: run.executor_options: "
                           "{address: tcp://HOST:8786} or {scheduler_file: /shared/scheduler.json}")
        if config.scheduler_file and not Path(config.scheduler_file).expanduser().is_file():
            return False, (f"scheduler file {config.scheduler_file} does not exist: start the scheduler with "
                           f"`dask scheduler --scheduler-file {config.scheduler_file}` first")
        return True, ""

    def map(self, fn: Callable, tasks: list[Any], workers: int) -> Iterable[Any]:
        where = {"scheduler_file": str(Path(self.config.scheduler_file).expanduser())} if self.config.scheduler_file \
            else {"address": self.config.address}
        return _dask(fn, tasks, where)


EXECUTORS = Registry("run.executor", LocalExecutor, DaskExecutor, options_key="run.executor_options")


def single_thread_worker(parent: int = 0) -> None:
    """One process per core: stop each library from also spawning a thread per core.

    torch is not imported here (seconds of start-up a task may not need): it reads OMP_NUM_THREADS
    when a task first imports it, and is told directly only if it is already loaded.
    `parent`: the pool's process, whose death must end this worker (see die_with_parent); a Ctrl-C
    that reaches the worker too stops it without committing its part (pipeline.interrupts)."""
    if parent:
        die_with_parent(parent)
        interrupts.install()
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    import zarr

    cv2.setNumThreads(1)
    zarr.config.set({"threading.max_workers": 1})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_tasks(fn: Callable, tasks: list[Any], executor: Executor, workers: int = 0, desc: str = "") -> Iterator[Any]:
    """Yield fn(task) results as they complete, with a progress bar."""
    yield from tracked(executor.map(fn, tasks, workers), desc, "part", total=len(tasks))


def _local(fn: Callable, tasks: list[Any], workers: int) -> Iterable[Any]:
    if workers == 1:
        yield from map(fn, tasks)  # in-process: no start-up cost for small runs
        return
    # spawn, not fork: torch and OpenCV thread pools do not survive a fork
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=single_thread_worker,
                               initargs=(os.getpid(),))
    try:
        with interrupts.handled():   # SIGTERM too ends the loop, so the pool is torn down on the way out
            for future in as_completed([pool.submit(fn, t) for t in tasks]):
                yield future.result()
    except BaseException:
        _terminate(pool)   # a failed task, Ctrl-C or SIGTERM: no worker goes on committing parts
        raise
    pool.shutdown()


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (kill -9 included), so no
    worker outlives the run that started it. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:   # the parent died before prctl took effect
        os._exit(1)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the pool now: cancel queued tasks and kill running workers (Python 3.11 has no public call)."""
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=5)


def _dask(fn: Callable, tasks: list[Any], where: dict[str, str]) -> Iterable[Any]:
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(**where) as client:
        client.run(single_thread_worker)
        for future in dask_completed(client.map(fn, tasks, pure=False)):
            yield future.result()
