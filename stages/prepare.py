"""prepare: corpus -> data/manifest.parquet + data/rejects.csv (params: prepare.*)."""

from pathlib import Path

from pipeline.config import load_section
from pipeline.datasets.prepare import PrepareResult, prepare


def run(params: Path, *, manifest: Path, rejects: Path) -> PrepareResult:
    return prepare(load_section("prepare", params), manifest, rejects)
