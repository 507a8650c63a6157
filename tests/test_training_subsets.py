"""Training on corpora with missing modalities, other label sets and speaker-grouped folds (run.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.config import FusionParams, TrainConfig
from pipeline.labels import MER_LABELS, logit_columns
from pipeline.training.data import Table
from pipeline.training.run import cv_summary, predictions_frame, run_subset, speaker_groups, usable_subsets

FAST = TrainConfig(features={"audio": "a", "visual": "v", "text": "t"}, folds=3,
                   fusion=FusionParams(epochs=6, batch_size=16, hidden=(16, 8)))
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
    grouped, _ = run_subset(tables, "A", replace(FAST, group_by="speaker"), seed=0)
    for k in range(3):
        val = set(speakers[grouped.folds == k])
        assert val and not val & set(speakers[grouped.folds != k]), k
    ungrouped, _ = run_subset(tables, "A", FAST, seed=0)  # the check above fails without grouping
    assert any(set(speakers[ungrouped.folds == k]) & set(speakers[ungrouped.folds != k]) for k in range(3))


def test_group_by_needs_a_value_per_item_and_enough_groups():
    rows = pd.DataFrame({"speaker": ["a", "b", None, "c"]})
    with pytest.raises(ValueError, match="1 training items have no speaker"):
        speaker_groups(rows, "speaker", 2)
    with pytest.raises(ValueError, match="2 speaker groups cannot make 3 folds"):
        speaker_groups(pd.DataFrame({"speaker": ["a", "b", "a"]}), "speaker", 3)
    with pytest.raises(ValueError, match="no manifest column 'actor'"):
        speaker_groups(rows, "actor", 2)
    assert speaker_groups(rows, "", 2) is None


def test_each_subset_covers_only_items_with_its_modalities():
    tables = {"train": table(60, mixed_presence(60)), "test1": table(30, mixed_presence(30), seed=1, split="test1")}
    for subset, train_n, test_n in (("A", 40, 20), ("T", 40, 20), ("AT", 60, 30)):
        result, train_ids = run_subset(tables, subset, FAST, seed=0)
        assert len(train_ids) == train_n and result.tests["test1"].logits.shape[0] == test_n, subset
        summary = cv_summary(result, subset, 0, len(train_ids))
        assert summary["items"] == train_n and summary["test_items"] == {"test1": test_n}
        frame = predictions_frame(result, train_ids, tables, subset, 0)
        test = frame[frame["test"] == "test1"]
        has = {"A": "audio", "T": "text"}  # the model predicts exactly the items with one of the subset's modalities
        mask = np.logical_or.reduce([tables["test1"].present[has[c]] for c in subset])
        assert list(test["sample_id"]) == list(tables["test1"].rows["sample_id"]), subset  # every item, in order
        assert (test["fallback"].to_numpy() == ~mask).all(), subset
        np.testing.assert_allclose(test.loc[~test["fallback"], "valence"], result.tests["test1"].valence, rtol=0, atol=0)


def test_an_item_without_the_subsets_modalities_gets_the_training_prior():
    tables = {"train": table(60, mixed_presence(60)), "test1": table(30, mixed_presence(30), seed=1, split="test1")}
    tables["train"].rows["valence"] = np.linspace(-4.0, 3.0, 60)
    result, train_ids = run_subset(tables, "A", FAST, seed=0)
    frame = predictions_frame(result, train_ids, tables, "A", 0)
    fallback = frame[(frame["test"] == "test1") & frame["fallback"]]
    train = tables["train"]
    counts = np.bincount(train.y[train.y >= 0], minlength=6)
    assert len(fallback) == 10 and not frame.loc[frame["test"] == "train-oof", "fallback"].any()
    expected = np.log(np.maximum(counts / counts.sum(), 1e-12))
    np.testing.assert_allclose(fallback[logit_columns(train.labels)].to_numpy(), np.tile(expected, (10, 1)))
    np.testing.assert_allclose(fallback["valence"], np.linspace(-4.0, 3.0, 60).mean())


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
    result, train_ids = run_subset(tables, "T", replace(FAST, fusion=replace(FAST.fusion, epochs=40, lr=0.01)), seed=0)
    assert result.modalities == ("text",) and len(train_ids) == n
    assert np.isfinite(result.tests["test1"].logits).all() and result.cv["f1_weighted"] > 0.3  # 6 classes: chance ~0.17


def test_another_label_set_gives_one_logit_per_class():
    ravdess = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    tables = {"train": table(80, {"audio": np.ones(80, bool)}, labels=ravdess)}
    result, train_ids = run_subset(tables, "A", FAST, seed=0)
    frame = predictions_frame(result, train_ids, tables, "A", 0)
    assert result.oof_logits.shape == (80, 8)
    assert [c for c in frame.columns if c.startswith("logit_")] == [f"logit_{c}" for c in ravdess]


def test_training_shows_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch):
    """One bar per stacked model over its epochs on a terminal; plain lines in a DVC log or CI."""
    import io

    from pipeline.training.run import run_subsets

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tables = {"train": table(60, {"audio": np.ones(60, bool), "text": np.ones(60, bool)})}
    for stderr, bar in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr("sys.stderr", stderr)
        run_subsets(tables, [("A", 0), ("AT", 0)], FAST)
        shown = stderr.getvalue()
        assert "train seed 0, 2 subset(s)" in shown and ("\r" in shown) == bar
        done = f"{FAST.fusion.epochs}/{FAST.fusion.epochs}"  # 3 folds train as one fold shard
        assert done in shown and (f"{done} fold-shard epoch (100%)" in shown) != bar


def test_subsets_predict_on_the_test_tables_own_arrays(monkeypatch):
    """A subset's test set is the table's arrays and the rows it covers, not a copy per subset (at release
    scale the copies held the pool's features four times over), and predicting it chunk by chunk gives what
    the covered rows' own copy gives in one piece."""
    from pipeline.training import cv
    from pipeline.training.families import Fusion
    from pipeline.training.run import subset_job

    tables = {"train": table(60, mixed_presence(60)), "test1": table(30, mixed_presence(30), seed=1, split="test1")}
    test = tables["test1"]
    for subset, covered in (("A", test.present["audio"]), ("AT", test.present["audio"] | test.present["text"])):
        ts = subset_job(tables, subset, FAST, seed=0)[0].tests["test1"]
        assert all(ts.X[m] is test.X[m] for m in ts.X), subset
        np.testing.assert_array_equal(ts.rows, np.flatnonzero(covered))
        np.testing.assert_array_equal(ts.y, test.y[covered])
    result, _ = run_subset(tables, "A", FAST, seed=0)
    rows = np.flatnonzero(test.present["audio"])  # 20 of 30
    whole = cv.TestSet({"audio": np.nan_to_num(test.X["audio"][rows])}, {"audio": test.present["audio"][rows]})
    expected = Fusion.predict(result.ensemble, whole, ("audio",))
    np.testing.assert_array_equal(result.tests["test1"].fold_logits, expected.fold_logits)
    monkeypatch.setattr(cv, "PREDICT_CHUNK", 7)
    shared = subset_job(tables, "A", FAST, seed=0)[0].tests["test1"]
    assert [len(present["audio"]) for _, present in shared.chunks()] == [7, 7, 6]
    chunked = Fusion.predict(result.ensemble, shared, ("audio",))  # a matmul over fewer rows may round its last bit
    np.testing.assert_allclose(chunked.fold_logits, expected.fold_logits, rtol=0, atol=1e-6)  # otherwise
    np.testing.assert_allclose(chunked.fold_valence, expected.fold_valence, rtol=0, atol=1e-6)


def test_standardize_overwrites_the_loaded_arrays_with_the_training_z_scores():
    """No second copy of a release's features: each table's arrays are z-scored where they are, with the
    training items' statistics, and an absent row stays NaN."""
    from pipeline.training.data import norm_stats, standardize

    tables = {"train": table(60, mixed_presence(60)), "test1": table(30, mixed_presence(30), seed=1, split="test1")}
    raw = {name: {m: x.copy() for m, x in t.X.items()} for name, t in tables.items()}
    arrays = {name: dict(t.X) for name, t in tables.items()}
    stats = norm_stats(tables["train"])
    out = standardize(tables)
    for name, t in out.items():
        for m, x in t.X.items():
            assert x is arrays[name][m], (name, m)
            np.testing.assert_array_equal(x, stats[m].apply(raw[name][m]))
            assert np.isnan(x[~t.present[m]]).all() and np.isfinite(x[t.present[m]]).all()
        assert t.norm is not None
    train_audio = out["train"].X["audio"][out["train"].present["audio"]]
    np.testing.assert_allclose(train_audio.mean(0), 0, atol=1e-5)
