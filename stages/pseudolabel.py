"""pseudolabel: select confident unlabelled test3 items (Algorithm 1) and retrain with them (params: pseudolabel.*).

Thresholds come from the main model's out-of-fold predictions, so they are not biased by training fit.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import load_section
from pipeline.labels import logit_columns, manifest_labels
from pipeline.training.data import label_index
from pipeline.training.run import Views, load_tables, predictions_frame, run_subset
from pipeline.training.semi import class_thresholds, select
from stages.train import corrupted_views


def run(params: Path, manifest: Path, clean: Path, corrupted: Path | None, features_dir: Path,
        predictions: Path, cv_metrics: Path, out: Path, metrics: Path, selected_out: Path) -> dict:
    cfg, train_cfg = load_section("pseudolabel", params), load_section("train", params)
    rows = pd.read_parquet(manifest)
    labels = manifest_labels(rows)
    columns = logit_columns(labels)
    main = json.loads(cv_metrics.read_text())["main_subset"]
    seed = train_cfg.seeds[0]
    preds = pd.read_parquet(predictions)
    preds = preds[(preds["subset"] == main) & (preds["seed"] == seed)]
    oof = preds[preds["test"] == "train-oof"].merge(rows[["sample_id", "label"]], on="sample_id")
    thresholds = class_thresholds(oof[columns].to_numpy(), label_index(oof["label"], labels), cfg.eta, len(labels))
    unlabelled = preds[(preds["test"] == "test3") & preds["sample_id"].isin(rows.loc[rows["label"].isna(), "sample_id"])]
    chosen, pred, conf = select(unlabelled[columns].to_numpy(), thresholds, cfg.max_per_class)
    picked = pd.DataFrame({"sample_id": unlabelled["sample_id"].to_numpy()[chosen],
                           "label": np.array(labels)[pred[chosen]], "confidence": conf[chosen],
                           "valence": unlabelled["valence"].to_numpy()[chosen]})
    features = {m: features_dir / f"{n}.zarr" for m, n in train_cfg.features.items()}
    tables = load_tables(rows, Views(clean, corrupted_views(corrupted)), features, train_cfg.feature_norm, labels)
    extra = _pseudo_table(tables["test3"], picked) if "test3" in tables else None
    result, train_ids = run_subset(tables, main, train_cfg, seed, extra, cfg.weight)
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions_frame(result, train_ids, tables, main, seed).to_parquet(out, index=False)
    picked.merge(rows[["sample_id", "true_label"]], on="sample_id", how="left").to_csv(selected_out, index=False)
    report = _report(cfg, thresholds, picked, rows, len(unlabelled), labels)
    metrics.write_text(json.dumps(report, indent=2))
    return report


def _pseudo_table(test3, picked: pd.DataFrame):
    """test3's rows for the selected items, with the pseudo-label and predicted valence as targets."""
    table = test3.take(test3.rows["sample_id"].isin(picked["sample_id"]).to_numpy())
    targets = picked.set_index("sample_id").loc[table.rows["sample_id"]]
    table.rows = table.rows.assign(label=targets["label"].to_numpy(), valence=targets["valence"].to_numpy())
    return table


def _report(cfg, thresholds, picked: pd.DataFrame, rows: pd.DataFrame, n_unlabelled: int, labels) -> dict:
    truth = picked.merge(rows[["sample_id", "true_label"]], on="sample_id", how="left")
    known = truth["true_label"].notna()
    precision = float((truth.loc[known, "label"] == truth.loc[known, "true_label"]).mean()) if known.any() else None
    return {
        "eta": cfg.eta, "unlabelled": n_unlabelled, "selected": len(picked),
        "note": "empty selection: no unlabelled item passed its class threshold" if picked.empty else "",
        "thresholds": {c: (None if np.isinf(t) else round(float(t), 4)) for c, t in zip(labels, thresholds)},
        "per_class": {c: int((picked["label"] == c).sum()) for c in labels},
        "precision": precision,
    }
