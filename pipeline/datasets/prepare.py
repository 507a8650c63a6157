"""The `prepare` stage's logic: corpus -> validated Parquet manifest + rejects file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError, PrepareConfig
from pipeline.datasets import Adapter, validate
from pipeline.datasets.csv_manifest import CsvAdapter
from pipeline.errors import MerError
from pipeline.labels import manifest_labels
from pipeline.modalities import MODALITIES
from pipeline.progress import tracked


class TooManyRejects(MerError, RuntimeError):
    """More than prepare.max_reject_rate of the corpus rows were rejected (or there were none)."""


@dataclass
class PrepareResult:
    manifest: pd.DataFrame
    rejects: pd.DataFrame

    def summary(self) -> str:
        counts = self.manifest.groupby("split").size().to_dict()
        reasons = self.rejects["reason"].str.split(":").str[0].value_counts().to_dict()
        media = {kind: int(n) for kind, n in modality_counts(self.manifest).items()}
        return (f"{len(self.manifest)} items {counts}; with {media}; labels {list(manifest_labels(self.manifest))}; "
                f"{len(self.rejects)} rejected or excluded {reasons}")


def modality_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Items per present modality."""
    return {name: m.in_manifest(manifest).sum() for name, m in MODALITIES.items()}


def prepare(cfg: PrepareConfig, manifest_out: Path, rejects_out: Path) -> PrepareResult:
    adapter = cfg.adapter.make()
    root = Path(cfg.root)
    if not root.is_dir():
        raise ConfigError(f"prepare.root: {root} is not a directory")
    labels = cfg.labels   # checked when params load (pipeline.config)
    candidates = tracked(adapter.read(root), "prepare", "item")
    manifest, rejects = validate(candidates, root, labels, cfg.label_map)
    manifest.attrs["labels"] = list(labels)  # stored in the Parquet file; training reads it from there
    manifest.attrs["corpus"] = {"adapter": cfg.adapter, "root": cfg.root, "options": cfg.options,
                                "generated": adapter.generated}   # a checkpoint's card names it
    result = PrepareResult(manifest, rejects)
    rejects_out.parent.mkdir(parents=True, exist_ok=True)
    rejects.to_csv(rejects_out, index=False)
    manifest_out.unlink(missing_ok=True)   # no stage may go on with a manifest this run did not pass
    check_reject_rate(result, cfg, adapter, rejects_out)
    manifest_out.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(manifest_out, index=False)
    return result


def check_reject_rate(result: PrepareResult, cfg: PrepareConfig, adapter: Adapter, rejects_out: Path) -> None:
    """The gate before the manifest is written: some items, and at most prepare.max_reject_rate rejected."""
    n_bad = int((~result.rejects["excluded"].astype(bool)).sum())
    total = len(result.manifest) + n_bad
    if total == 0:
        raise TooManyRejects(f"the {cfg.adapter} adapter found no items at {cfg.root}"
                             + (f" ({adapter.config.manifest} has no data rows)" if isinstance(adapter, CsvAdapter) else "")
                             + f"; {len(result.rejects)} left out by prepare.label_map. Point prepare.root "
                               f"(and prepare.options) at the corpus.")
    rate = n_bad / total
    if rate > cfg.max_reject_rate:
        raise TooManyRejects(
            f"{n_bad} of {total} rows rejected ({rate:.1%} > prepare.max_reject_rate "
            f"{cfg.max_reject_rate:.1%}); see {rejects_out}. {result.summary()}"
        )
