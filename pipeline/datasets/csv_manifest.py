"""Generic corpus: a CSV manifest `path, split, label, valence, transcript, speaker`.

Only `path` and `split` are required (an empty `path` makes a text-only row); `sample_id` defaults
to the file name without extension. Any corpus (RAVDESS, MELD, CH-SIMS, your own) fits this form.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.datasets.base import Adapter, Candidate, Reject, csv_rows
from pipeline.errors import InputError, MissingInput

REQUIRED = ("path", "split")


@dataclass(frozen=True)
class CsvConfig:
    manifest: str = "manifest.csv"   # the manifest file, relative to prepare.root


class CsvAdapter(Adapter):
    """Any corpus through a CSV manifest: path, split and optional label, valence, transcript, speaker."""

    name = "csv"
    Config = CsvConfig

    def read(self, root: Path) -> Iterator[Candidate]:
        return read_csv_manifest(root, self.config.manifest)


class DemoAdapter(CsvAdapter):
    """The generated demo corpus (`mer demo-corpus`), read through its CSV manifest."""

    name = "demo"
    generated = True


def read_csv_manifest(root: Path, manifest: str) -> Iterator[Candidate]:
    path = root / manifest
    if not path.is_file():
        raise MissingInput(f"manifest {path} not found: set prepare.root and prepare.options.manifest")
    for i, (line, row) in enumerate(csv_rows(path)):
        if isinstance(row, Reject):
            yield Candidate(f"{manifest}:{line}", "", None, skip=row)
            continue
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; required: {list(REQUIRED)}")
        media = row["path"] or None
        sample_id = row.get("sample_id") or (PurePosixPath(media).stem if media else f"row{i:06d}")
        yield Candidate(
            sample_id=sample_id,
            split=row["split"],
            path=media,
            label=row.get("label"),
            valence=row.get("valence"),
            transcript=row.get("transcript"),
            speaker=row.get("speaker"),
            true_label=row.get("true_label"),
            true_valence=row.get("true_valence"),
        )
