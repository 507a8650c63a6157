"""The emotion-wheel metric (pipeline.emotion_wheel) on the organisers' public example lists, beside the
organisers' own figures for the same files.

The example lists are MERTools `MER2024/ov_store/check-openset.csv` (truth) and `predict-openset.csv` (a
prediction), 332 clips each. Each `--wheel` folder is scored; `--organisers` (one per `--wheel`, in order)
is a JSON of the organisers' scorer's output on the same lists and folder ({level: {f, p, r, per_wheel_pr:
{wheel: [p, r]}}}), written beside ours with the largest absolute difference over every figure. Time: median
of `--repeats` runs of reading the folder and scoring.

    python benchmarks/wheel_check.py --truth check-openset.csv --pred predict-openset.csv \
        --wheel WHEEL_DIR [--organisers THEIRS.json] [--wheel ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from pipeline.emotion_wheel import LEVELS, EmotionWheel

OUT = Path(__file__).parent / "results" / "emotion_wheel.json"


def lists(path: str) -> dict[str, str]:
    frame = pd.read_csv(path)
    return dict(zip(frame["name"], frame["openset"]))


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
            and p.suffix in (".xlsx", ".csv")}


def check(folder: Path, truth: dict, pred: dict, organisers: Path | None, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scores = EmotionWheel.read(folder).score(truth, pred)
        times.append(time.perf_counter() - t0)
    run = {"wheel_folder": str(folder), "files_sha1": digest(folder), "seconds_median": statistics.median(times),
           "ours": scores}
    if organisers is not None:
        theirs = json.loads(organisers.read_text())
        run["organisers"] = {level: {k: theirs[level][k] for k in "fpr"} for level in LEVELS}
        diffs = [abs(scores[level][k] - theirs[level][k]) for level in LEVELS for k in "fpr"]
        diffs += [abs(scores[level]["wheels"][wheel][k] - pr[i]) for level in LEVELS  # per wheel, when given
                  for wheel, pr in theirs[level].get("per_wheel_pr", {}).items() for i, k in enumerate("pr")]
        run["organisers_per_wheel_pr"] = {level: theirs[level].get("per_wheel_pr") for level in LEVELS}
        run["max_abs_diff"] = max(diffs)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--truth", required=True)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--wheel", action="append", required=True, type=Path)
    ap.add_argument("--organisers", action="append", default=[], type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="", help="how the organisers' figures were made")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    truth, pred = lists(args.truth), lists(args.pred)
    theirs = args.organisers + [None] * (len(args.wheel) - len(args.organisers))
    result = {
        "figure": "emotion-wheel F, P, R at levels 1 and 2 (means over the wheels) on the organisers' example lists",
        "command": shlex.join(["python", *sys.argv]), "truth": args.truth, "pred": args.pred,
        "clips": len(truth), "note": args.note, "load_average": os.getloadavg(), "cores": os.cpu_count(),
        "runs": [check(w, truth, pred, o, args.repeats) for w, o in zip(args.wheel, theirs)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for run in result["runs"]:
        print(run["wheel_folder"], {lv: round(run["ours"][lv]["f"], 6) for lv in LEVELS},
              "max |ours - organisers|:", run.get("max_abs_diff"))


if __name__ == "__main__":
    main()
