"""The one rule for what identifies an output, cached or recorded (docs/fingerprints.md).

An output's fingerprint is a digest of three things, all needed to make it again:
- `code`: what names the code and its version where the code's own logic shapes the output (an encoder's
  name and `version`, extraction's VERSION, the digest of the training sources);
- `config`: the options that shape the output, never the knobs that only steer a run (device, workers);
- `libraries`: the versions of the libraries (and weights) that this config runs, from its components'
  `library_versions(config)`, not what the defaults would run.
Media store items, corrupted views, feature vectors, checkpoints and submissions are all keyed by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from pipeline.store.media import digest

PACKAGE = Path(__file__).parent


def fingerprint(code: Iterable[str], config: dict, libraries: dict[str, str]) -> str:
    """The digest of (code, config, libraries); dictionaries are hashed in key order."""
    return digest(json.dumps([*code, config, libraries], sort_keys=True, default=str))


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes: what an output was made from, where a file is its input."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def source_digest(*modules: str) -> str:
    """sha256 over the Python sources of `modules` (packages or .py files under pipeline/, by relative
    path): a code version that moves when, and only when, that code changes (not on unrelated commits)."""
    h = hashlib.sha256()
    for module in modules:
        path = PACKAGE / module
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f"{file.relative_to(PACKAGE).as_posix()}\0".encode() + file.read_bytes() + b"\0")
    return h.hexdigest()
