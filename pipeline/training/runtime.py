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
def torch_threads(n: int) -> Iterator[None]:
    """n intra-op threads (0 = every core) and deterministic kernels (CUDA has non-deterministic ones)."""
    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(n if n > 0 else available_cores())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)


def autocast(precision: str, device: str):
    """The training forward's precision: fp32, or bf16 matmuls under autocast (weights stay fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)
