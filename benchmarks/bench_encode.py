"""Encode per clip, for each default encoder (params.yaml's encode.features: openSMILE eGeMAPS, e5, FER)
plus Whisper and audio-concat (eGeMAPS + Whisper), beside the encoder's bare forward passes; writes
benchmarks/results/encode_overhead.json.

A media store of --items clips shaped as MER clips after `extract`: audio of 2-6 s (noise: the
encoders' cost depends on the length, not the content), a face crop of extract.face_size px per
sampled frame (extract.fps, at most extract.max_frames), a Chinese transcript of 10-30 characters.
Per encoder, side by side in every run:
  encode  encode_feature() into a fresh feature store, as the stage runs it in one process (media read,
          batching, the encoder, writing), with the model already loaded (its load time is reported
          once, apart: a release pays it once per process);
  floor   the same encoder object's bare forward passes over the same inputs at the same batch size,
          prepared beforehand (openSMILE's functionals per clip; e5's engine on length-sorted batches;
          FER's interpreter on preprocessed frame batches; Whisper's CTranslate2 encoder on the same
          log-mel batches; audio-concat: eGeMAPS's and Whisper's floors);
  no-op   encode again on the finished store (nothing pending).
Medians of --runs runs; the load average before and after each encoder.

  python benchmarks/bench_encode.py [--runs 3] [--items 64] [--features egemaps e5 fer whisper audio-concat]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from _measure import load, machine, median, timed, write_result  # noqa: E402
from encode_fixtures import SUBTITLES, media_item, media_view  # noqa: E402

from pipeline import encode as encode_mod  # noqa: E402
from pipeline.config import EncoderSpec, ExtractConfig, load_section, resolve_device  # noqa: E402
from pipeline.encoders.base import SAMPLE_RATE, is_silent  # noqa: E402
from pipeline.encoders.fer_tflite import preprocess  # noqa: E402
from pipeline.media import whisper  # noqa: E402
from pipeline.store.media import MediaStore  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "encode_overhead.json"
EXTRA = {"whisper": EncoderSpec("whisper"), "audio-concat": EncoderSpec("audio-concat")}


def features() -> dict[str, EncoderSpec]:
    return load_section("encode", REPO / "params.yaml").features | EXTRA


def clips(root: Path, n: int) -> Path:
    """The media store of n MER-shaped clips (see the module docstring)."""
    cfg, rng = ExtractConfig(), np.random.default_rng(0)
    chars = "".join(SUBTITLES)
    items = []
    for i in range(n):
        seconds = float(rng.uniform(2, 6))
        text = "".join(rng.choice(list(chars), size=int(rng.integers(10, 31))))
        items.append(media_item(f"c{i:05d}", seconds=seconds, transcript=text, face_size=cfg.face_size,
                                n_frames=min(cfg.max_frames, round(cfg.fps * seconds))))
    return media_view(root / "media.zarr", items, parts=4)


def inputs(view: Path, modality: str) -> list:
    store = MediaStore(view)
    items = [store.load(row) for _, row in store.view().iterrows()]
    return [item.audio if modality == "audio" else item.transcript if modality == "text" else item.found_faces
            for item in items]


def floor(encoder, batch: list, batch_size: int):
    """A callable running the encoder's bare forward passes over batch, whose inputs are prepared now."""
    name = encoder.name
    if name == "audio-concat":
        parts = [floor(part, batch, batch_size) for part in encoder.encoders]
        return lambda: [part() for part in parts]
    if name == "egemaps":
        waves = [np.asarray(w, np.float32) for w in batch if not is_silent(w)]
        return lambda: [encoder.smile.process_signal(w, SAMPLE_RATE) for w in waves]
    if name == "e5-multilingual":
        texts = sorted(batch, key=len)
        chunks = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        return lambda: [encoder.model.encode(c, is_query=encoder.config.prefix == "query") for c in chunks]
    if name == "fer":
        frames = [frame for item in batch for frame in item]
        prepared = [preprocess(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)]
        return lambda: [fer_forward(encoder, x) for x in prepared]
    if name == "whisper":
        pieces = [p for w in batch if not is_silent(w) for p in whisper.windows(np.asarray(w, np.float32))]
        mels = [m for _, m in whisper.mel_batches(encoder.whisper, pieces, encoder.config.window, batch_size,
                                                  encoder.MARGIN)]
        return lambda: [np.asarray(whisper.encode(encoder.whisper, m)) for m in mels]
    raise SystemExit(f"bench_encode: no bare forward for encoder {name!r}; add one to floor()")


