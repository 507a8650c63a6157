"""Face crop codecs for the media store; writes benchmarks/results/face_codecs.json.

Per codec and quality: the bytes per stored crop, its encode and decode time, and what the visual
encoder `fer` makes of the decoded crops against the raw ones: the feature drift (relative L2 distance
and cosine similarity of each item's vector to its raw-crop vector, mean and worst) and the visual-only
accuracy and weighted F1 (benchmarks/real/faces.py's half-split logistic regression), with their change
from raw. Two corpora: the FER-2013 dev images (../shared/data/fer2013-dev, detected by each detector
bench_real.py scores) and generated demo clips (the default detector). Crops are extracted once,
lossless (extract.face_quality 0), and every codec is applied to those same crops.

  python benchmarks/bench_face_codecs.py [--data ../shared/data] [--demo-clips 120]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import load, machine, timed, write_result  # noqa: E402
from bench_extract import corpus  # noqa: E402
from real.faces import corpus_manifest, half_split_scores  # noqa: E402

from pipeline.config import ExtractConfig  # noqa: E402
from pipeline.encoders import make_encoder  # noqa: E402
from pipeline.extract import extract  # noqa: E402
from pipeline.store.media import MediaStore, decode_crops, encode_crops  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
# name -> (encode crops, file extension); the store's own codec (encode_crops) at each quality, and WebP
WEBP = {"webp lossless": 101, "webp 90": 90, "webp 75": 75}
CODECS = {"png (face_quality 0)": lambda crops: encode_crops(crops, 0),
          **{f"jpeg {q} (face_quality {q})": (lambda crops, q=q: encode_crops(crops, q)) for q in (98, 95, 92, 90, 85, 75, 50)},
          **{name: (lambda crops, q=q: [cv2.imencode(".webp", np.ascontiguousarray(c[..., ::-1]),
                                                     [cv2.IMWRITE_WEBP_QUALITY, q])[1].tobytes() for c in crops])
             for name, q in WEBP.items()}}
DETECTORS = {"fer2013-dev": ["blazeface", "whole_frame"], "demo": ["blazeface"]}


def raw_crops(manifest: pd.DataFrame, root: Path, detector: str) -> list[np.ndarray]:
    """Each item's found crops, extracted losslessly through the project's extract."""
    cfg = ExtractConfig(face_detector=detector, face_quality=0, workers=1, executor="local")
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "media.zarr"
        _, failures = extract(manifest, root, store, cfg)
        if failures:
            raise RuntimeError(f"{root}: extraction failed for {len(failures)} items, e.g. {failures[0]}")
        media = MediaStore(store)
        rows = {row.sample_id: row for row in media.view().itertuples()}
        return [media.load(rows[sid]).found_faces for sid in manifest["sample_id"]]


def through(codec, items: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
    """The items' crops encoded and decoded, with bytes and milliseconds per crop."""
    crops = [c for item in items for c in item]
    codes, encode, _ = timed(codec, np.stack(crops))
    decoded, decode, _ = timed(decode_crops, codes, crops[0].shape[0])
    bounds = np.cumsum([0, *map(len, items)])
    return ([decoded[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
            {"bytes_per_crop": round(float(np.mean([len(c) for c in codes]))),
             "encode_ms_per_crop": round(1e3 * encode / len(crops), 3), "decode_ms_per_crop": round(1e3 * decode / len(crops), 3),
             "pixel_mae": round(float(np.abs(decoded.astype(np.int16) - np.stack(crops)).mean()), 3)})


def drift(vectors: list, raw: list) -> dict:
    pairs = [(v, r) for v, r in zip(vectors, raw) if r is not None]
    rel = [float(np.linalg.norm(v - r) / np.linalg.norm(r)) for v, r in pairs]
    cos = [float(v @ r / (np.linalg.norm(v) * np.linalg.norm(r))) for v, r in pairs]
    return {"relative_l2_mean": round(statistics.mean(rel), 5), "relative_l2_max": round(max(rel), 5),
            "cosine_mean": round(statistics.mean(cos), 6), "cosine_min": round(min(cos), 6)}


def compare(items: list[np.ndarray], labels: np.ndarray, encoder) -> dict:
    raw = encoder.encode(items)
    base = half_split_scores(raw, labels)
    rows = {"raw": {"bytes_per_crop": int(items[next(i for i, c in enumerate(items) if len(c))][0].nbytes),
                    "visual_only": base}}
    for name, codec in CODECS.items():
        decoded, sizes = through(codec, [c for c in items if len(c)])
        full = iter(decoded)
        vectors = encoder.encode([next(full) if len(c) else c for c in items])
        scores = half_split_scores(vectors, labels)
        rows[name] = sizes | {"feature_drift": drift(vectors, raw), "visual_only": scores,
                              "accuracy_change": round(scores["accuracy"] - base["accuracy"], 4),
                              "f1_weighted_change": round(scores["f1_weighted"] - base["f1_weighted"], 4)}
        print(name, json.dumps(rows[name]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--demo-clips", type=int, default=120)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mer-bench-face-codecs")
    args = parser.parse_args()
    encoder = make_encoder("fer", {}, batch_size=64)
    fer = corpus_manifest(args.data.resolve(), "fer2013-dev")
    if fer is None:
        raise SystemExit(f"{args.data}/fer2013-dev/labels.csv not found: pass --data DIR (the folder holding fer2013-dev/)")
    demo_root, demo = corpus(args.work, args.demo_clips)
    corpora = {"fer2013-dev": (fer, args.data.resolve() / "fer2013-dev"), "demo": (demo, demo_root)}
    result = {"load_before": load(), "corpora": {}}
    for name, (manifest, root) in corpora.items():
        for detector in DETECTORS[name]:
            print(f"{name} {detector} ...", flush=True)
            items = raw_crops(manifest, root, detector)
            result["corpora"].setdefault(name, {})[detector] = {
                "items": len(items), "crops": sum(map(len, items)), "crop_side": ExtractConfig().face_size,
                "codecs": compare(items, manifest["label"].to_numpy(), encoder)}
    result |= {"load_after": load(), "command": f"python benchmarks/bench_face_codecs.py --demo-clips {args.demo_clips}"}
    result |= machine()
    write_result(result, RESULTS / "face_codecs.json")


if __name__ == "__main__":
    main()
