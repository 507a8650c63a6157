"""Corpus adapters: each turns one corpus layout into candidate rows for `prepare`."""

from pipeline.datasets.acted import read_cremad, read_ravdess
from pipeline.datasets.base import MANIFEST_COLUMNS, SPLITS, Candidate, validate
from pipeline.datasets.csv_manifest import read_csv_manifest
from pipeline.datasets.mer2023 import read_mer2023

ADAPTERS = {
    "mer2023": lambda cfg, root: read_mer2023(root),
    "csv": lambda cfg, root: read_csv_manifest(root, cfg.manifest),
    # the generated corpus writes a csv manifest, so it reads through the same adapter
    "demo": lambda cfg, root: read_csv_manifest(root, cfg.manifest),
    "ravdess": lambda cfg, root: read_ravdess(root, cfg.test_speakers),
    "cremad": lambda cfg, root: read_cremad(root, cfg.test_speakers),
}

__all__ = ["ADAPTERS", "MANIFEST_COLUMNS", "SPLITS", "Candidate", "read_cremad", "read_csv_manifest", "read_mer2023",
           "read_ravdess", "validate"]
