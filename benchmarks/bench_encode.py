"""Encode speed: `encode` wall time vs the bare model forward passes, no-op re-run, and feature load.

1. A small wav2vec 2.0 (built from a config and saved locally, 320x conv downsampling as the real
   ones, 4 transformer layers of width 256) over a media store of `--items` utterances of 2-6 s.
   `encode` (fresh feature store; reading the media store, batching, pooling and writing included,
   model loading too) is timed against the bare loop over the same in-memory waveforms: feature
   extractor + model forward, same length order, same batch size. Runs alternate; medians reported.
2. A no-op re-run of `encode` on the finished store, as a fraction of the full run.
3. Loading all utterance features of a `--store-items` item store (dim `--dim`, parts of 256 items,
   as the encode stage writes them) for training: FeatureStore.load over a view of every item.

    python benchmarks/bench_encode.py [--runs 3] [--items 64] [--batch-size 8] [--items-per-part 8]
                                      [--store-items 100000] [--dim 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_train import cpu_model  # noqa: E402
from encode_fixtures import SR, media_item, media_view, save_wav2vec2  # noqa: E402

from pipeline import encode as encode_mod  # noqa: E402
from pipeline.config import EncoderSpec  # noqa: E402
from pipeline.store.features import FeatureStore, Identity  # noqa: E402
from pipeline.store.media import MediaStore  # noqa: E402

OUT = Path(__file__).parent / "results"
MODEL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
             conv_dim=(64, 64, 64, 64), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 8, 8),
             num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_forward(path: str, waves: list[np.ndarray], batch_size: int, device: str = "cpu") -> None:
    from transformers import AutoFeatureExtractor, AutoModel
    extractor = AutoFeatureExtractor.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval().to(device)
    order = sorted(waves, key=len)
    for start in range(0, len(order), batch_size):
        inputs = extractor(order[start:start + batch_size], sampling_rate=SR, padding=True,
                           return_tensors="pt", return_attention_mask=True).to(device)
        with torch.inference_mode():
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
        hidden.mean().item()  # wait for the device: the encoder copies every batch's output to the host too


def encode_run(spec: EncoderSpec, view: Path, store: Path, batch_size: int, items_per_part: int,
               device: str = "cpu") -> dict:
    encode_mod._encoder.cache_clear()   # each run loads its model, as a fresh `mer encode` does
    return encode_mod.encode_feature(spec, [view], store, batch_size=batch_size, device=device,
                                     items_per_part=items_per_part)


def bench_encode(root: Path, args) -> dict:
    path = save_wav2vec2(root / "model", "layer", **MODEL)
    rng = np.random.default_rng(0)
    items = [media_item(f"u{i:04d}", seconds=float(rng.uniform(2, 6))) for i in range(args.items)]
    view = media_view(root / "media.zarr", items, parts=4)
    waves = [MediaStore(view).load(row).audio for row in MediaStore(view).view().itertuples(index=False)]
    spec = EncoderSpec("hf-audio", {"model_path": path})
    bare_forward(path, waves[:args.batch_size], args.batch_size, args.device)   # warm-up: first-call allocations
    full, bare, noop = [], [], []
    for run in range(args.runs):
        store = root / f"feat{run}.zarr"
        bare.append(timed(lambda: bare_forward(path, waves, args.batch_size, args.device)))
        full.append(timed(lambda store=store: encode_run(spec, view, store, args.batch_size, args.items_per_part, args.device)))
        noop.append(timed(lambda store=store: encode_run(spec, view, store, args.batch_size, args.items_per_part, args.device)))
    assert encode_run(spec, view, store, args.batch_size, args.items_per_part, args.device)["encoded"] == 0
    med = {k: statistics.median(v) for k, v in {"full": full, "bare": bare, "noop": noop}.items()}
    return {
        "encode_seconds": round(med["full"], 3), "bare_forward_seconds": round(med["bare"], 3),
        "ratio_encode_to_bare": round(med["full"] / med["bare"], 3),
        "noop_seconds": round(med["noop"], 3), "ratio_noop_to_full": round(med["noop"] / med["full"], 4),
        "encode_runs_seconds": [round(x, 3) for x in full], "bare_runs_seconds": [round(x, 3) for x in bare],
        "noop_runs_seconds": [round(x, 3) for x in noop],
        "items": args.items, "audio_seconds_total": round(sum(len(w) for w in waves) / SR, 1),
        "batch_size": args.batch_size, "items_per_part": args.items_per_part,
        "model": "wav2vec2 " + ", ".join(f"{k}={v}" for k, v in MODEL.items()),
    }


def bench_load(root: Path, n: int, dim: int, runs: int) -> dict:
    ident = Identity("bench", "1", "audio", {}, {})
    store = FeatureStore(root / "load.zarr").create(ident, dim)
    content = pd.Series([f"c{i}" for i in range(n)])
    keys = list(ident.cache_keys(content))
    rng = np.random.default_rng(0)
    write = timed(lambda: [store.write(keys[s:s + 256], list(rng.normal(size=(len(keys[s:s + 256]), dim))
                                                             .astype(np.float32)), [""] * len(keys[s:s + 256]), dim)
                           for s in range(0, n, 256)])
    view = pd.DataFrame({"audio_key": content})
    times = []
    for _ in range(runs):
        fresh = FeatureStore(root / "load.zarr")
        times.append(timed(lambda fresh=fresh: fresh.load(view)))
    X, present = FeatureStore(root / "load.zarr").load(view)
    assert present.all() and X.shape == (n, dim)
    return {"load_seconds": round(statistics.median(times), 3), "load_runs_seconds": [round(t, 3) for t in times],
            "store_items": n, "dim": dim, "store_parts": -(-n // 256), "store_write_seconds": round(write, 1),
            "store_megabytes": round(sum(p.stat().st_size for p in (root / "load.zarr").rglob("*") if p.is_file()) / 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--items-per-part", type=int, default=8, help="parts per run = items / this")
    parser.add_argument("--store-items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--device", default="cpu", help="cpu | cuda: where the encoder and the bare forward run")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the result files")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        encode = bench_encode(Path(tmp), args)
        load = bench_load(Path(tmp), args.store_items, args.dim, args.runs)
    machine = {"device": args.device, "runs": args.runs, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "cpu": cpu_model(), "torch": torch.__version__,
               "loadavg_before": [round(x, 2) for x in load_before],
               "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    args.out.mkdir(exist_ok=True)
    results = {
        "overhead": {"figure": "encode wall time / bare forward passes, same inputs and batch size "
                                      "(target <= 1.25); no-op re-run / full run (target < 0.05)", **encode},
        "feature_load": {"figure": "seconds to load all utterance features of the store for training", **load},
    }
    for name, result in results.items():
        (args.out / f"encode_{name}.json").write_text(json.dumps(result | machine, indent=2) + "\n")
        print(json.dumps(result | machine, indent=2))


if __name__ == "__main__":
    main()
