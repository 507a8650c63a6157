"""Where and how training runs: cores, torch threads and precision (train.fusion.precision; it and train.device
are checked when params load)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

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
    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(n if n > 0 else available_cores())
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_flush_denormal(False)


def autocast(precision: str, device: str):
    """The training forward's precision: fp32, or bf16 matmuls under autocast (weights stay fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)
