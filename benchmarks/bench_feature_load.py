"""Feature loading: all features of a MER 2023-sized training set read from the feature stores.

Writes three content-addressed feature stores (audio 1024-d, text 1024-d, visual 512-d) of 3,373
items in parts of 256 (as `encode` writes them), then times `FeatureStore.load` of every modality for
a media view of those items: the store reads `load_table` does for `train` (the baseline read one
.npy file per sample and feature, about a minute).

    python benchmarks/bench_feature_load.py [--runs 5] [--items 3373]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import load, write_result

from pipeline.modalities import MODALITIES
from pipeline.store.features import FeatureStore, Identity
from pipeline.store.media import digest
from pipeline.training.runtime import available_cores

DIMS = {"audio": 1024, "text": 1024, "visual": 512}
PART = 256
TARGET_SECONDS = 2.0
OUT = Path(__file__).parent / "results" / "feature_load.json"


def build_stores(root: Path, items: int) -> tuple[dict[str, Path], pd.DataFrame]:
    rng = np.random.default_rng(0)
    view = pd.DataFrame({"sample_id": [f"s{i:05d}" for i in range(items)]})
    stores = {}
    for modality, dim in DIMS.items():
        view[MODALITIES[modality].key] = [digest(modality, str(i)) for i in range(items)]
        ident = Identity(f"bench-{modality}", "1", modality, {}, {})
        store = FeatureStore(root / f"{modality}.zarr").create(ident, dim)
        keys = list(ident.cache_keys(view[MODALITIES[modality].key]))
        for lo in range(0, items, PART):
            chunk = keys[lo:lo + PART]
            vectors = list(rng.normal(size=(len(chunk), dim)).astype(np.float32))
            store.write(chunk, vectors, [""] * len(chunk), dim)
        stores[modality] = store.root
    return stores, view


def load_all(stores: dict[str, Path], view: pd.DataFrame) -> dict[str, np.ndarray]:
    return {m: FeatureStore(path).load(view)[0] for m, path in stores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--items", type=int, default=3373)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        stores, view = build_stores(Path(tmp), args.items)
        X = load_all(stores, view)
        assert all(x.shape == (args.items, DIMS[m]) and np.isfinite(x).all() for m, x in X.items())
        times, cpu = [], []
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            load_all(stores, view)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    result = {
        "figure": "wall seconds to load every feature (audio 1024, text 1024, visual 512) of the training "
                  "items from the Zarr feature stores (FeatureStore.load per modality)",
        "seconds": round(statistics.median(times), 3), "target_seconds": TARGET_SECONDS,
        "cpu_seconds": round(statistics.median(cpu), 3), "runs_seconds": [round(t, 3) for t in times],
        "items": args.items, "dims": DIMS, "items_per_part": PART,
        "runs": args.runs, "cores": available_cores(),
        "loadavg_before": load_before, "loadavg_after": load(),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
