"""prepare: corpus -> data/manifest.parquet + data/rejects.csv (params: prepare.*)."""

from pathlib import Path

from pipeline.config import load_section
from pipeline.datasets.prepare import PrepareResult, prepare
from pipeline.registry import check_available


def run(params: Path, *, manifest: Path, rejects: Path) -> PrepareResult:
    cfg = load_section("prepare", params)
    check_available(cfg)
    return prepare(cfg, manifest, rejects)
