"""train.model dispatch (fusion | lightgbm) and fold-ensemble checkpoints: round trip, feature checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from pipeline.config import FusionParams, LightGBMParams, TrainConfig
from pipeline.labels import MER_LABELS, VALENCE_RANGE
from pipeline.store.features import FeatureStore, Identity
from pipeline.training import checkpoint, cv, lgbm
from pipeline.training.data import Table, standardize
from pipeline.training.folds import CVJob
from pipeline.training.lgbm import FoldModel, LightGBMRun
from pipeline.training.run import predictions_frame, run_subset

CFG = TrainConfig(features={"audio": "egemaps", "visual": "fer"}, fusion=FusionParams(epochs=4, hidden=(16, 8)), folds=3,
                  feature_norm="standard", lightgbm=LightGBMParams(n_estimators=12, num_leaves=5, min_child_samples=5))
DIMS = {"audio": 12, "visual": 7}


def table(n: int, seed: int, split: str) -> Table:
    """Audio carries class // 3, visual class % 3 (shifted and scaled, so z-scoring matters); some faces missing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    X = {"audio": (np.eye(DIMS["audio"])[y // 3] * 3 + rng.normal(size=(n, DIMS["audio"]))).astype(np.float32),
         "visual": (50 + 10 * np.eye(DIMS["visual"])[y % 3] + 5 * rng.normal(size=(n, DIMS["visual"]))).astype(np.float32)}
    present = {"audio": np.ones(n, bool), "visual": np.arange(n) % 9 != 0}
    X["visual"][~present["visual"]] = np.nan
    rows = pd.DataFrame({"sample_id": [f"{split}{i:03d}" for i in range(n)], "split": split,
                         "label": np.array(MER_LABELS)[y], "valence": np.where(y // 3, 2.0, -2.0) + rng.normal(size=n)})
    return Table(rows, X, present, labels=MER_LABELS)


@pytest.fixture(scope="module")
def tables():
    return standardize({"train": table(150, 0, "train"), "test1": table(30, 1, "test1")})


def feature_stores(tmp_path, config: dict | None = None) -> dict[str, dict]:
    records = {}
    for modality, feature in CFG.features.items():
        ident = Identity(feature, "1", modality, (config or {}).get(modality, {}), {"lib": "1.0"})
        FeatureStore(tmp_path / f"{feature}.zarr").create(ident, DIMS[modality])
        records[modality] = checkpoint.feature_record(feature, tmp_path / f"{feature}.zarr")
    return records


@pytest.mark.parametrize("model", ["fusion", "lightgbm"])
def test_both_model_families_share_folds_and_outputs(tables, model):
    cfg = dataclasses.replace(CFG, model=model)
    result, train_ids = run_subset(tables, "AV", cfg, seed=0)
    fusion, _ = run_subset(tables, "AV", CFG, seed=0)
    assert result.model == model and np.array_equal(result.folds, fusion.folds)
    frame = predictions_frame(result, train_ids, tables, "AV", 0)
    assert list(frame.columns) == list(predictions_frame(fusion, train_ids, tables, "AV", 0).columns)
    assert np.isfinite(result.oof_logits).all() and set(result.tests) == {"test1"}
    if model == "lightgbm":  # the dispatch passes train.lightgbm and the seed through unchanged
        train = tables["train"]
        job = CVJob({m: np.nan_to_num(x) for m, x in train.X.items()}, train.present, train.y, train.v, result.folds)
        direct = lgbm.cross_validate([job], LightGBMRun(cfg.lightgbm, n_classes=len(MER_LABELS)))[0]
        assert np.array_equal(direct.oof_logits, result.oof_logits)


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="train.model: unknown model family 'svm'; known: fusion, lightgbm"):
        dataclasses.replace(CFG, model="svm")


@pytest.mark.parametrize("model", ["fusion", "lightgbm"])
def test_checkpoint_round_trip_predicts_like_the_trained_ensemble(tables, tmp_path, model):
    result, _ = run_subset(tables, "AV", dataclasses.replace(CFG, model=model), seed=0)
    records = feature_stores(tmp_path)
    out = checkpoint.save(tmp_path / "ckpt", result, records, tables["train"].norm, MER_LABELS)
    loaded = checkpoint.load(out)
    meta = json.loads((out / checkpoint.META).read_text())
    assert meta["labels"] == list(MER_LABELS) and meta["features"]["visual"]["dim"] == DIMS["visual"]
    assert {"torch", "lightgbm", "numpy"} <= set(meta["libraries"])
    for m, stats in loaded.norm.items():
        assert np.array_equal(stats.mean, tables["train"].norm[m].mean)
        assert np.array_equal(stats.std, tables["train"].norm[m].std)
    test = tables["test1"]
    pred = loaded.predict(cv.TestSet({m: np.nan_to_num(x) for m, x in test.X.items()}, test.present))
    assert np.allclose(pred.logits, result.tests["test1"].logits, atol=1e-6)
    assert np.allclose(pred.valence, result.tests["test1"].valence, atol=1e-6)
    loaded.check_features(records)  # the training features pass


def test_checkpoint_refuses_features_of_another_encoder(tables, tmp_path):
    result, _ = run_subset(tables, "AV", CFG, seed=0)
    loaded = checkpoint.load(checkpoint.save(tmp_path / "ckpt", result, feature_stores(tmp_path / "a"), None, MER_LABELS))
    other = feature_stores(tmp_path / "b", config={"visual": {"include_probs": False}})
    with pytest.raises(checkpoint.FeatureMismatch, match=r"visual: encoder 'fer'.*config \{'include_probs': False\}") as err:
        loaded.check_features(other)
    assert "audio" not in str(err.value)  # only the encoder that differs is named
    with pytest.raises(checkpoint.FeatureMismatch, match="audio: the checkpoint needs feature 'egemaps'"):
        loaded.check_features({"visual": other["visual"]})


def test_lightgbm_valence_is_clipped_to_the_label_range():
    rng = np.random.default_rng(0)
    F, v = rng.normal(size=(60, 4)), np.linspace(-40.0, 40.0, 60)  # targets far outside [-5, 5]
    run = LightGBMRun(LightGBMParams(n_estimators=20, num_leaves=4, min_child_samples=2), n_classes=3)
    model = FoldModel.fit(run, 0, F, np.arange(60) % 3, v, np.ones(60), np.arange(60))
    predicted = model.valence(F)
    assert predicted.min() == VALENCE_RANGE[0] and predicted.max() == VALENCE_RANGE[1]
