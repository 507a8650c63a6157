"""pseudolabel@<round>: one round of MER-SEMI pseudo-labelling (Algorithm 1; params: pseudolabel.*).

`pseudolabel.rounds` maps each round's name to the predictions it starts from: train's for the first,
the previous round's for the next, so DVC chains the rounds through their files. A round takes its
class thresholds from the start model's out-of-fold predictions (not biased by training fit), selects
unlabelled test3 items from the start model's predictions of them, retrains the main subset on labelled +
selected items and predicts the same test splits. An empty selection retrains nothing: the round keeps
the start model's predictions and its metrics say so.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import evaluation as ev
from pipeline.config import ConfigError, PseudolabelConfig, TrainConfig, load_section
from pipeline.errors import require
from pipeline.labels import manifest_labels, predicted_labels
from pipeline.training import semi
from pipeline.training.data import Table
from pipeline.training.run import Views, corrupted_views, load_tables, predictions_frame, run_subset

EMPTY_NOTE = "empty selection: no unlabelled item passed its class threshold; the start model's predictions are kept"


STEPS = ("load features", "select and retrain", "write")


def run(params: Path, round_name: str, manifest: Path, clean: Path, corrupted: Path | None, features_dir: Path,
        cv_metrics: Path, out: Path, metrics_dir: Path) -> dict:
    cfg, train_cfg = load_section("pseudolabel", params), load_section("train", params)
    start_path = round_start(cfg, round_name)
    # one bar per round: the retraining step is the long one (folds x epochs of the main subset)
    with tqdm(total=len(STEPS), desc=f"pseudolabel {round_name}", unit="step") as bar:
        bar.set_postfix_str(STEPS[0])
        rows = pd.read_parquet(require(manifest, "`mer prepare` (dvc repro prepare)"))
        labels = manifest_labels(rows)
        main = json.loads(cv_metrics.read_text())["main_subset"]
        start = model_predictions(pd.read_parquet(start_path), main, train_cfg.seeds[0])
        features = {m: features_dir / f"{n}.zarr" for m, n in train_cfg.features.items()}
        tables = load_tables(rows, Views(clean, corrupted_views(corrupted)), features, train_cfg.feature_norm, labels)
        bar.update()
        bar.set_postfix_str(f"{STEPS[1]} ({main}, {train_cfg.folds} folds)")
        predictions, picked, thresholds = semi_round(tables, rows, start, cfg, train_cfg)
        bar.update()
        bar.set_postfix_str(f"{STEPS[2]} ({len(picked)} selected)")
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_parquet(out, index=False)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        picked = semi.with_truth(picked, rows)
        picked.to_csv(metrics_dir / "selected.csv", index=False)
        semi.class_balance(picked, thresholds, labelled_oof(start, rows)).to_csv(metrics_dir / "class_balance.csv", index=False)
        report = round_report(round_name, str(start_path), cfg, thresholds, picked, start, predictions, rows)
        (metrics_dir / "selection.json").write_text(json.dumps(report, indent=2))
        bar.update()
    return report


def round_start(cfg: PseudolabelConfig, round_name: str) -> Path:
    """The predictions `round_name` starts from; a later round must start from the one before it."""
    names = list(cfg.rounds)
    if round_name not in cfg.rounds:
        raise ConfigError(f"pseudolabel.rounds has no round {round_name!r}; rounds: {names}")
    start = Path(cfg.rounds[round_name])
    i = names.index(round_name)
    if i > 0 and start.stem != names[i - 1]:
        raise ConfigError(f"pseudolabel.rounds.{round_name} starts from {start}, not from the previous "
                          f"round's predictions ({names[i - 1]}.parquet)")
    return start


def model_predictions(predictions: pd.DataFrame, subset: str, seed: int) -> pd.DataFrame:
    """One model's rows of a predictions file (train's holds every subset and seed)."""
    return predictions[(predictions["subset"] == subset) & (predictions["seed"] == seed)].reset_index(drop=True)


def labelled_oof(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    return predictions[predictions["test"] == "train-oof"].merge(manifest[["sample_id", "label"]], on="sample_id")


def unlabelled_pool(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """The model's predictions of the unlabelled test3 items (the MER-SEMI pool); an item predicted from
    the training prior (`fallback`: no modality of the model) has nothing to teach and is left out."""
    pool = manifest.loc[(manifest["split"] == "test3") & manifest["label"].isna(), "sample_id"]
    return predictions[(predictions["test"] == "test3") & predictions["sample_id"].isin(pool) & ~predictions["fallback"]]


def semi_round(tables: dict[str, Table], manifest: pd.DataFrame, start: pd.DataFrame, cfg: PseudolabelConfig,
               train_cfg: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Select from the start model's predictions (one subset and seed), retrain on labelled + selected.
    Returns the new predictions, the selected items and lambda per class."""
    picked, thresholds = semi.select_items(labelled_oof(start, manifest), unlabelled_pool(start, manifest),
                                           cfg.eta, cfg.max_per_class, cfg.max_per_labelled)
    if picked.empty:
        return start, picked, thresholds
    subset, seed = start["subset"].iloc[0], int(start["seed"].iloc[0])
    extra = semi.pseudo_table(tables["test3"], picked)
    result, train_ids = run_subset(tables, subset, train_cfg, seed, extra, cfg.weight)
    return predictions_frame(result, train_ids, tables, subset, seed), picked, thresholds


def round_report(round_name: str, start_path: str, cfg: PseudolabelConfig, thresholds: np.ndarray,
                 picked: pd.DataFrame, start: pd.DataFrame, predictions: pd.DataFrame, manifest: pd.DataFrame) -> dict:
    """The round's metrics: selection size and balance, pseudo-label precision (where truth is known),
    and MER-SEMI (test3) / MER-MULTI (test1) F1 of the retrained model beside the start model's."""
    subset, labels = start["subset"].iloc[0], predicted_labels(start)
    before, after = ev.joined(start, manifest), ev.joined(predictions, manifest)
    f1 = lambda rows, test: ev.score(rows, subset, test, with_valence=False).get("f1_weighted")  # noqa: E731
    return {
        "round": round_name, "start": start_path, "eta": cfg.eta, "max_per_class": cfg.max_per_class,
        "max_per_labelled": cfg.max_per_labelled, "weight": cfg.weight,
        "unlabelled": int(len(unlabelled_pool(start, manifest))), "selected": len(picked),
        "empty": picked.empty, "note": EMPTY_NOTE if picked.empty else "",
        "thresholds": {c: (None if np.isinf(t) else round(float(t), 4)) for c, t in zip(labels, thresholds)},
        "per_class": {c: int((picked["label"] == c).sum()) for c in labels},
        "precision": semi.precision(picked),
        "mer_semi_f1": f1(after, "test3"), "mer_semi_f1_start": f1(before, "test3"),
        "mer_multi_f1": f1(after, "test1"), "mer_multi_f1_start": f1(before, "test1"),
    }
