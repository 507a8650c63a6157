"""Corpus adapters: each turns one corpus layout into candidate rows for `prepare`.

A registry in the encoders' idiom: prepare.adapter names one, prepare.options gives its Config.
"""

from pipeline.datasets.acted import CremadAdapter, RavdessAdapter, read_cremad, read_ravdess
from pipeline.datasets.base import MANIFEST_COLUMNS, SPLITS, Adapter, Candidate, validate
from pipeline.datasets.csv_manifest import CsvAdapter, DemoAdapter, read_csv_manifest
from pipeline.datasets.editions import Mer2024Adapter, Mer2025Adapter, read_release
from pipeline.datasets.mer2023 import Mer2023Adapter, read_mer2023
from pipeline.registry import Registry

ADAPTERS = Registry("prepare.adapter",
                    Mer2023Adapter, Mer2024Adapter, Mer2025Adapter, CsvAdapter, DemoAdapter, RavdessAdapter,
                    CremadAdapter, options_key="prepare.options")

__all__ = ["ADAPTERS", "MANIFEST_COLUMNS", "SPLITS", "Adapter", "Candidate", "read_cremad", "read_csv_manifest",
           "read_mer2023", "read_ravdess", "read_release", "validate"]
