"""A trained checkpoint from a prepared corpus, through the stages' own code (tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import load_section
from pipeline.encode import encode_feature
from pipeline.extract import extract
from stages import train


def train_checkpoint(work: Path, root: Path, params: Path) -> Path:
    """Extract, encode every encode.features entry and train, as `dvc repro` does, on the manifest at
    work/manifest.parquet (media under `root`); every output goes into `work`. Returns the checkpoint."""
    manifest = pd.read_parquet(work / "manifest.parquet")
    extract(manifest, root, work / "media.zarr", load_section("extract", params))
    for name, spec in load_section("encode", params).features.items():
        encode_feature(spec, [work / "media.zarr"], work / "features" / f"{name}.zarr")
    train.run(params, manifest=work / "manifest.parquet", clean=work / "media.zarr", corrupted=None,
              features=work / "features", predictions=work / "predictions.parquet", metrics=work / "cv.json",
              curves=work / "curves", checkpoint=work / "checkpoint")
    return work / "checkpoint"
