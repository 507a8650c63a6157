"""Peak memory of extract per input resolution: 160 px, 4K and 12000 x 12000 inputs (stills, a folder of
frames, and for 160 px and 4K an H.264 clip), with the pixel caps of pipeline/media/decode.py and without
them (--no-caps in the child: what the same code costs when every image and frame is decoded whole).

Each case runs prepare and extract (1 worker, in-process) in a fresh process and reads its VmHWM, so one
case's peak never carries into another's. Writes benchmarks/results/bad_inputs_memory.json.

  python benchmarks/bench_bad_inputs.py [--work /tmp/bench_bad_inputs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

SIZES = {"160px": (160, 160), "4k": (3840, 2160), "12000px": (12000, 12000)}
ITEMS = 3          # items per corpus
FRAMES = 6         # images in each frame folder


def make_corpus(root: Path, kind: str, size: tuple[int, int]) -> None:
    """ITEMS inputs of one kind and size with a csv manifest. The images are the astronaut's face on a
    plain background, so a 12000 px PNG is a few hundred KB, as a decompression bomb is."""
    import cv2
    import numpy as np
    import pandas as pd
    from media_fixtures import BACKGROUND, astronaut_face, write_clip

    root.mkdir(parents=True, exist_ok=True)
    width, height = size
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    face = astronaut_face()
    scale = min(width, height) / 2 / face.shape[0]
    face = cv2.resize(face, (round(face.shape[1] * scale), round(face.shape[0] * scale)))
    image[:face.shape[0], :face.shape[1]] = face
    rows = []
    for i in range(ITEMS):
        if kind == "image":
            cv2.imwrite(str(root / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            rows.append({"path": f"{i}.png", "split": "train", "label": "happy"})
        elif kind == "frames":
            (root / f"f{i}").mkdir(exist_ok=True)
            for j in range(FRAMES):
                cv2.imwrite(str(root / f"f{i}" / f"frame_{j:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            rows.append({"path": f"f{i}", "split": "train", "label": "happy"})
        else:
            write_clip(root / f"{i}.mp4", seconds=2.0, fps=15, size=size)
            rows.append({"path": f"{i}.mp4", "split": "train", "label": "happy"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


def child(root: Path, caps: bool) -> dict:
    """In this fresh process: prepare + extract the corpus, then this process's peak RSS."""
    if not caps:
        os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(2**40)
    from dataclasses import replace

    from pipeline.config import ExtractConfig, PrepareConfig
    from pipeline.datasets.prepare import prepare
    from pipeline.extract import extract
    from pipeline.media import decode

    if not caps:
        decode.MAX_FRAME_SIDE, decode.MAX_IMAGE_PIXELS = 10**9, 10**12
    cfg = PrepareConfig(adapter="csv", root=str(root), options={"manifest": "manifest.csv"}, max_reject_rate=1.0)
    work = root.parent / f"{root.name}-{'caps' if caps else 'nocaps'}"
    start = time.perf_counter()
    manifest = prepare(cfg, work / "manifest.parquet", work / "rejects.csv").manifest
    summary, failures = extract(manifest, root, work / "media.zarr", replace(ExtractConfig(), workers=1))
    return {"peak_rss_mb": round(peak_rss_mb(), 1), "wall_s": round(time.perf_counter() - start, 2),
            "summary": summary, "failures": sorted({f["message"].split(": ", 2)[-1] for f in failures})}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no /proc/self/status: Linux only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_bad_inputs"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-caps", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, caps=not args.no_caps)))
        return
    cases = {}
    load = [os.getloadavg()]
    for kind in ("image", "frames", "video"):
        for label, size in SIZES.items():
            if kind == "video" and label == "12000px":
                continue   # H.264 stops at 8192 px (level 6.2); a 12000 px clip is not a thing to meet
            root = args.work / f"{kind}-{label}"
            if not (root / "manifest.csv").is_file():
                make_corpus(root, kind, size)
            for caps in (True, False):
                cmd = [sys.executable, __file__, "--child", str(root)] + ([] if caps else ["--no-caps"])
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                result = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else {
                    "error": done.stderr.strip().splitlines()[-1]}
                cases[f"{kind}/{label}/{'caps' if caps else 'no caps'}"] = result
                print(f"{kind:6} {label:8} {'caps' if caps else 'no caps':8}", json.dumps(result), flush=True)
    load.append(os.getloadavg())
    out = REPO / "benchmarks" / "results" / "bad_inputs_memory.json"
    out.write_text(json.dumps({"items_per_case": ITEMS, "frames_per_folder": FRAMES, "cases": cases,
                               "loadavg_before_after": load, "cpu": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
