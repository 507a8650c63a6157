"""extract: manifest -> media store (audio, aligned faces, transcripts) (params: extract.*)."""

import json
from pathlib import Path

from pipeline.config import load_section
from pipeline.extract import extract
from pipeline.failures import write_failures
from pipeline.inputs import read_manifest
from pipeline.registry import check_available
from pipeline.store.lock import store_lock


def run(params: Path, *, manifest: Path, store: Path, failures: Path, faces: Path) -> dict:
    cfg = load_section("extract", params)
    check_available(cfg)   # fails here, not per clip
    root = Path(load_section("prepare", params).root)
    with store_lock(store):
        rows = read_manifest(manifest)
        summary, failed = extract(rows, root, store, cfg, run=load_section("run", params))
    faces.parent.mkdir(parents=True, exist_ok=True)  # per split: items with no face (and why), share of frames with a face
    faces.write_text(json.dumps(summary.pop("faces"), indent=2) + "\n")
    write_failures(failed, len(rows), failures, cfg.max_failure_rate, "extract")
    return summary
