"""The `train` stage's logic: cross-validate every modality subset and predict every test view.

Like the MER 2023 baseline, each subset's fold ensemble predicts each test set; predictions are kept
as logits and valence per (subset, seed, test, item), so `evaluate` only scores and plots.

A subset trains and its model predicts only on the items that have at least one of its modalities (an
audio-only model never sees a text-only item), and modalities no training item has are left out of every
subset. Every other test item still gets a prediction, from the training prior (log class frequencies as
logits, mean training valence), marked `fallback`: a challenge figure is over the whole test set, never
over the items a subset happens to cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ConfigError, TrainConfig
from pipeline.labels import logit_columns
from pipeline.modalities import parse_subset, subset_code
from pipeline.outputs import CURVE_PREFIX, curve_file
from pipeline.training.cv import CVResult, TestSet
from pipeline.training.data import Table, load_table, standardize
from pipeline.training.folds import CVJob, make_folds

TEST_SPLITS = ("test1", "test2", "test3")
PRIOR_FLOOR = 1e-12  # class frequency floor, so a class no training item has gets a finite log-prior


@dataclass
class Views:
    """The media views a run reads: clean, plus corrupted views of some test splits."""
    clean: Path
    corrupted: dict[str, Path]


def usable_subsets(cfg: TrainConfig, available: tuple[str, ...] | None = None) -> list[str]:
    """The ablation subsets whose modalities all have a feature (and, given `available`, training items),
    with the full set last (the main model)."""
    have = set(cfg.features) if available is None else set(cfg.features) & set(available)
    full = subset_code(have)
    if not full:
        raise ConfigError("train.features names no modality; map audio/visual/text to encode.features names")
    chosen = [s for s in cfg.ablation if set(parse_subset(s)) <= have and s != full]
    return [*dict.fromkeys(chosen), full]


def load_tables(manifest: pd.DataFrame, views: Views, features: dict[str, Path], feature_norm: str,
                labels: tuple[str, ...]) -> dict[str, Table]:
    """'train' plus one table per test split and view, named '<split>' (clean) or '<split>@<view>';
    with feature_norm 'standard', every table is z-scored with the training items' statistics."""
    tables = {"train": load_table(manifest[manifest["split"] == "train"], views.clean, features, labels, require=True)}
    for split in TEST_SPLITS:
        rows = manifest[manifest["split"] == split]
        if len(rows):
            tables[split] = load_table(rows, views.clean, features, labels)
            for name, path in views.corrupted.items():
                if rows["sample_id"].isin(_view_ids(path)).any():  # the view is of this split: every item
                    tables[f"{split}@{name}"] = load_table(rows, path, features, labels)  # (absent = no modality)
    return standardize(tables) if feature_norm == "standard" else tables


def _view_ids(path: Path) -> set[str]:
    from pipeline.store.media import MediaStore

    return set(MediaStore(path).view()["sample_id"])


def run_subset(tables: dict[str, Table], subset: str, cfg: TrainConfig, seed: int,
               extra: Table | None = None, extra_weight: float = 1.0) -> tuple[CVResult, np.ndarray]:
    """Cross-validate one modality subset; `extra` rows (pseudo-labels) train in every fold.
    Returns the result and the sample ids of the labelled training rows (the out-of-fold rows)."""
    job, train_ids = subset_job(tables, subset, cfg, seed, extra, extra_weight)
    return cross_validate(cfg, [job], len(tables["train"].labels))[0], train_ids


def run_subsets(tables: dict[str, Table], runs: list[tuple[str, int]],
                cfg: TrainConfig) -> list[tuple[CVResult, np.ndarray]]:
    """run_subset for every (subset, seed) in `runs`, in one call so that the family can train them together."""
    jobs = [subset_job(tables, subset, cfg, seed) for subset, seed in runs]
    results = cross_validate(cfg, [job for job, _ in jobs], len(tables["train"].labels))
    return [(result, train_ids) for result, (_, train_ids) in zip(results, jobs)]


