"""`mer predict --segments vad` on long recordings: speed as a multiple of real time and peak memory as
the recording grows (2, 20, 60 minutes by default); writes benchmarks/results/timeline.json.

The recordings are generated talking-face clips (the demo corpus's held-out split) joined end to end
with seeded pauses of 0.3-1.5 s, written as they are read. The checkpoint is trained here on the demo
corpus with the default encoders (eGeMAPS, e5-multilingual, FER), as `dvc repro` trains it. Each
prediction runs as the `mer predict` command in a fresh process, so its peak RSS (wait4) is the
command's own; with `--asr` each recording runs again with faster-whisper transcribing every segment.

  python benchmarks/bench_timeline.py [--minutes 2 20 60] [--asr] [--work /tmp/bench_timeline]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from checkpoint_fixtures import train_checkpoint  # noqa: E402
from recording_fixtures import join_clips  # noqa: E402

from pipeline.config import DemoConfig, PrepareConfig  # noqa: E402
from pipeline.datasets.prepare import prepare  # noqa: E402
from pipeline.demo import generate_corpus  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def checkpoint(work: Path) -> tuple[Path, list[Path]]:
    """A checkpoint of the default features trained on the demo corpus, and its held-out clips."""
    ckpt = work / "checkpoint"
    corpus = work / "demo"
    if not corpus.exists():
        generate_corpus(corpus, DemoConfig(n_train=120, n_test1=40, n_test2=0, n_test3_labelled=0, n_unlabelled=0),
                        progress=False, workers=os.cpu_count() or 1)
    manifest = prepare(PrepareConfig(root=str(corpus)), work / "manifest.parquet", work / "rejects.csv").manifest
    clips = [corpus / p for p in manifest.loc[manifest["split"] == "test1", "path"]]
    if ckpt.exists():
        return ckpt, clips
    repo = yaml.safe_load((REPO / "params.yaml").read_text())
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump({"extract": repo["extract"], "encode": repo["encode"],
                                      "train": repo["train"] | {"ablation": [], "seeds": [0]}}))
    train_checkpoint(work, corpus, params)
    return ckpt, clips


def recording(work: Path, clips: list[Path], minutes: float) -> Path:
    """Clips cycled with seeded pauses until the recording lasts `minutes`."""
    out = work / f"recording_{minutes:g}min.mp4"
    if not out.exists():
        rng = np.random.default_rng(0)
        per_clip = 2.0 + 0.9   # the demo's 2 s clips and the mean pause
        count = int(minutes * 60 / per_clip)
        join_clips(itertools.islice(itertools.cycle(clips), count), out, gap=float(rng.uniform(0.3, 1.5)))
    return out


def predict(rec: Path, ckpt: Path, work: Path, asr: bool) -> dict:
    out = work / f"{rec.stem}{'_asr' if asr else ''}.csv"
    args = [str(Path(sys.executable).with_name("mer")), "predict", str(rec), "--checkpoint", str(ckpt),
            "--segments", "vad", "--timeline", str(out)] + (["--asr", "faster-whisper"] if asr else [])
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(work / "predict.log").open("a"))
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mer predict failed on {rec}; see {work / 'predict.log'}")
    with __import__("av").open(str(rec)) as container:
        length = float(container.duration / 1_000_000)
    segments = sum(1 for _ in out.open()) - 1
    return {"recording_s": round(length, 1), "seconds": round(seconds, 1), "x_real_time": round(length / seconds, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "segments": segments,
            "load_before": [round(x, 2) for x in load]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 20, 60])
    parser.add_argument("--asr", action="store_true", help="also run each recording with faster-whisper ASR")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_timeline"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt, clips = checkpoint(args.work)
    runs = {}
    for minutes in args.minutes:
        rec = recording(args.work, clips, minutes)
        runs[f"{minutes:g}min"] = predict(rec, ckpt, args.work, asr=False)
        if args.asr:
            runs[f"{minutes:g}min_asr"] = predict(rec, ckpt, args.work, asr=True)
        print(json.dumps({k: v for k, v in runs.items() if k.startswith(f"{minutes:g}min")}), flush=True)
    result = {"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "timeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'timeline.json'}")


if __name__ == "__main__":
    main()
