"""MER-SEMI at scale: memory and time of one pseudo-labelling round as the unlabelled pool grows.

Feature-level demo corpus (pipeline.demo.features; 36 labelled training clips, `--dim` features per
modality), a labelled-only model, then one round (select at most MAX_PER_CLASS per class, retrain,
predict every split, the pool included). Each pool
size runs in its own process; a sampler thread reads the resident set every 5 ms, and the JSON gives the
peak growth over the labelled-only training plus the round, above the RSS it started with (features
already loaded), next to the pool's feature matrix size. Prediction is batched (cv.PREDICT_CHUNK rows at a
time), so growth is a few copies of the pool's features and no more: the ratio falls towards a constant.

    python benchmarks/bench_semi_scale.py [--pools 10000 100000] [--dim 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "semi_scale.json"
MAX_PER_CLASS = 100  # keeps the retraining cost fixed, so the figures isolate the pool's size


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one_pool(n_pool: int, dim: int) -> dict:
    from pipeline.config import DemoConfig, FusionParams, PseudolabelConfig, TrainConfig
    from pipeline.demo.features import feature_corpus
    from pipeline.training.run import predictions_frame, run_subset
    from pipeline.training.semi import model_predictions, run_round

    cfg = TrainConfig(features={"audio": "a", "visual": "v", "text": "t"},
                      fusion=FusionParams(epochs=20, batch_size=32, lr=0.003, hidden=(64, 32)), feature_norm="standard")
    t0 = time.perf_counter()
    rows, tables = feature_corpus(DemoConfig(seed=1, n_train=36, n_test1=300, n_test2=0, n_test3_labelled=120,
                                             n_unlabelled=n_pool), dim=dim, noise=0.45)
    made = time.perf_counter() - t0
    pool_bytes = sum(x.nbytes for x in tables["test3"].X.values())
    start_rss, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t1 = time.perf_counter()
    result, ids = run_subset(tables, "AVT", cfg, 0)
    start = model_predictions(predictions_frame(result, ids, tables, "AVT", 0), "AVT", 0)
    t2 = time.perf_counter()
    selection = PseudolabelConfig(eta=0.5, max_per_class=MAX_PER_CLASS, max_per_labelled=0)
    _, picked, _ = run_round(tables, rows, start, selection, cfg)
    t3 = time.perf_counter()
    done.set()
    sampler.join()
    return {"unlabelled": n_pool, "features_per_item": 3 * dim, "pool_feature_mb": round(pool_bytes / 2**20, 1),
            "rss_at_start_mb": round(start_rss / 2**20, 1), "peak_growth_mb": round((peak[0] - start_rss) / 2**20, 1),
            "growth_over_pool_features": round((peak[0] - start_rss) / pool_bytes, 2), "selected": len(picked),
            "seconds_corpus": round(made, 1), "seconds_labelled_only": round(t2 - t1, 1),
            "seconds_round": round(t3 - t2, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_pool(args.child, args.dim)))
        return
    runs = []
    for n in args.pools:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--dim", str(args.dim)],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"figure": "peak RSS growth over the labelled-only training plus one round, "
                                         "vs the unlabelled pool's feature matrix",
                               "runs_per_size": 1, "cores": os.cpu_count(), "load_average": os.getloadavg(),
                               "sizes": runs}, indent=2))


if __name__ == "__main__":
    main()
