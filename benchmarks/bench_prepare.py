"""prepare on a release-sized corpus: --rows small audio files (MER 2025 ships 132,171 clips) listed in a
CSV manifest, read by the `csv` adapter; writes benchmarks/results/prepare_scale.json.

Every row costs what prepare does per item on a real release: the path resolved inside the data root,
the container opened to see its streams, and the file hashed. The files are copies of one 0.1 s wav
(3 KB), so the figure is prepare's per-item overhead, not the disk's read rate. Each run is a fresh
`mer prepare` process; the median of --runs, with the load average before each.

  python benchmarks/bench_prepare.py --rows 132171 --runs 3 [--work /tmp/bench_prepare]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LABELS = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
TRAIN = 7_369


def corpus(root: Path, rows: int) -> Path:
    """root/audio/<name>.wav for every row and root/manifest.csv listing them (kept between runs)."""
    manifest = root / "manifest.csv"
    if manifest.is_file() and sum(1 for _ in manifest.open()) == rows + 1:
        return manifest
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.random.default_rng(0).normal(size=1600)).astype(np.float32), 16000,
             format="WAV", subtype="PCM_16")
    (root / "audio").mkdir(parents=True, exist_ok=True)
    lines = ["path,split,label"]
    for i in range(rows):
        name = f"sample_{i:08d}"
        (root / "audio" / f"{name}.wav").write_bytes(buf.getvalue())
        lines.append(f"audio/{name}.wav,{'train' if i < TRAIN else 'test3'},{LABELS[i % 6] if i < TRAIN else ''}")
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_prepare(work: Path, root: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"] |= {"adapter": "csv", "root": str(root), "options": {"manifest": "manifest.csv"}}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    load = os.getloadavg()
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("mer")), "prepare", "--manifest", "manifest.parquet",
                    "--rejects", "rejects.csv"], cwd=work, check=True, capture_output=True)
    return {"seconds": round(time.perf_counter() - start, 2), "load_before": [round(x, 2) for x in load]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=132_171)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_prepare"))
    args = parser.parse_args()
    root = args.work / f"release{args.rows}"
    start = time.perf_counter()
    corpus(root, args.rows)
    made = time.perf_counter() - start
    runs = [run_prepare(args.work, root) for _ in range(args.runs)]
    median = statistics.median(r["seconds"] for r in runs)
    result = {"command": " ".join(["python", *sys.argv]), "rows": args.rows, "runs": runs, "median_s": median,
              "ms_per_row": round(1000 * median / args.rows, 3), "corpus_build_s": round(made, 1),
              "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prepare_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
