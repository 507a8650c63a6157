"""Bytes per clip of every store of a project that ran `dvc repro`, and the MER 2025 release on paper;
writes benchmarks/results/disk.json.

Per store (the media store, each corrupted view, each feature store) and per array inside it: the bytes
on disk divided by the clips it holds, and per stored face frame and audio second for the media stores
(face crops as image files at extract.face_quality, audio as FLAC; a store written before holds raw
pixels and int16 samples, and is measured as it is). The release estimate scales the measured bytes per
face frame and per audio second to MER 2025's 132,171 clips at `--clip-seconds` each with `--face-frames`
crops each (default extract.max_frames: the MER 2025 recipe takes that many of the shipped faces), the
feature stores by their vector sizes, for the default features and for a 1024/768/1024 community-encoder
shape, and a corrupted view per 10,000 clips it covers (the MER 2025 recipe has none: no noise track);
what is an estimate says so.

  python benchmarks/bench_disk.py [--project .] [--clip-seconds 4.0] [--face-frames 32]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _measure import write_result  # noqa: E402

from pipeline.store.features import FeatureStore  # noqa: E402
from pipeline.store.media import MediaStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RELEASE_CLIPS = 132_171
COMMUNITY_DIMS = (1024, 768, 1024)   # chinese-hubert-large, CLIP ViT-L/14, Chinese MacBERT (docs/encoders-community.md)
FACE_ARRAYS = ("faces", "face_codes", "face_ends")   # raw pixels (stores written before) | image files
AUDIO_ARRAYS = ("audio", "audio_codes")              # int16 samples (stores written before) | FLAC files


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
            "bytes_per_face_frame": round(sum(arrays.get(a, 0) for a in FACE_ARRAYS) / max(frames, 1)),
            "bytes_per_audio_second": round(sum(arrays.get(a, 0) for a in AUDIO_ARRAYS) / max(seconds, 1e-9)),
            "face_frames": frames, "audio_seconds": round(seconds, 1)}


def features(store: Path) -> dict:
    index = FeatureStore(store).index()
    ok = int((index["status"] == "ok").sum())
    return {"vectors": ok, "dim": FeatureStore(store).meta()["dim"], "bytes": folder_bytes(store),
            "bytes_per_vector": round(folder_bytes(store) / max(ok, 1))}


def release(result: dict, extract: dict, clip_seconds: float, face_frames: int | None) -> dict:
    """Every store of the release on paper, from this project's measured bytes per frame, second and value."""
    frames = face_frames or extract["max_frames"]

    def clip(store: dict) -> dict[str, float]:
        return {"faces": frames * store["bytes_per_face_frame"], "audio": clip_seconds * store["bytes_per_audio_second"]}

    media_clip = clip(result["media"])
    per_value = [f["bytes_per_vector"] / f["dim"] for f in result["features"].values()]
    value_bytes = max(per_value) if per_value else 4.0
    views = [sum(clip(view).values()) for view in result["corrupted"].values()]
    gb = {"media": RELEASE_CLIPS * sum(media_clip.values()) / 1e9,
          "features_default": RELEASE_CLIPS * sum(f["bytes_per_vector"] for f in result["features"].values()) / 1e9,
          "features_community": RELEASE_CLIPS * value_bytes * sum(COMMUNITY_DIMS) / 1e9}
    return {"clips": RELEASE_CLIPS, "clip_seconds": clip_seconds, "face_frames_per_clip": frames,
            "face_quality": extract.get("face_quality", "raw"),
            "media_gb": round(gb["media"], 1), "media_faces_gb": round(RELEASE_CLIPS * media_clip["faces"] / 1e9, 1),
            "media_audio_gb": round(RELEASE_CLIPS * media_clip["audio"] / 1e9, 1),
            "features_gb": round(gb["features_default"], 2), "features_community_gb": round(gb["features_community"], 2),
            "corrupted_view_gb_per_10000_clips": round(max(views) * 1e4 / 1e9, 2) if views else None,
            "total_gb": round(sum(gb.values()), 1),
            "note": "an estimate: the measured bytes per face frame and audio second of this project's media store "
                    "scaled to the release's clip count, length and crops per clip; features at the measured bytes "
                    "per value for the default features and the community shape (both counted in total_gb); the "
                    "MER 2025 recipe makes no corrupted view, each one another recipe adds costs "
                    "corrupted_view_gb_per_10000_clips (the largest measured view, at the release's crops per clip)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=REPO)
    parser.add_argument("--clip-seconds", type=float, default=4.0, help="a release clip's mean length (estimate)")
    parser.add_argument("--face-frames", type=int, help="face crops per release clip (default extract.max_frames)")
    args = parser.parse_args()
    root = args.project / "featurestore"
    params = yaml.safe_load((args.project / "params.yaml").read_text())
    result = {"project": str(args.project), "media": media(root / "media.zarr"), "corrupted": {}, "features": {}}
    corrupted = root / "corrupted.zarr"
    for view in sorted(p for p in corrupted.iterdir() if p.is_dir()) if corrupted.is_dir() else []:
        result["corrupted"][view.name] = media(view)
    for store in sorted((root / "features").glob("*.zarr")):
        result["features"][store.stem] = features(store)
    result["release_estimate"] = release(result, params["extract"], args.clip_seconds, args.face_frames)
    result["command"] = f"python benchmarks/bench_disk.py --project CLONE --clip-seconds {args.clip_seconds}" + \
        (f" --face-frames {args.face_frames}" if args.face_frames else "")
    write_result(result, RESULTS / "disk.json")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
