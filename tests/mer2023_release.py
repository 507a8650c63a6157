"""A corpus laid out as the MER 2023 release (/work/shared/MER2023_PROTOCOL.md §1.1, §1.3, §1.5), made from
a generated demo corpus: train/ test1/ test2/ test3/ clips named sample_XXXXXXXX (test3's unlabelled pool
samplenew_XXXXXXXX), train-label.csv and test1/2/3-label.csv (test3 without valence), transcription.csv
with NaN and empty sentences, and label-6way.npz with the baseline's placeholders for the test splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from pipeline.labels import PLACEHOLDER_VALENCE

SPLITS = ("train", "test1", "test2", "test3")
NAN_EVERY, EMPTY_EVERY = 7, 11  # every 7th item's sentence is NaN (ASR gave nothing), every 11th is ""


def release_names(demo_rows: pd.DataFrame) -> pd.Series:
    """sample_<8 digits> for labelled items, samplenew_<8 digits> for test3's unlabelled pool."""
    prefix = np.where(demo_rows["label"] == "", "samplenew", "sample")
    return pd.Series([f"{p}_{i:08d}" for i, p in enumerate(prefix)], index=demo_rows.index)


def write_release(demo_root: Path, demo_rows: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Lay the demo clips (rows of its manifest.csv, read as strings) out as the release at `out`.
    Returns the rows with their release `name` and the `sentence` written (None for NaN)."""
    rows = demo_rows.assign(name=release_names(demo_rows)).reset_index(drop=True)
    rows["sentence"] = [None if i % NAN_EVERY == 3 else "" if i % EMPTY_EVERY == 5 else t
                        for i, t in enumerate(rows["transcript"])]
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    for row in rows.itertuples():
        os.link(demo_root / row.path, out / row.split / f"{row.name}.mp4")  # the same bytes, no copy
    labelled = rows[rows["label"] != ""]
    for split in SPLITS:
        mine = labelled[labelled["split"] == split]
        columns = ["name", "discrete"] if split == "test3" else ["name", "discrete", "valence"]  # test3: no valence
        mine.rename(columns={"label": "discrete"})[columns].to_csv(out / f"{split}-label.csv", index=False)
    rows[["name", "sentence"]].to_csv(out / "transcription.csv", index=False)  # None -> an empty field (NaN)
    write_label_npz(out / "label-6way.npz", rows)
    return rows


def write_label_npz(path: Path, rows: pd.DataFrame) -> None:
    """As the baseline writes it: <split>_corpus, a 0-d object array of {name: {'emo', 'val'}}; train with
    its labels, every test item with the placeholder {'emo': 'neutral', 'val': -10}."""
    corpora = {}
    for split in SPLITS:
        mine = rows[rows["split"] == split]
        corpus = {name: ({"emo": label, "val": float(valence)} if split == "train" and label
                         else {"emo": "neutral", "val": PLACEHOLDER_VALENCE})
                  for name, label, valence in zip(mine["name"], mine["label"], mine["valence"])}
        corpora[f"{split}_corpus"] = np.empty((), dtype=object)
        corpora[f"{split}_corpus"][()] = corpus
    np.savez(path, **corpora)


def labelled_counts(rows: pd.DataFrame) -> dict[str, int]:
    return {split: int(((rows["split"] == split) & (rows["label"] != "")).sum()) for split in SPLITS}


def submission_figures(submission: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """The challenge figures of a submission (name, discrete, valence) against a label file (name,
    discrete[, valence]), computed here apart from the pipeline: sklearn's weighted F1 over the labelled
    items, their valence MSE, and F1 - 0.25 * MSE."""
    scored = truth.merge(submission, on="name", how="left", suffixes=("_true", ""))
    assert scored["discrete"].notna().all(), "the submission lacks labelled items"
    figures = {"n": len(scored), "f1_weighted": f1_score(scored["discrete_true"], scored["discrete"], average="weighted")}
    if "valence_true" in scored:
        figures["valence_mse"] = float(np.mean((scored["valence_true"].astype(float) - scored["valence"]) ** 2))
        figures["combined"] = figures["f1_weighted"] - 0.25 * figures["valence_mse"]
    return figures
