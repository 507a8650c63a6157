"""Training on corpora with missing modalities, other label sets and speaker-grouped folds (run.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import TrainConfig
from pipeline.labels import MER_LABELS
from pipeline.training.data import Table
from pipeline.training.run import cv_summary, fold_groups, predictions_frame, run_subset, usable_subsets

FAST = TrainConfig(features={"audio": "a", "visual": "v", "text": "t"}, folds=3, epochs=6, batch_size=16,
                   hidden=(16, 8))
DIM = 8


def table(n: int, present: dict[str, np.ndarray], labels=MER_LABELS, n_speakers: int = 8, seed: int = 0,
          split: str = "train") -> Table:
    """Items whose features carry their class; absent rows are NaN, as load_table leaves them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(labels), n)
    protos = rng.normal(size=(len(labels), DIM))
    X = {m: np.where(p[:, None], protos[y] + 0.5 * rng.normal(size=(n, DIM)), np.nan).astype(np.float32)
         for m, p in present.items()}
    rows = pd.DataFrame({"sample_id": [f"{split}{i:03d}" for i in range(n)], "split": split,
                         "label": np.array(labels)[y], "valence": np.nan,
                         "speaker": [f"s{i % n_speakers}" for i in range(n)]})
    return Table(rows, X, {m: np.asarray(p, bool) for m, p in present.items()}, labels=tuple(labels))


def mixed_presence(n: int) -> dict[str, np.ndarray]:
    """Audio for the first two thirds, text for the last two thirds, visual for nobody."""
    i = np.arange(n)
    return {"audio": i < 2 * n // 3, "visual": np.zeros(n, bool), "text": i >= n // 3}


def test_grouped_folds_never_share_a_speaker_between_train_and_validation():
    tables = {"train": table(90, {"audio": np.ones(90, bool)}, n_speakers=9)}
    speakers = tables["train"].rows["speaker"].to_numpy()
    grouped, _ = run_subset(tables, "A", TrainConfig(**{**FAST.__dict__, "group_by": "speaker"}), seed=0)
    for k in range(3):
        val = set(speakers[grouped.folds == k])
        assert val and not val & set(speakers[grouped.folds != k]), k
    ungrouped, _ = run_subset(tables, "A", FAST, seed=0)  # the check above fails without grouping
    assert any(set(speakers[ungrouped.folds == k]) & set(speakers[ungrouped.folds != k]) for k in range(3))


def test_group_by_needs_a_value_per_item_and_enough_groups():
    rows = pd.DataFrame({"speaker": ["a", "b", None, "c"]})
    with pytest.raises(ValueError, match="1 training items have no speaker"):
        fold_groups(rows, "speaker", 2)
    with pytest.raises(ValueError, match="2 speaker groups cannot make 3 folds"):
        fold_groups(pd.DataFrame({"speaker": ["a", "b", "a"]}), "speaker", 3)
    with pytest.raises(ValueError, match="no manifest column 'actor'"):
        fold_groups(rows, "actor", 2)
    assert fold_groups(rows, "", 2) is None


def test_each_subset_covers_only_items_with_its_modalities():
    tables = {"train": table(60, mixed_presence(60)), "test1": table(30, mixed_presence(30), seed=1, split="test1")}
    for subset, train_n, test_n in (("A", 40, 20), ("T", 40, 20), ("AT", 60, 30)):
        result, train_ids = run_subset(tables, subset, FAST, seed=0)
        assert len(train_ids) == train_n and result.tests["test1"].logits.shape[0] == test_n, subset
        summary = cv_summary(result, subset, 0, len(train_ids))
        assert summary["items"] == train_n and summary["test_items"] == {"test1": test_n}
        frame = predictions_frame(result, train_ids, tables, subset, 0)
        test_rows = tables["test1"].rows.set_index("sample_id")
        predicted = frame.loc[frame["test"] == "test1", "sample_id"]
        has = {"A": "audio", "T": "text"}  # predicted: exactly the items with one of the subset's modalities
        mask = np.logical_or.reduce([tables["test1"].present[has[c]] for c in subset])
        assert set(predicted) == set(test_rows.index[mask]), subset


def test_modalities_no_training_item_has_are_left_out():
    assert usable_subsets(FAST) == ["A", "V", "T", "AV", "AT", "VT", "AVT"]
    assert usable_subsets(FAST, ("audio", "text")) == ["A", "T", "AT"]
    assert usable_subsets(FAST, ("visual",)) == ["V"]
    with pytest.raises(ValueError, match="names no modality"):
        usable_subsets(FAST, ())


def test_a_one_modality_corpus_trains_and_predicts_with_that_modality_alone():
    n = 60
    only_text = {"audio": np.zeros(n, bool), "visual": np.zeros(n, bool), "text": np.ones(n, bool)}
    tables = {"train": table(n, only_text), "test1": table(20, {m: p[:20] for m, p in only_text.items()}, seed=1,
                                                                 split="test1")}
    result, train_ids = run_subset(tables, "T", TrainConfig(**{**FAST.__dict__, "epochs": 40, "lr": 0.01}), seed=0)
    assert result.modalities == ("text",) and len(train_ids) == n
    assert np.isfinite(result.tests["test1"].logits).all() and result.cv["f1_weighted"] > 0.3  # 6 classes: chance ~0.17


def test_another_label_set_gives_one_logit_per_class():
    ravdess = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    tables = {"train": table(80, {"audio": np.ones(80, bool)}, labels=ravdess)}
    result, train_ids = run_subset(tables, "A", FAST, seed=0)
    frame = predictions_frame(result, train_ids, tables, "A", 0)
    assert result.oof_logits.shape == (80, 8)
    assert [c for c in frame.columns if c.startswith("logit_")] == [f"logit_{c}" for c in ravdess]


def test_train_progress_bar_only_on_a_terminal(monkeypatch):
    import io

    from stages.train import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    bar = progress_bar(7)
    bar.set_postfix_str("subset AV seed 0")
    bar.update()
    bar.close()
    assert "1/7" in terminal.getvalue() and "subset AV seed 0" in terminal.getvalue()
    monkeypatch.setenv("MER_PROGRESS", "0")
    assert progress_bar(7).disable
    monkeypatch.delenv("MER_PROGRESS")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal (a DVC log, CI)
    assert progress_bar(7).disable

