"""train: cross-validated fold ensembles (train.model: fusion | lightgbm) for every modality subset (params: train.*).

Writes the fold ensembles' predictions on every test view (models/predictions.parquet), the
cross-validation figures per run and their mean and std over train.seeds (metrics/cv.json), the main
model's training curves, one file per fold (metrics/train_curves/), and the main model's checkpoint
(first seed) for `mer predict` (models/checkpoint/).
"""

import json
from pathlib import Path

import pandas as pd

from pipeline.config import load_section
from pipeline.environment import code_revision
from pipeline.errors import require
from pipeline.labels import manifest_labels
from pipeline.store.media import corrupted_views
from pipeline.training import checkpoint as ckpt
from pipeline.training.metrics import CV_FIGURES, over_seeds_by_subset
from pipeline.training.run import (
    Views,
    curves_frame,
    cv_summary,
    load_tables,
    predictions_frame,
    run_subsets,
    usable_subsets,
)


def run(params: Path, *, manifest: Path, clean: Path, corrupted: Path | None, features: Path, predictions: Path,
        metrics: Path, curves: Path, checkpoint: Path) -> dict:
    cfg = load_section("train", params)
    stores = {modality: features / f"{name}.zarr" for modality, name in cfg.features.items()}
    rows = pd.read_parquet(require(manifest, "`mer prepare` (dvc repro prepare)"))
    labels = manifest_labels(rows)
    tables = load_tables(rows, Views(clean, corrupted_views(corrupted)), stores, cfg.feature_norm, labels)
    for out in (predictions, metrics):
        out.parent.mkdir(parents=True, exist_ok=True)
    frames, summaries = [], []
    labelled = tables["train"].y >= 0
    coverage = {m: int(p[labelled].sum()) for m, p in tables["train"].present.items()}
    subsets = usable_subsets(cfg, tuple(m for m, n in coverage.items() if n))
    runs = [(subset, seed) for seed in cfg.seeds for subset in subsets]
    for (subset, seed), (result, train_ids) in zip(runs, run_subsets(tables, runs, cfg)):
        frames.append(predictions_frame(result, train_ids, tables, subset, seed))
        summaries.append(cv_summary(result, subset, seed, len(train_ids)))
        if subset == subsets[-1] and seed == cfg.seeds[0]:
            write_curves(result, curves)
            records = {m: ckpt.feature_record(cfg.features[m], stores[m]) for m in result.modalities}
            card = model_card(params, rows, coverage, summaries[-1])
            ckpt.save(checkpoint, result, records, tables["train"].norm,
                      {"subset": subset, "seed": seed, "feature_norm_kind": cfg.feature_norm, **card}, labels)
    pd.concat(frames, ignore_index=True).to_parquet(predictions, index=False)
    report = {"main_subset": subsets[-1], "model": cfg.model, "labels": list(labels), "seeds": list(cfg.seeds),
              "train_items_with": coverage, "over_seeds": over_seeds_by_subset(summaries), "runs": summaries}
    metrics.write_text(json.dumps(report, indent=2))
    return report


def model_card(params: Path, rows: pd.DataFrame, coverage: dict[str, int], summary: dict) -> dict:
    """What a checkpoint says of its making: the extraction settings `mer predict` repeats, the training
    corpus, the code's git revision and the cross-validation figures."""
    extract_cfg = load_section("extract", params)
    labelled = rows[(rows["split"] == "train") & rows["label"].notna()]
    corpus = {"splits": {str(k): int(v) for k, v in rows["split"].value_counts().sort_index().items()},
              "train_labels": {str(k): int(v) for k, v in labelled["label"].value_counts().sort_index().items()},
              "train_speakers": int(labelled["speaker"].nunique()) if "speaker" in labelled else 0,
              "train_items_with": coverage}
    return {"extract": {k: getattr(extract_cfg, k) for k in extract_cfg.OUTPUT_KEYS}, "corpus": corpus,
            "git_revision": str(code_revision()), "metrics": {k: summary[k] for k in CV_FIGURES if k in summary}}


def write_curves(result, folder: Path) -> None:
    """One CSV per fold (epoch, train_loss, val_*), so `dvc plots` draws a line per fold."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("fold*.csv"):
        old.unlink()
    frame = curves_frame(result)
    for fold, rows in frame.groupby("fold"):
        rows.drop(columns="fold").to_csv(folder / f"fold{fold}.csv", index=False)