def cross_validate(cfg: TrainConfig, jobs: list[CVJob], n_classes: int) -> list[CVResult]:
    """The jobs cross-validated by the model family train.model names: same folds, metrics and outputs."""
    return cfg.model.cls.cross_validate(jobs, cfg, n_classes)


def subset_job(tables: dict[str, Table], subset: str, cfg: TrainConfig, seed: int, extra: Table | None = None,
               extra_weight: float = 1.0) -> tuple[CVJob, np.ndarray]:
    """One subset's cross-validation inputs, and the sample ids of its labelled training rows."""
    modalities = parse_subset(subset)
    train = tables["train"].take(tables["train"].y >= 0, modalities)
    train = covered(train, modalities)  # an item with none of the subset's inputs teaches nothing
    check_fold_count(train.y, cfg.folds, subset)
    groups = speaker_groups(train.rows, cfg.group_by, cfg.folds)
    folds = make_folds(len(train.rows), cfg.folds, seed, y=train.y, groups=groups)
    X, present, y, v, weight = train.X, train.present, train.y, train.v, np.ones(len(train.rows))
    extra = covered(extra, modalities) if extra is not None else None
    if extra is not None and len(extra.rows):
        X = {m: np.concatenate([X[m], extra.X[m]]) for m in modalities}
        present = {m: np.concatenate([present[m], extra.present[m]]) for m in modalities}
        y, v = np.concatenate([y, extra.y]), np.concatenate([v, extra.v])
        folds = np.concatenate([folds, np.full(len(extra.rows), -1)])
        weight = np.concatenate([weight, np.full(len(extra.rows), extra_weight)])
    tests = test_sets(tables, modalities)
    X = {m: np.nan_to_num(X[m]) for m in modalities}  # absent rows are masked; NaN must not reach a matmul
    return CVJob(X, present, y, v, folds, tests, weight, seed), train.rows["sample_id"].to_numpy()


def covered(table: Table, modalities: tuple[str, ...]) -> Table:
    """The items of `table` that have at least one of `modalities`: the ones a subset can speak for."""
    return table.take(table.any_present(modalities), modalities)


def test_sets(tables: dict[str, Table], modalities: tuple[str, ...]) -> dict[str, TestSet]:
    """Every test table's items that have one of `modalities`, as model input on the table's own arrays: the
    subsets share them (a copy per subset would hold a release's pool features several times over)."""
    sets = {name: model_input(t, modalities, np.flatnonzero(t.any_present(modalities)))
            for name, t in tables.items() if name != "train"}
    return {name: s for name, s in sets.items() if len(s)}


def check_fold_count(y: np.ndarray, k: int, subset: str) -> None:
    """Stratified folds need a class with at least k labelled items (the stratifier splits each class
    over the folds); fewer is a ConfigError naming train.folds, not the splitter's ValueError."""
    largest = int(np.bincount(y).max()) if len(y) else 0
    if largest < k:
        raise ConfigError(f"train.folds: {k} folds need at least {k} labelled training items of one class; "
                          f"subset {subset} has {len(y)} labelled items, at most {largest} of a class: lower "
                          f"train.folds (>= 2) or label more training items")


def speaker_groups(rows: pd.DataFrame, group_by: str, k: int) -> np.ndarray | None:
    """The groups folds must not split (train.group_by: speaker), checked: every item needs a value, and there
    must be at least as many groups as folds."""
    if not group_by:
        return None
    if group_by not in rows.columns:
        raise ConfigError(f"train.group_by: no manifest column {group_by!r}")
    groups = rows[group_by]
    missing = groups.isna() | (groups.astype(str).str.strip() == "")
    if missing.any():
        raise ConfigError(f"train.group_by: {int(missing.sum())} training items have no {group_by}; "
                         f"fill it in or set train.group_by to \"\"")
    if groups.nunique() < k:
        raise ConfigError(f"train.group_by: {groups.nunique()} {group_by} groups cannot make {k} folds; lower train.folds")
    return groups.astype(str).to_numpy()


