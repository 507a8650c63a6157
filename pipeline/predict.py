"""`mer predict`: new clips -> extract -> encode -> the trained fold ensemble, through the pipeline's own code.

The clips are validated as a corpus is (`prepare`), extracted into a media store with extract.*, encoded
with the encode.features entries the checkpoint was trained on, checked against the checkpoint's
feature records, z-scored with its training statistics and scored by its fold ensemble, exactly as
`train` scores a test split. A clip that fails validation or extraction gets its reason, no prediction.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import load_section
from pipeline.datasets import Candidate, validate
from pipeline.encode import encode_feature
from pipeline.errors import InputError
from pipeline.extract import extract
from pipeline.labels import MER_LABELS
from pipeline.store.lock import store_lock
from pipeline.training import checkpoint
from pipeline.training.data import load_table, normalized
from pipeline.training.run import model_input


def prob_columns(labels) -> list[str]:
    return [f"prob_{name}" for name in labels]


def clip_manifest(clips: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(manifest, rejects, root) for the clips, validated like a corpus; ids are file stems, made unique."""
    if not clips:
        raise InputError("no clips given")
    paths = [Path(c).resolve() for c in clips]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    seen: dict[str, int] = {}
    candidates = []
    for path in paths:
        n = seen[path.stem] = seen.get(path.stem, 0) + 1
        sample_id = path.stem if n == 1 else f"{path.stem}~{n}"
        candidates.append(Candidate(sample_id, "test1", str(path.relative_to(root))))
    manifest, rejects = validate(candidates, root, MER_LABELS, {})
    return manifest, rejects, root


def predict_clips(clips: list[Path], checkpoint_dir: Path, params: Path, work: Path | None = None) -> pd.DataFrame:
    """One row per clip: clip, sample_id, emotion, prob_<label>..., valence, modalities, error."""
    ckpt = checkpoint.load(checkpoint_dir)
    if work is None:
        with tempfile.TemporaryDirectory(prefix="mer-predict-") as tmp:
            return predict_clips(clips, checkpoint_dir, params, Path(tmp))
    manifest, rejects, root = clip_manifest(clips)
    errors = dict(zip(rejects["sample_id"], rejects["reason"]))
    if len(manifest):
        with store_lock(Path(work) / "media.zarr"):   # the work folder's stores take one writer at a time
            frame = _predict_manifest(ckpt, manifest, root, params, Path(work))
    else:
        frame = pd.DataFrame(columns=["sample_id", "emotion", *prob_columns(ckpt.labels), "valence", "modalities"])
    errors |= {sid: "no usable modality (extraction failed or nothing found)"
               for sid, mods in zip(frame["sample_id"], frame["modalities"]) if not mods}
    ids = [*manifest["sample_id"], *rejects["sample_id"]]
    paths = [str(root / p) for p in manifest["path"]] + list(rejects["path"])
    out = pd.DataFrame({"clip": paths, "sample_id": ids}).merge(frame, on="sample_id", how="left")
    out["error"] = out["sample_id"].map(errors).fillna("")
    out.loc[out["error"] != "", ["emotion", *prob_columns(ckpt.labels), "valence"]] = None
    return out


def _predict_manifest(ckpt: checkpoint.Checkpoint, manifest: pd.DataFrame, root: Path, params: Path,
                      work: Path) -> pd.DataFrame:
    extract_cfg, encode_cfg = load_section("extract", params), load_section("encode", params)
    media = work / "media.zarr"
    extract(manifest, root, media, extract_cfg)
    stores = {}
    for modality, record in ckpt.features.items():
        spec = encode_cfg.features.get(record["feature"])
        if spec is None:
            raise checkpoint.FeatureMismatch(f"{modality}: the checkpoint needs feature {record['feature']!r} "
                                             f"(encoder {record['encoder']}), which encode.features in {params} lacks")
        stores[modality] = work / "features" / f"{record['feature']}.zarr"
        encode_feature(spec, [media], stores[modality], encode_cfg.batch_size, encode_cfg.device)
    ckpt.check_features({m: checkpoint.feature_record(ckpt.features[m]["feature"], s) for m, s in stores.items()})
    table = load_table(manifest, media, stores)
    if ckpt.norm is not None:
        table = normalized(table, ckpt.norm)
    pred = ckpt.predict(model_input(table, ckpt.modalities))
    frame = pd.DataFrame(pred.probs, columns=prob_columns(ckpt.labels))
    frame.insert(0, "emotion", np.array(ckpt.labels)[pred.pred])
    frame.insert(0, "sample_id", table.rows["sample_id"].to_numpy())
    frame["valence"] = pred.valence
    frame["modalities"] = [",".join(m for m in ckpt.modalities if table.present[m][i]) for i in range(len(frame))]
    return frame


def write(frame: pd.DataFrame, out: Path | None) -> str:
    """JSON records (to `out` or returned for stdout) or CSV when `out` ends in .csv."""
    if out is not None and out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
        return f"wrote {len(frame)} predictions to {out}"
    records = []
    for row in frame.to_dict("records"):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        probs = {name.removeprefix("prob_"): row.pop(name) for name in [c for c in row if c.startswith("prob_")]}
        records.append(row | {"probabilities": None if row["error"] else probs})
    text = json.dumps(records, indent=2)
    if out is None:
        return text
    out.write_text(text)
    return f"wrote {len(frame)} predictions to {out}"

