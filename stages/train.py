"""train: cross-validated fold ensembles (train.model: fusion | lightgbm) for every modality subset (params: train.*).

Writes the fold ensembles' predictions on every test view (models/predictions.parquet), the
cross-validation figures per run and their mean and std over train.seeds (metrics/cv.json), the main
model's training curves, one file per fold (metrics/train_curves/), and the main model's checkpoint
(first seed) for `mer predict` (models/checkpoint/). A corpus with label lists (the manifest's
`label_list`) also trains the label-list model (MER-FG) on the main subset, first seed, and writes the
candidates' lists (models/label_lists.parquet; without label lists an empty table).
"""

import json
from pathlib import Path

import pandas as pd

from pipeline import interrupts
from pipeline.config import load_section
from pipeline.fingerprint import file_sha256
from pipeline.inputs import read_manifest
from pipeline.labels import manifest_labels
from pipeline.store.media import corrupted_views
from pipeline.training import checkpoint as ckpt
from pipeline.training import label_lists as fg
from pipeline.training.metrics import over_seeds_by_subset
from pipeline.training.run import (
    Views,
    cv_summary,
    load_tables,
    predictions_frame,
    run_subsets,
    usable_subsets,
    write_curves,
)


def run(params: Path, *, manifest: Path, clean: Path, corrupted: Path | None, features: Path, predictions: Path,
        metrics: Path, curves: Path, checkpoint: Path, label_lists: Path | None = None) -> dict:
    cfg = load_section("train", params)
    stores = {modality: features / f"{name}.zarr" for modality, name in cfg.features.items()}
    rows = read_manifest(manifest)
    labels = manifest_labels(rows)
    tables = load_tables(rows, Views(clean, corrupted_views(corrupted)), stores, cfg.feature_norm, labels)
    labelled = tables["train"].y >= 0
    coverage = {m: int(p[labelled].sum()) for m, p in tables["train"].present.items()}
    subsets = usable_subsets(cfg, tuple(m for m, n in coverage.items() if n))
    runs = [(subset, seed) for seed in cfg.seeds for subset in subsets]
    results = run_subsets(tables, runs, cfg)
    model = (fg.fit(tables, subsets[-1], cfg.fusion, cfg.fine_grained, cfg.folds, cfg.seeds[0])
             if fg.has_label_lists(rows) else None)
    with interrupts.deferred():   # a Ctrl-C from here on stops the run once every output is written whole
        for out in (predictions, metrics):
            out.parent.mkdir(parents=True, exist_ok=True)
        frames, summaries = [], []
        for (subset, seed), (result, train_ids) in zip(runs, results):
            frames.append(predictions_frame(result, train_ids, tables, subset, seed))
            summaries.append(cv_summary(result, subset, seed, len(train_ids)))
            if subset == subsets[-1] and seed == cfg.seeds[0]:
                write_curves(result, curves)
                records = {m: ckpt.feature_record(cfg.features[m], stores[m]) for m in result.modalities}
                manifest_sha256 = file_sha256(manifest)
                card = ckpt.model_card(load_section("extract", params), rows, coverage, summaries[-1], manifest_sha256)
                ckpt.save(checkpoint, result, records, tables["train"].norm, labels,
                          {"subset": subset, "seed": seed, "feature_norm_kind": cfg.feature_norm, **card,
                           "fingerprint": ckpt.checkpoint_fingerprint(cfg, subset, seed, records, labels,
                                                                      manifest_sha256)})
        pd.concat(frames, ignore_index=True).to_parquet(predictions, index=False)
        report = {"main_subset": subsets[-1], "model": cfg.model, "labels": list(labels), "seeds": list(cfg.seeds),
                  "train_items_with": coverage, "over_seeds": over_seeds_by_subset(summaries), "runs": summaries}
        lists = fg.empty()
        if model is not None:
            lists, report["label_lists"] = fg.predictions(model, tables), model.summary
        if label_lists is not None:
            label_lists.parent.mkdir(parents=True, exist_ok=True)
            lists.to_parquet(label_lists, index=False)
        metrics.write_text(json.dumps(report, indent=2))
    return report