def model_input(table: Table, modalities: tuple[str, ...], rows: np.ndarray | None = None) -> TestSet:
    """A table's items (all, or `rows`) as model input, on the table's arrays: the model masks absent rows by
    `present` (their NaN never reach a matmul)."""
    y, v = (table.y, table.v) if rows is None else (table.y[rows], table.v[rows])
    return TestSet({m: table.X[m] for m in modalities}, {m: table.present[m] for m in modalities}, y, v, rows)


def predictions_frame(result: CVResult, train_ids: np.ndarray, tables: dict[str, Table], subset: str,
                      seed: int) -> pd.DataFrame:
    """Logits and valence for every item of every test table (`fallback`: from the training prior, the item
    has none of the subset's modalities), plus the out-of-fold predictions of the training items."""
    frames, columns = [], logit_columns(tables["train"].labels)
    prior_logits, prior_valence = training_prior(tables["train"])
    for name, table in tables.items():
        if name == "train":
            continue
        modelled = table.any_present(parse_subset(subset))
        logits = np.tile(prior_logits, (len(table.rows), 1))
        valence = np.full(len(table.rows), prior_valence)
        if name in result.tests:
            logits[modelled], valence[modelled] = result.tests[name].logits, result.tests[name].valence
        frame = pd.DataFrame(logits, columns=columns)
        frame.insert(0, "sample_id", table.rows["sample_id"].to_numpy())
        frame.insert(0, "test", name)
        frame["valence"] = valence
        frame["fallback"] = ~modelled
        frames.append(frame)
    oof = pd.DataFrame(result.oof_logits[: len(train_ids)], columns=columns)
    oof.insert(0, "sample_id", train_ids)
    oof.insert(0, "test", "train-oof")
    oof["valence"] = result.oof_valence[: len(train_ids)]
    oof["fallback"] = False
    frames.append(oof)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "seed", seed)
    out.insert(0, "subset", subset)
    return out


def training_prior(train: Table) -> tuple[np.ndarray, float]:
    """What a model that sees nothing of an item can say: the labelled training items' class frequencies
    as logits (log-priors; their argmax is the majority class) and their mean valence."""
    y = train.y[train.y >= 0]
    freq = np.bincount(y, minlength=len(train.labels)) / max(len(y), 1)
    v = train.v[(train.y >= 0) & np.isfinite(train.v)]
    return np.log(np.maximum(freq, PRIOR_FLOOR)), float(v.mean()) if len(v) else float("nan")


def cv_summary(result: CVResult, subset: str, seed: int, n_items: int) -> dict:
    """CV figures over `items` training items; `test_items`: how many items of each test view the model
    predicts (the others get the training prior).
    Nothing that varies between identical runs (wall time): cv.json is a committed metric."""
    return {"subset": subset, "seed": seed, "items": n_items, **result.cv,
            "test_items": {name: len(pred.valence) for name, pred in result.tests.items()},
            "best_epoch": [int(e) for e in result.best_epoch]}


def write_curves(result: CVResult, folder: Path) -> None:
    """One CSV per fold (epoch, train_loss, val_*), so `dvc plots` draws a line per fold."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{CURVE_PREFIX}*.csv"):
        old.unlink()
    for fold, rows in curves_frame(result).groupby("fold"):
        rows.drop(columns="fold").to_csv(folder / curve_file(fold), index=False)


def curves_frame(result: CVResult) -> pd.DataFrame:
    """Per fold and epoch, every training curve (no rows for a model without epochs, e.g. LightGBM)."""
    if not result.curves:
        return pd.DataFrame(columns=["fold", "epoch"])
    frames = []
    for fold in range(len(result.best_epoch)):
        data = {name: values[fold] for name, values in result.curves.items()}
        frame = pd.DataFrame(data)
        frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
        frame.insert(0, "fold", fold)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
