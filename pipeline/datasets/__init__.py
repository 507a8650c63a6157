"""Corpus adapters: each turns one corpus layout into candidate rows for `prepare`."""

from pipeline.datasets.base import MANIFEST_COLUMNS, SPLITS, Candidate, validate
from pipeline.datasets.csv_manifest import read_csv_manifest
from pipeline.datasets.mer2023 import read_mer2023

ADAPTERS = {
    "mer2023": lambda cfg, root: read_mer2023(root),
    "csv": lambda cfg, root: read_csv_manifest(root, cfg.manifest),
    # the generated corpus writes a csv manifest, so it reads through the same adapter
    "demo": lambda cfg, root: read_csv_manifest(root, cfg.manifest),
}

__all__ = ["ADAPTERS", "MANIFEST_COLUMNS", "SPLITS", "Candidate", "read_csv_manifest", "read_mer2023", "validate"]
