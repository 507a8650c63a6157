"""Benchmarks on real recordings (../shared/data by default): one section per module in benchmarks/real/.

Each section module exposes `run(data_dir: Path) -> dict` and `markdown(result: dict) -> str`, and skips
(returning {"skipped": reason}) the corpora that are absent. Sections run here: faces (face-found rate
per corpus and detector, visual-only accuracy on FER-2013), text (text-only weighted F1 on the MER 2023
train transcripts per text encoder), and any other module in benchmarks/real/.

    python benchmarks/bench_real.py [--data ../shared/data] [--sections faces text]

Writes benchmarks/results/real_data.json (sections run now replace their earlier results; the others are
kept, each with the load average and time it was measured at) and benchmarks/results/real_data.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

RESULTS = REPO / "benchmarks" / "results"
SECTIONS_DIR = REPO / "benchmarks" / "real"


def available_sections() -> list[str]:
    return sorted(p.stem for p in SECTIONS_DIR.glob("*.py") if not p.stem.startswith("_"))


def run_section(name: str, data: Path) -> dict:
    module = importlib.import_module(f"real.{name}")
    started, load = time.time(), os.getloadavg()
    result = module.run(data)
    return {"result": result, "seconds": round(time.time() - started, 1), "load_average_before": load,
            "load_average_after": os.getloadavg(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_markdown(results: dict, path: Path) -> None:
    parts = ["# Results on real data\n", f"Made by `python benchmarks/bench_real.py` on {results['machine']}; "
             "the load average (1, 5, 15 min) before each section says how busy the machine was.\n"]
    for name, entry in results["sections"].items():
        module = importlib.import_module(f"real.{name}")
        load = ", ".join(f"{v:.1f}" for v in entry["load_average_before"])
        parts.append(f"## {name}\n\n{module.markdown(entry['result'])}\n_{entry['seconds']} s, load average {load}, "
                     f"{entry['measured_at']}_\n")
    path.write_text("\n".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data", help="folder of the real corpora")
    parser.add_argument("--sections", nargs="+", choices=available_sections(), default=available_sections())
    parser.add_argument("--out", type=Path, default=RESULTS / "real_data.json")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder; pass --data DIR (the folder holding fer2013-dev/, ...)")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"sections": {}}
    results["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    for name in args.sections:
        print(f"section {name} ...", flush=True)
        results["sections"][name] = run_section(name, args.data.resolve())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")  # kept if a later section fails
    results["sections"] = dict(sorted(results["sections"].items()))
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    write_markdown(results, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
