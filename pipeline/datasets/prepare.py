"""The `prepare` stage's logic: corpus -> validated Parquet manifest + rejects file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline.config import PrepareConfig
from pipeline.datasets import ADAPTERS, validate
from pipeline.labels import MER_LABELS


class TooManyRejects(RuntimeError):
    pass


@dataclass
class PrepareResult:
    manifest: pd.DataFrame
    rejects: pd.DataFrame

    def summary(self) -> str:
        counts = self.manifest.groupby("split").size().to_dict()
        reasons = self.rejects["reason"].str.split(":").str[0].value_counts().to_dict()
        return f"{len(self.manifest)} items {counts}; {len(self.rejects)} rejected {reasons}"


def prepare(cfg: PrepareConfig, manifest_out: Path, rejects_out: Path, labels=MER_LABELS) -> PrepareResult:
    if cfg.adapter not in ADAPTERS:
        raise ValueError(f"prepare.adapter: unknown adapter {cfg.adapter!r}; choices: {sorted(ADAPTERS)}")
    root = Path(cfg.root)
    if not root.is_dir():
        raise FileNotFoundError(f"prepare.root: {root} is not a directory")
    candidates = tqdm(ADAPTERS[cfg.adapter](cfg, root), desc="prepare", unit="item")
    manifest, rejects = validate(candidates, root, tuple(labels), cfg.label_map)
    result = PrepareResult(manifest, rejects)
    manifest_out.parent.mkdir(parents=True, exist_ok=True)
    rejects_out.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(manifest_out, index=False)
    rejects.to_csv(rejects_out, index=False)
    total = len(manifest) + len(rejects)
    rate = len(rejects) / total if total else 1.0
    if total == 0 or rate > cfg.max_reject_rate:
        raise TooManyRejects(
            f"{len(rejects)} of {total} rows rejected ({rate:.1%} > prepare.max_reject_rate "
            f"{cfg.max_reject_rate:.1%}); see {rejects_out}. {result.summary()}"
        )
    return result