def fer_forward(encoder, x: np.ndarray) -> None:
    encoder._resize(len(x))
    encoder.interpreter.set_tensor(encoder.input_index, x)
    encoder.interpreter.invoke()


def bench_feature(name: str, spec: EncoderSpec, view: Path, work: Path, args) -> dict:
    runtime = {"batch_size": args.batch_size, "device": args.device}   # as encode_feature builds it
    identity = encode_mod.spec_identity(spec)
    encode_mod._LOADED.clear()   # the model load is timed
    encoder, load_s, _ = timed(encode_mod.build_encoder, spec, runtime, identity.key)
    batch = inputs(view, encoder.modality)
    bare = floor(encoder, batch, args.batch_size)
    bare()   # warm-up: first-call allocations
    start_load, rows = load(), []
    for run in range(args.runs):
        store = work / f"{name}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        _, floor_wall, floor_cpu = timed(bare)
        summary, wall, cpu = timed(encode_mod.encode_feature, spec, [view], store, args.batch_size, args.device,
                                   items_per_part=args.items_per_part)
        noop, noop_wall, _ = timed(encode_mod.encode_feature, spec, [view], store, args.batch_size, args.device,
                                   items_per_part=args.items_per_part)
        assert summary["encoded"] == len(batch) and not summary["failed"] and noop["encoded"] == 0, (summary, noop)
        rows.append({"encode_wall": wall, "encode_cpu": cpu, "floor_wall": floor_wall, "floor_cpu": floor_cpu,
                     "noop_wall": noop_wall, "ratio_wall": wall / floor_wall, "load": load()})
        print(f"{name} run {run}: {rows[-1]}", flush=True)
    med = {k: median(r[k] for r in rows) for k in rows[0] if k != "load"}
    n = len(batch)
    return {"encoder": spec.encoder, "options": spec.options, "dim": summary["dim"],
            "encode_ms_per_clip": round(1000 * med["encode_wall"] / n, 2),
            "floor_ms_per_clip": round(1000 * med["floor_wall"] / n, 2),
            "encode_cpu_ms_per_clip": round(1000 * med["encode_cpu"] / n, 2),
            "floor_cpu_ms_per_clip": round(1000 * med["floor_cpu"] / n, 2),
            "ratio": med["ratio_wall"], "noop_ratio": round(med["noop_wall"] / med["encode_wall"], 4),
            "model_load_s": round(load_s, 2), "load_avg_start": start_load, "load_avg_end": load(),
            "medians_s": med, "per_run": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=load_section("encode", REPO / "params.yaml").batch_size)
    parser.add_argument("--items-per-part", type=int, default=256, help="encode.items_per_part")
    parser.add_argument("--features", nargs="+", default=list(features()), help="feature names (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda: where the encoders run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.device = resolve_device(args.device, "--device")   # as params load it: cuda without CUDA fails here
    specs = features()
    unknown = sorted(set(args.features) - set(specs))
    if unknown:
        raise SystemExit(f"bench_encode: unknown feature(s) {unknown}; known: {list(specs)}")
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        view = clips(Path(tmp), args.items)
        audio = [len(w) / SAMPLE_RATE for w in inputs(view, "audio")]
        faces = [len(f) for f in inputs(view, "visual")]
        result = {"figure": "encode per clip (one process, model loaded) beside the encoder's bare forward "
                            "passes over the same inputs at the same batch size; no-op re-run / full run",
                  "target_ratio": 1.25, "clips": args.items, "runs": args.runs, "batch_size": args.batch_size,
                  "items_per_part": args.items_per_part, "device": args.device,
                  "audio_seconds_per_clip": round(float(np.mean(audio)), 2),
                  "faces_per_clip": round(float(np.mean(faces)), 1), "face_size": ExtractConfig().face_size,
                  "features": {}}
        for name in args.features:
            result["features"][name] = bench_feature(name, specs[name], view, Path(tmp), args)
    write_result(result | machine(), args.out)


if __name__ == "__main__":
    main()
