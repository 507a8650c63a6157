"""The label-list model's parts: vocabulary folding, list rules and their choice on out-of-fold probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError, load_section
from pipeline.errors import InputError
from pipeline.training.data import Table
from pipeline.training.label_lists import (
    ListRule,
    Vocabulary,
    choose_rule,
    sample_f1,
    top_words,
    training_rows,
    wheel_forms,
)
from tests.list_fixtures import write_class_wheel

LISTS = [["Sadness", "gloomy"], ["sad", " happily "], ["happy", "sadly"], ["amazed"]]


def test_suffix_fold_folds_onto_words_of_the_lists_only():
    vocab = Vocabulary.learn(LISTS)
    assert vocab.words == ("amazed", "gloomy", "happily", "happy", "sad")  # "happily" has no "happi" to fold to
    assert vocab.normalise(["SADNESS", "sadly", "unknown", "sad"]) == ["sad"]
    assert vocab.targets([["sadly", "gloomy"]]).tolist() == [[False, True, False, False, True]]


def test_wheel_forms_fold_as_format_csv_says_and_min_count_prunes(tmp_path):
    forms = wheel_forms(write_class_wheel(tmp_path / "wheel"))
    lists = [["Sadness", "gloomy"], ["sad", "happyness"], ["happy", "sadly"], ["amazed"]]
    vocab = Vocabulary.learn(lists, forms, min_count=2)
    assert vocab.words == ("happy", "sad")          # happyness -> happy; amazed and gloomy occur once
    with pytest.raises(InputError, match="min_count"):
        Vocabulary.learn(LISTS, forms, min_count=9)


def test_a_rule_never_gives_an_empty_list_and_keeps_its_cap():
    probs = np.array([[0.1, 0.2, 0.05], [0.9, 0.8, 0.7]])
    assert [p.tolist() for p in ListRule(0, 0.5, 2).apply(probs)] == [[1], [0, 1]]
    assert [p.tolist() for p in ListRule(2, 0.0, 2).apply(probs)] == [[1, 0], [0, 1]]
    idx, top = top_words(probs, 2)
    assert idx.tolist() == [[1, 0], [0, 1]] and ListRule(0, 0.5, 2).sizes(top).tolist() == [1, 2]


def test_the_chosen_rule_is_the_best_on_out_of_fold_sample_f1():
    rng = np.random.default_rng(0)
    Y = (rng.random((200, 8)) < 0.3).astype(np.float32)
    Y[Y.sum(1) == 0, 0] = 1
    probs = np.clip(0.6 * Y + 0.5 * rng.random(Y.shape), 0, 1)  # true words mostly above 0.6
    rule, f1 = choose_rule(Y, probs, max_labels=5)
    assert rule.k == 0 and 0.5 <= rule.threshold <= 0.65
    idx, top = top_words(probs, 5)
    assert f1 == sample_f1(Y, idx, rule.sizes(top)) > sample_f1(Y, idx, ListRule(1, 0.0, 5).sizes(top))
    by_hand = np.mean([2 * len(set(np.flatnonzero(y)) & set(p)) / (y.sum() + len(p)) for y, p in zip(Y, rule.apply(probs))])
    assert f1 == pytest.approx(by_hand, abs=1e-12)


def test_training_rows_leave_the_candidates_out_and_need_some_list():
    def table(split, lists):
        rows = pd.DataFrame({"sample_id": [f"{split}{i}" for i in range(len(lists))], "label_list": lists})
        return Table(rows, {"audio": np.zeros((len(lists), 2), np.float32)}, {"audio": np.ones(len(lists), bool)},
                     labels=("happy", "sad"))

    tables = {"train": table("train", ["sad", None]), "test1": table("test1", ["happy"]), "test3": table("test3", ["a;b"])}
    assert training_rows(tables).rows["sample_id"].tolist() == ["train0", "test30"]
    with pytest.raises(InputError, match="nothing to learn from"):
        training_rows({"train": table("train", [None]), "test1": table("test1", ["happy"])})


def test_protocol_and_fine_grained_params_are_checked(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  fine_grained: {max_labels: 0}\n")
    with pytest.raises(ConfigError, match="train.fine_grained.max_labels"):
        load_section("train", params)
    from pipeline.protocols import PROTOCOLS
    with pytest.raises(ConfigError, match="evaluate.protocol: unknown evaluation protocol 'mer2030'"):
        PROTOCOLS.lookup("mer2030")


def test_validation_and_out_of_fold_outputs_do_not_depend_on_the_chunk_size(monkeypatch):
    import functools

    from pipeline.config import DemoConfig, FineGrainedParams, FusionParams
    from pipeline.demo.features import feature_corpus
    from pipeline.training import label_lists as fg
    from tests.list_fixtures import with_label_lists

    rows, tables = feature_corpus(DemoConfig(seed=2, n_train=40, n_test1=10, n_test2=0, n_test3_labelled=0,
                                             n_unlabelled=0), dim=6)
    rows = with_label_lists(rows)
    for table in tables.values():
        table.rows = table.rows.merge(rows[["sample_id", "label_list"]], on="sample_id")
    params = FusionParams(epochs=4, hidden=(8,), batch_size=8)
    whole = fg.fit(tables, "AT", params, FineGrainedParams(), 3, 0)
    monkeypatch.setattr(fg, "_forward", functools.partial(fg._forward, chunk=5))
    chunked = fg.fit(tables, "AT", params, FineGrainedParams(), 3, 0)
    assert chunked.summary == whole.summary
    pd.testing.assert_frame_equal(fg.predictions(chunked, tables), fg.predictions(whole, tables))
