"""Where per-part tasks run: a local process pool over all cores, or a Dask cluster.

Tasks are plain functions of picklable arguments that write their own store part and return a small
summary, so the same task runs unchanged on a `ProcessPoolExecutor` or a `distributed.Client`
(a `LocalCluster`, or a scheduler address such as one started by dask-jobqueue on SLURM).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from tqdm import tqdm
from pipeline.config import ConfigError

EXECUTORS = ("local", "dask")


def single_thread_worker() -> None:
    """One process per core: stop each library from also spawning a thread per core.

    torch is not imported here (seconds of start-up a task may not need): it reads OMP_NUM_THREADS
    when a task first imports it, and is told directly only if it is already loaded."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    import zarr

    cv2.setNumThreads(1)
    zarr.config.set({"threading.max_workers": 1})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_tasks(fn: Callable, tasks: list[Any], executor: str = "local", workers: int = 0,
              address: str = "", desc: str = "") -> Iterator[Any]:
    """Yield fn(task) results as they complete, with a progress bar."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choices: {', '.join(EXECUTORS)}")
    bar = tqdm(total=len(tasks), desc=desc, unit="part")
    results = _dask(fn, tasks, address) if executor == "dask" else _local(fn, tasks, workers)
    for result in results:
        bar.update(1)
        yield result
    bar.close()


def local_workers(executor: str, workers: int) -> int:
    """Processes the local pool runs (0 = all cores); 1 for a Dask cluster, whose size is its own."""
    return (workers or os.cpu_count() or 1) if executor == "local" else 1


def _local(fn: Callable, tasks: list[Any], workers: int) -> Iterable[Any]:
    workers = min(local_workers("local", workers), max(len(tasks), 1))
    if workers == 1:
        yield from map(fn, tasks)  # in-process: no start-up cost for small runs
        return
    # spawn, not fork: torch and OpenCV thread pools do not survive a fork
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=single_thread_worker) as pool:
        for future in as_completed([pool.submit(fn, t) for t in tasks]):
            yield future.result()


def _dask(fn: Callable, tasks: list[Any], address: str) -> Iterable[Any]:
    from distributed import Client, as_completed as dask_completed

    if not address:
        raise ConfigError("executor 'dask' needs a scheduler address (extract.dask_address / encode.dask_address)")
    with Client(address) as client:
        client.run(single_thread_worker)
        for future in dask_completed(client.map(fn, tasks, pure=False)):
            yield future.result()
