"""The whole MER 2025 release at the feature level: train, two pseudo-labelling rounds and evaluate, each
run as the `mer` stage command in its own process, on feature stores of the release's shape.

The release (132,171 clips) as today's splits see it: 7,369 labelled training clips (`train`), and
124,802 others in `test3`, the MER-SEMI split: the 20,000 candidates labelled (as with the published
test labels), the rest the unlabelled pool the rounds pseudo-label from. Features are imported stores
keyed by sample id (what `mer import-features` writes), class-conditional Gaussian vectors drawn per
clip from a seeded generator, so every run builds the same bytes without decoding or encoding a clip.

Shapes: `default` is the default features' dims (eGeMAPS 88, e5-multilingual 384, FER 7), `community`
the community encoders' (chinese-hubert-large 1024, CLIP ViT-L/14 768, chinese-roberta-large 1024).
Per stage: wall seconds and the process's peak RSS (wait4's ru_maxrss), with the load average around
it, and the pool's feature matrix size beside them. params.yaml's train and pseudolabel sections are
the repository's own (7 subsets, 5 folds, 100 epochs), so the figures are the defaults'.

  python benchmarks/bench_release.py [--shape default community] [--scale 1.0] [--epochs N] [--runs 1]
      [--add-to benchmarks/results/release_scale.json]

--scale shrinks every split (a quick check of the harness); --epochs overrides train.fusion.epochs (figures
taken with an override say so in the JSON). Each invocation records the revision of the code it ran (the last
commit that changed the pipeline, its stages, params or packaging: environment.code_revision); --add-to
refuses a result of another revision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _measure import cpu_model  # noqa: E402

from pipeline.environment import code_revision  # noqa: E402
from pipeline.labels import MER_LABELS  # noqa: E402
from pipeline.store.exchange import IMPORTED  # noqa: E402
from pipeline.store.features import FeatureStore, Identity  # noqa: E402
from pipeline.store.media import MediaStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RELEASE = {"train": 7_369, "candidates": 20_000, "pool": 104_802}   # 7,369 + 124,802 = 132,171 clips
SHAPES = {"default": {"audio": 88, "text": 384, "visual": 7}, "community": {"audio": 1024, "visual": 768, "text": 1024}}
STRENGTH = {"audio": 0.5, "visual": 0.4, "text": 0.3}   # class evidence per modality, in noise units
ITEMS_PER_PART = 8192
KEYS = {"audio": "audio_key", "visual": "faces_key", "text": "text_key"}


def manifest(scale: float, seed: int = 0) -> pd.DataFrame:
    n = {k: max(12, round(v * scale)) for k, v in RELEASE.items()}
    rng = np.random.default_rng(seed)
    total = sum(n.values())
    label = np.array(MER_LABELS)[rng.integers(len(MER_LABELS), size=total)]
    split = np.repeat(["train", "test3", "test3"], [n["train"], n["candidates"], n["pool"]])
    labelled = np.arange(total) < n["train"] + n["candidates"]
    return pd.DataFrame({
        "sample_id": [f"sample_{i:08d}" for i in range(total)], "split": split,
        "path": [f"video/sample_{i:08d}.mp4" for i in range(total)],
        "label": np.where(labelled, label, None), "valence": np.nan, "transcript": None,
        "speaker": [f"spk{i % 400:03d}" for i in range(total)], "has_video": True, "has_audio": True,
        "media_hash": "", "true_label": label, "true_valence": np.nan, "meta": "{}"})


def write_media_view(rows: pd.DataFrame, path: Path) -> None:
    """The clean view downstream stages join on: every clip with input for every modality."""
    view = rows[["sample_id"]].assign(**{key: rows["sample_id"] for key in KEYS.values()})
    MediaStore(path).create().write_view(view)


def write_features(rows: pd.DataFrame, modality: str, dim: int, path: Path, seed: int = 0) -> None:
    """An imported store of class-conditional vectors, written part by part (bounded memory)."""
    ident = Identity(IMPORTED, "1", modality, {"source": f"release-{modality}-{dim}"}, {}, keyed_by="sample_id")
    store = FeatureStore(path).create(ident, dim)
    prototypes = np.random.default_rng([seed, dim]).normal(size=(len(MER_LABELS), dim)).astype(np.float32)
    classes = pd.Categorical(rows["true_label"], categories=MER_LABELS).codes
    for start in range(0, len(rows), ITEMS_PER_PART):
        names = rows["sample_id"].iloc[start:start + ITEMS_PER_PART].tolist()
        rng = np.random.default_rng([seed, dim, start])
        x = STRENGTH[modality] * prototypes[classes[start:start + len(names)]] \
            + rng.normal(size=(len(names), dim)).astype(np.float32)
        store.write(list(ident.cache_keys(pd.Series(names))), list(x), [""] * len(names), dim, names=names)


def project(work: Path, rows: pd.DataFrame, dims: dict[str, int], epochs: int | None) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["features"] = {m: f"release_{m}" for m in dims}
    if epochs:
        params["train"]["fusion"]["epochs"] = epochs
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "data").mkdir(parents=True)
    rows.to_parquet(work / "data" / "manifest.parquet", index=False)
    write_media_view(rows, work / "featurestore" / "media.zarr")
    for m, dim in dims.items():
        write_features(rows, m, dim, work / "featurestore" / "features" / f"release_{m}.zarr")
    return work


def stage_commands(rounds: dict[str, str]) -> list[tuple[str, list[str]]]:
    """train, one pseudolabel stage per round and evaluate, as dvc.yaml runs them (its own commands)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    words = lambda cmd: shlex.split(cmd)[1:]  # noqa: E731  (drop the leading `mer`)
    commands = [("train", words(stages["train"]["cmd"]))]
    for name in rounds:
        commands.append((f"pseudolabel@{name}", words(stages["pseudolabel"]["do"]["cmd"].replace("${key}", name))))
    commands.append(("evaluate", words(stages["evaluate"]["cmd"])))
    return commands


