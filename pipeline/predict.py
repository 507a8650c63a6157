"""`mer predict`: new clips -> extract -> encode -> the trained fold ensemble, through the pipeline's own code.

The clips are validated as a corpus is (`prepare`), extracted into a media store, encoded with the
encoders the checkpoint was trained on, checked against the checkpoint's feature records, z-scored with
its training statistics and scored by its fold ensemble, exactly as `train` scores a test split.

Settings come from the checkpoint itself (its extraction settings and encoder configs), so predict runs
from any folder; `--params` replaces them with a params file's extract.* and encode.features (checked
against the checkpoint all the same). Transcripts are given per clip, or made by ASR, or absent. Per
clip the output says which modalities were used, the share of frames with a face, a warning for each
modality the model was trained with but the clip lacks, and for a clip that failed, the real reason.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import EncodeConfig, EncoderSpec, ExtractConfig, build, load_section
from pipeline.datasets import Candidate, validate
from pipeline.datasets.base import iter_csv
from pipeline.encode import encode_feature
from pipeline.errors import InputError, MissingInput
from pipeline.extract import extract
from pipeline.media.decode import SAMPLE_RATE
from pipeline.store.lock import store_lock
from pipeline.store.media import MediaStore
from pipeline.training import checkpoint
from pipeline.training.data import load_table, normalized
from pipeline.training.run import model_input


@dataclass(frozen=True)
class Settings:
    """How new clips are extracted and encoded: the params sections (a checkpoint's features as encode.features)."""
    extract: ExtractConfig
    encode: EncodeConfig


def prob_columns(labels) -> list[str]:
    return [f"prob_{name}" for name in labels]


def settings(ckpt: checkpoint.Checkpoint, params: Path | None = None, asr: dict | None = None) -> Settings:
    """The checkpoint's own settings, or a params file's; `asr` ({"asr": engine, "asr_options": {...}})
    replaces the speech recognition engine and the options it gives (the others kept, e.g. the window)."""
    if params is not None:
        found = Settings(load_section("extract", params), load_section("encode", params))
    elif "extract" not in ckpt.meta:
        raise InputError("this checkpoint does not record its extraction settings (written before model cards): "
                         "pass --params with the params.yaml it was trained with, or retrain it")
    else:
        features = {r["feature"]: EncoderSpec(r["encoder"], dict(r["config"])) for r in ckpt.features.values()}
        found = Settings(checkpoint_extract(ckpt.meta["extract"]), EncodeConfig(features))
    if asr:
        asr = asr | {"asr_options": found.extract.asr_options | asr.get("asr_options", {})}
    return replace(found, extract=replace(found.extract, **(asr or {})))


# A checkpoint's extraction settings from before extract.asr_options: their flat key -> the option.
FLAT_ASR_KEYS = {"asr_model": "model", "asr_language": "language", "asr_window": "window"}


def checkpoint_extract(recorded: dict) -> ExtractConfig:
    """A checkpoint's extraction settings; older checkpoints also record the audio rate, which is fixed now,
    and the ASR options as flat keys (FLAT_ASR_KEYS); those from before face_quality were trained on lossless crops."""
    recorded = {"face_quality": 0} | dict(recorded)
    flat = {option: recorded.pop(key) for key, option in FLAT_ASR_KEYS.items() if key in recorded}
    recorded["asr_options"] = recorded.get("asr_options", {}) | flat
    rate = recorded.pop("sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise InputError(f"this checkpoint was trained on {rate} Hz audio; the pipeline extracts {SAMPLE_RATE} Hz only: "
                         f"retrain it")
    return build(ExtractConfig, recorded, where="checkpoint extract settings")


def read_transcripts(path: Path) -> dict[Path, str]:
    """A CSV with columns path,transcript -> {resolved clip path: transcript}; relative paths are taken
    from the CSV's folder."""
    if not path.is_file():
        raise MissingInput(f"--transcripts {path}: no such file; give a CSV with columns path,transcript")
    rows = iter_csv(path, ("path", "transcript"))
    return {(path.parent / row["path"]).resolve(): row["transcript"] or "" for row in rows if row["path"]}


def clip_manifest(clips: list[Path], labels: tuple[str, ...],
                  transcripts: dict[Path, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(manifest, rejects, root) for the clips, validated like a corpus; ids are file stems, made unique;
    `labels`: the checkpoint's label set; `transcripts`: resolved clip path -> its transcript."""
    if not clips:
        raise InputError("no clips given")
    transcripts = transcripts or {}
    paths = [Path(c).resolve() for c in clips]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    seen: dict[str, int] = {}
    candidates = []
    for path in paths:
        n = seen[path.stem] = seen.get(path.stem, 0) + 1
        sample_id = path.stem if n == 1 else f"{path.stem}~{n}"
        candidates.append(Candidate(sample_id, "test1", str(path.relative_to(root)), transcript=transcripts.get(path)))
    manifest, rejects = validate(candidates, root, labels, {})
    return manifest, rejects, root


def predict_clips(clips: list[Path], checkpoint_dir: Path, params: Path | None = None, work: Path | None = None,
                  transcripts: dict[Path, str] | None = None, asr: dict | None = None) -> pd.DataFrame:
    """One row per clip: clip, sample_id, emotion, prob_<label>..., valence, modalities, face_found_rate,
    transcript, transcript_source, warnings, error."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="mer-predict-") as tmp:
            return predict_clips(clips, checkpoint_dir, params, Path(tmp), transcripts, asr)
    ckpt = checkpoint.load(checkpoint_dir)
    found = settings(ckpt, params, asr)
    manifest, rejects, root = clip_manifest(clips, ckpt.labels, transcripts)
    errors = dict(zip(rejects["sample_id"], rejects["reason"]))
    if len(manifest):
        with store_lock(Path(work) / "media.zarr"):   # the work folder's stores take one writer at a time
            frame, failed = _predict_manifest(ckpt, found, manifest, root, Path(work))
        errors |= failed
    else:
        frame = pd.DataFrame(columns=["sample_id", "emotion", *prob_columns(ckpt.labels), "valence", "modalities"])
    errors |= {sid: "no usable modality: " + (warn or "nothing found")
               for sid, mods, warn in zip(frame["sample_id"], frame["modalities"], frame.get("warnings", []))
               if not mods and sid not in errors}
    ids = [*manifest["sample_id"], *rejects["sample_id"]]
    paths = [str(root / p) for p in [*manifest["path"], *rejects["path"]]]
    out = pd.DataFrame({"clip": paths, "sample_id": ids}).merge(frame, on="sample_id", how="left")
    out["error"] = out["sample_id"].map(errors).fillna("")
    out.loc[out["error"] != "", ["emotion", *prob_columns(ckpt.labels), "valence"]] = None
    return out


def _predict_manifest(ckpt: checkpoint.Checkpoint, found: Settings, manifest: pd.DataFrame, root: Path,
                      work: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """(predictions with per-clip diagnostics, sample_id -> extraction failure)."""
    media = work / "media.zarr"
    _, failures = extract(manifest, root, media, found.extract)
    failed = {f["sample_id"]: f"{f['step']} failed: {f['error']}: {f['message']}" for f in failures}
    return score_media(ckpt, found, manifest, media, work), failed


def score_media(ckpt: checkpoint.Checkpoint, found: Settings, manifest: pd.DataFrame, media: Path,
                work: Path) -> pd.DataFrame:
    """The checkpoint's predictions, with per-item diagnostics, for the manifest's items of a media store:
    encoded with the checkpoint's encoders into `work`, checked against its feature records."""
    stores = {}
    for modality, record in ckpt.features.items():
        spec = found.encode.features.get(record["feature"])
        if spec is None:
            raise checkpoint.FeatureMismatch(f"{modality}: the checkpoint needs feature {record['feature']!r} "
                                             f"(encoder {record['encoder']}), which the given encode.features lacks")
        stores[modality] = work / "features" / f"{record['feature']}.zarr"
        encode_feature(spec, [media], stores[modality], found.encode.batch_size, found.encode.device)
    ckpt.check_features({m: checkpoint.feature_record(ckpt.features[m]["feature"], s) for m, s in stores.items()})
    table = load_table(manifest, media, stores, ckpt.labels)
    if ckpt.norm is not None:
        table = normalized(table, ckpt.norm)
    pred = ckpt.predict(model_input(table, ckpt.modalities))
    frame = pd.DataFrame(pred.probs, columns=prob_columns(ckpt.labels))
    frame.insert(0, "emotion", np.array(ckpt.labels)[pred.pred])
    frame.insert(0, "sample_id", table.rows["sample_id"].to_numpy())
    frame["valence"] = pred.valence
    used = [[m for m in ckpt.modalities if table.present[m][i]] for i in range(len(frame))]
    frame["modalities"] = [",".join(u) for u in used]
    items = MediaStore(media).view().set_index("sample_id")
    info = [_clip_info(items.loc[sid] if sid in items.index else None, ckpt.modalities, u)
            for sid, u in zip(frame["sample_id"], used)]
    return pd.concat([frame, pd.DataFrame(info)], axis=1)


def _clip_info(item, trained: tuple[str, ...], used: list[str]) -> dict:
    """Face-found rate, the transcript and its source, and why each trained modality the clip lacks is absent."""
    if item is None:
        return {"face_found_rate": None, "transcript": None, "transcript_source": None, "warnings": ""}
    frames = int(item["n_frames"])
    reasons = {"audio": "no audio track" if item["audio_len"] <= 0 else "silent audio",
               "visual": ("no video frames" if frames <= 0 else f"no face found in {frames} frames"),
               "text": ("no transcript (give --transcript or --transcripts, or --asr faster-whisper)"
                        if not isinstance(item["transcript"], str) else "empty transcript")}
    warnings = [f"{m} missing: {reasons[m]}" for m in trained if m not in used]
    return {"face_found_rate": round(int(item["n_faces"]) / frames, 3) if frames > 0 else None,
            "transcript": item["transcript"] if isinstance(item["transcript"], str) else None,
            "transcript_source": item["transcript_source"], "warnings": "; ".join(warnings)}


def corpus_warning(checkpoint_dir: Path) -> str:
    """A warning when the checkpoint's card names a generated corpus (or no corpus at all); else ""."""
    corpus = json.loads((Path(checkpoint_dir) / checkpoint.META).read_text()).get("corpus", {})
    if corpus.get("generated"):
        return (f"warning: {checkpoint_dir} was trained on the generated {corpus.get('adapter')} corpus "
                f"({corpus.get('root')}), whose emotions are synthetic cues: on real clips its answers mean "
                f"nothing, however confident. Train on a real corpus (prepare.adapter, prepare.root) for real clips.")
    if not corpus.get("adapter") and not corpus.get("manifest_sha256"):
        return f"warning: {checkpoint_dir} does not name its training corpus (an older checkpoint): retrain it to know"
    return ""


def failure_lines(frame: pd.DataFrame) -> list[str]:
    """One line per clip that gave no prediction: the clip and why."""
    failed = frame[frame["error"] != ""]
    return [f"failed: {clip}: {error}" for clip, error in zip(failed["clip"], failed["error"])]


def write(frame: pd.DataFrame, out: Path | None) -> str:
    """JSON records (to `out` or returned for stdout): a JSON array, or JSON lines (one object per line)
    when `out` ends in .jsonl; CSV when it ends in .csv."""
    suffix = out.suffix.lower() if out is not None else ""
    if suffix == ".csv":
        frame.to_csv(out, index=False)
        return f"wrote {len(frame)} predictions to {out}"
    records = []
    for row in frame.to_dict("records"):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        probs = {name.removeprefix("prob_"): row.pop(name) for name in [c for c in row if c.startswith("prob_")]}
        records.append(row | {"probabilities": None if row["error"] else probs})
    if suffix == ".jsonl":
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    else:
        text = json.dumps(records, indent=2)
    if out is None:
        return text
    out.write_text(text)
    return f"wrote {len(frame)} predictions to {out}"

