"""train: cross-validated attention fusion for every modality subset (params: train.*).

Writes the fold ensembles' predictions on every test view (models/predictions.parquet), the
cross-validation figures (metrics/cv.json) and the main model's training curves.
"""

import json
from pathlib import Path

import pandas as pd

from pipeline.config import load_section
from pipeline.labels import manifest_labels
from pipeline.training.run import (Views, curves_frame, cv_summary, load_tables, predictions_frame, run_subset,
                                   usable_subsets)


def corrupted_views(path: Path | None) -> dict[str, Path]:
    if path is None or not path.is_dir():
        return {}
    return {p.name: p for p in sorted(path.iterdir()) if (p / "view.parquet").is_file()}


def run(params: Path, manifest: Path, clean: Path, corrupted: Path | None, features_dir: Path,
        predictions: Path, metrics: Path, curves: Path) -> dict:
    cfg = load_section("train", params)
    features = {modality: features_dir / f"{name}.zarr" for modality, name in cfg.features.items()}
    rows = pd.read_parquet(manifest)
    labels = manifest_labels(rows)
    tables = load_tables(rows, Views(clean, corrupted_views(corrupted)), features, cfg.feature_norm, labels)
    for out in (predictions, metrics, curves):
        out.parent.mkdir(parents=True, exist_ok=True)
    frames, summaries = [], []
    labelled = tables["train"].y >= 0
    coverage = {m: int(p[labelled].sum()) for m, p in tables["train"].present.items()}
    subsets = usable_subsets(cfg, tuple(m for m, n in coverage.items() if n))
    for seed in cfg.seeds:
        for subset in subsets:
            result, train_ids = run_subset(tables, subset, cfg, seed)
            frames.append(predictions_frame(result, train_ids, tables, subset, seed))
            summaries.append(cv_summary(result, subset, seed, len(train_ids)))
            if subset == subsets[-1] and seed == cfg.seeds[0]:
                curves_frame(result).to_csv(curves, index=False)
    pd.concat(frames, ignore_index=True).to_parquet(predictions, index=False)
    report = {"main_subset": subsets[-1], "model": cfg.model, "labels": list(labels),
              "train_items_with": coverage, "runs": summaries}
    metrics.write_text(json.dumps(report, indent=2))
    return report