def run_stage(args: list[str], cwd: Path) -> dict:
    """One `mer` command in its own process: wall seconds and its peak resident set."""
    load = os.getloadavg()
    start = time.perf_counter()
    log = (cwd / "stage.log").open("a")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mer")), *args], cwd=cwd, stdout=log, stderr=log)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mer {args[0]} failed; its log: {cwd / 'stage.log'}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "load_before": [round(x, 2) for x in load]}


def one_shape(shape: str, scale: float, epochs: int | None, runs: int, earlier: dict | None = None) -> dict:
    """`runs` runs of every stage on this shape, added to an earlier result's runs of the same shape."""
    dims = SHAPES[shape]
    rows = manifest(scale)
    pool = rows["split"].eq("test3") & rows["label"].isna()
    result = {"dims": dims, "items": {"train": int(rows["split"].eq("train").sum()), "pool": int(pool.sum()),
                                      "candidates": int((rows["split"].eq("test3") & ~pool).sum())},
              "pool_feature_mb": round(int(pool.sum()) * sum(dims.values()) * 4 / 2**20, 1), "stages": {}}
    rounds = yaml.safe_load((REPO / "params.yaml").read_text())["pseudolabel"]["rounds"]
    timings = {name: list(stage["runs"]) for name, stage in (earlier or {}).get("stages", {}).items()}
    for _ in range(runs):
        work = Path(tempfile.mkdtemp(prefix=f"bench_release_{shape}_"))
        start = time.perf_counter()
        project(work, rows, dims, epochs)
        result["build_stores_s"] = round(time.perf_counter() - start, 2)
        for name, args in stage_commands(rounds):
            timings.setdefault(name, []).append(run_stage(args, work))
        result["headline"] = json.loads((work / "metrics" / "headline.json").read_text())
        shutil.rmtree(work)
    return result | summary(timings)


def summary(timings: dict[str, list[dict]]) -> dict:
    """Per stage the median seconds, the highest peak RSS and the spread of its runs ((slowest - fastest) /
    fastest); the stages' total, and the spread of the runs' totals."""
    stages = {name: {"seconds": round(statistics.median(r["seconds"] for r in runs), 2),
                     "spread": _spread([r["seconds"] for r in runs]),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": runs} for name, runs in timings.items()}
    totals = [sum(runs[i]["seconds"] for runs in timings.values()) for i in range(min(map(len, timings.values())))]
    return {"stages": stages, "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
            "total_spread": _spread(totals), "runs": len(totals),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values())}


def _spread(values: list[float]) -> float:
    return round((max(values) - min(values)) / min(values), 3)


def code_changes(earlier: str | None) -> str:
    """"" when the stage commands' code is that of the `earlier` run (the last commit that changed it, as
    environment.code_revision names it, and nothing uncommitted), else how the two differ."""
    now = str(code_revision(REPO))
    if not earlier:
        return "no revision recorded"
    return "" if now == earlier and not now.endswith("+dirty") else f"recorded {earlier}, now {now}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs="+", choices=sorted(SHAPES), default=["default", "community"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=None, help="override train.fusion.epochs (default: params.yaml's)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "release_scale.json")
    parser.add_argument("--add-to", type=Path, help="a result of the same settings whose runs these join "
                        "(a second run, later, to see the first reproduce)")
    args = parser.parse_args()
    earlier = json.loads(args.add_to.read_text()) if args.add_to else {"shapes": {}}
    if args.add_to and (earlier["scale"], earlier["epochs_override"]) != (args.scale, args.epochs):
        raise SystemExit(f"{args.add_to} was taken at scale {earlier['scale']}, epochs {earlier['epochs_override']}; "
                         "add runs of the same settings only")
    if args.add_to and (changed := code_changes(earlier["invocations"][-1].get("revision"))):
        raise SystemExit(f"{args.add_to} was taken with other code ({changed}): its runs and these would not be "
                         f"runs of one thing; write a new result instead")
    invocation = {"command": " ".join(["python", *sys.argv]), "revision": str(code_revision(REPO)), "cpu": cpu_model(),
                  "load_before": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = {"scale": args.scale, "epochs_override": args.epochs, "cpus": os.cpu_count(),
           "machine": platform.processor() or platform.machine(),
           "invocations": earlier.get("invocations", []) + [invocation],
           "shapes": dict(earlier["shapes"])}  # shapes this invocation does not rerun stay as they were
    for shape in args.shape:
        out["shapes"][shape] = one_shape(shape, args.scale, args.epochs, args.runs, earlier["shapes"].get(shape))
        print(json.dumps({shape: out["shapes"][shape]["stages"]}, indent=1), flush=True)
    invocation["load_after"] = os.getloadavg()
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
