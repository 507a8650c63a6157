"""Multimodal emotion recognition pipeline (MER 2023 protocol): library code behind the DVC stages."""

import os

# MKL's GEMMs choose kernels by operand alignment, and on some CPUs (AMD EPYC) those kernels round
# differently: a fold's block at an unaligned offset of a stacked tensor would get other last bits than
# the same block at offset 0, so results would depend on how the folds are sharded. STRICT makes them
# alignment-independent (tests/test_cv.py::test_results_do_not_depend_on_the_thread_count). MKL reads
# it at its first call, which no pipeline import makes before this line; a user's setting stands.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
