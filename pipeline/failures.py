"""The failure policy every item-level stage shares (extract, corrupt, encode): record each failed item
with its reason, and fail the stage when more than its `<stage>.max_failure_rate` of the items failed."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import MerError


class TooManyFailures(MerError, RuntimeError):
    """More than a stage's max_failure_rate of its items failed."""


def check_failure_rate(failed: int, total: int, max_rate: float, stage: str, reasons: str) -> None:
    """Fail the stage when more than its `<stage>.max_failure_rate` of the items failed."""
    rate = failed / total if total else 0.0
    if rate > max_rate:
        raise TooManyFailures(f"{stage}: {failed} of {total} items failed ({rate:.1%} > "
                              f"{stage}.max_failure_rate {max_rate:.1%}); reasons in {reasons}")


def write_failures(failures: list[dict], total: int, failures_path: Path, max_rate: float, stage: str) -> None:
    """Record every failure with its reason; fail the stage above its max_failure_rate."""
    failures_path.parent.mkdir(parents=True, exist_ok=True)
    with open(failures_path, "w", encoding="utf-8") as fh:
        for failure in sorted(failures, key=lambda f: (f.get("view", ""), f["sample_id"])):
            fh.write(json.dumps(failure) + "\n")
    check_failure_rate(len(failures), total, max_rate, stage, str(failures_path))
