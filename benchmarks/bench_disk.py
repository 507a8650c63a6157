"""Bytes per clip of every store of a project that ran `dvc repro`, and the MER 2025 release on paper;
writes benchmarks/results/disk.json.

Per store (the media store, each corrupted view, each feature store) and per array inside it: the bytes
on disk divided by the clips it holds, and per stored face frame and audio second for the media stores.
The release estimate scales the measured bytes per face frame and per audio second to MER 2025's
132,171 clips at `--clip-seconds` each (frames sampled as extract samples them: extract.fps, at most
extract.max_frames), and the feature stores by their vector sizes; what is an estimate says so.

  python benchmarks/bench_disk.py [--project .] [--clip-seconds 4.0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.store.features import FeatureStore  # noqa: E402
from pipeline.store.media import MediaStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RELEASE_CLIPS = 132_171


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def array_bytes(store: Path) -> dict[str, int]:
    """Bytes on disk per array name, over every part of a part store."""
    sizes: dict[str, int] = {}
    for part in [p for p in (store / "parts").iterdir() if p.is_dir()] if (store / "parts").is_dir() else []:
        for array in part.iterdir():
            if array.is_dir():
                sizes[array.name] = sizes.get(array.name, 0) + folder_bytes(array)
    return sizes


def media(store: Path) -> dict:
    index = MediaStore(store).index()
    clips = len(index)
    arrays = array_bytes(store)
    frames = int(index["n_frames"].clip(lower=0).sum())
    seconds = float(index["audio_len"].clip(lower=0).sum()) / 16000
    return {"clips": clips, "bytes": folder_bytes(store), "bytes_per_clip": round(folder_bytes(store) / max(clips, 1)),
            "arrays_bytes_per_clip": {k: round(v / max(clips, 1)) for k, v in sorted(arrays.items())},
            "bytes_per_face_frame": round(arrays.get("faces", 0) / max(frames, 1)),
            "bytes_per_audio_second": round(arrays.get("audio", 0) / max(seconds, 1e-9)),
            "face_frames": frames, "audio_seconds": round(seconds, 1)}


def features(store: Path) -> dict:
    index = FeatureStore(store).index()
    ok = int((index["status"] == "ok").sum())
    return {"vectors": ok, "dim": FeatureStore(store).meta()["dim"], "bytes": folder_bytes(store),
            "bytes_per_vector": round(folder_bytes(store) / max(ok, 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=REPO)
    parser.add_argument("--clip-seconds", type=float, default=4.0, help="a release clip's mean length (estimate)")
    args = parser.parse_args()
    root = args.project / "featurestore"
    params = yaml.safe_load((args.project / "params.yaml").read_text())
    result = {"project": str(args.project), "media": media(root / "media.zarr"), "corrupted": {}, "features": {}}
    corrupted = root / "corrupted.zarr"
    for view in sorted(p for p in corrupted.iterdir() if p.is_dir()) if corrupted.is_dir() else []:
        result["corrupted"][view.name] = media(view)
    for store in sorted((root / "features").glob("*.zarr")):
        result["features"][store.stem] = features(store)
    extract = params["extract"]
    frames = min(extract["max_frames"], round(args.clip_seconds * extract["fps"]))
    per_clip = {"faces": frames * result["media"]["bytes_per_face_frame"],
                "audio": args.clip_seconds * result["media"]["bytes_per_audio_second"]}
    feature_bytes = sum(f["bytes_per_vector"] for f in result["features"].values())
    result["release_estimate"] = {
        "clips": RELEASE_CLIPS, "clip_seconds": args.clip_seconds, "face_frames_per_clip": frames,
        "media_gb": round(RELEASE_CLIPS * sum(per_clip.values()) / 1e9, 1),
        "media_faces_gb": round(RELEASE_CLIPS * per_clip["faces"] / 1e9, 1),
        "media_audio_gb": round(RELEASE_CLIPS * per_clip["audio"] / 1e9, 1),
        "features_gb": round(RELEASE_CLIPS * feature_bytes / 1e9, 2),
        "note": "an estimate: the measured bytes per face frame and audio second of this project's media store, "
                "scaled to the release's clip count and length; corrupted views come on top for the clips they cover"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "disk.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
