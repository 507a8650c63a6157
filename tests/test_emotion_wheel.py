"""The emotion-wheel metric on a tiny wheel folder, figures computed by hand (tests/wheel_fixtures.py)."""

from __future__ import annotations

import pytest

from pipeline.emotion_wheel import EmotionWheel, headline_figures, label_list
from pipeline.errors import InputError, MissingInput
from tests.wheel_fixtures import write_wheel

TRUTH = {"c1": "['gladness', 'sadly']", "c2": "['neutral']", "c3": ["calmly"], "c4": "joyful, loneliness"}
PRED = {"c1": "['happy']", "c2": "['sad']", "c3": "[]", "c4": ["Merrily ", "serenely", "sad"]}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return EmotionWheel.read(write_wheel(tmp_path_factory.mktemp("wheel")))


def test_label_list_reads_the_organisers_text_forms():
    assert label_list("['excited', 'joyful', 'happy']") == ["excited", "joyful", "happy"]
    assert label_list('["at ease", "calm"]') == ["at ease", "calm"]
    assert label_list("happy, sad") == ["happy", "sad"]
    assert label_list("[]") == [] and label_list(float("nan")) == [] and label_list(None) == []


def test_a_label_reaches_its_category_through_forms_synonyms_and_rings(wheel):
    # gladness -> glad -> {glad, happy} (run 2 makes happy a head of glad): wheel1 has glad, wheel2 happy
    assert wheel.category("gladness", "wheel1", "level1") == "joy"
    assert wheel.category("gladness", "wheel1", "level2") == "cheerful"
    assert wheel.category("gladness", "wheel2", "level1") == "positive"
    assert wheel.category("Serenely ", "wheel1", "level2") == "content"        # a synonym of calm
    assert wheel.category("joyful", "wheel1", "level2") == "cheerful"          # joy's first level-2 word
    assert wheel.category("sadly", "wheel1", "level2") == "lonely"             # the empty cell repeats lonely
    assert wheel.category("pleased", "wheel1", "level1") is None               # a synonym, but no form of it
    assert wheel.category("neutral", "wheel1", "level1") is None


def test_scores_match_the_hand_computed_figures(wheel):
    s = wheel.score(TRUTH, PRED)
    # wheel1 level1: c1 P=1 R=1/2; c2 skipped (no true category); c3 P=R=0 (nothing predicted); c4 P=R=1
    assert s["level1"]["wheels"]["wheel1"] == pytest.approx({"p": 2 / 3, "r": 1 / 2, "f": 4 / 7, "n": 3})
    # wheel1 level2: c4 predicts cheerful, content, lonely against cheerful, lonely: P=2/3
    assert s["level2"]["wheels"]["wheel1"] == pytest.approx({"p": 5 / 9, "r": 1 / 2, "f": 10 / 19, "n": 3})
    # wheel2 knows only c1's words: P=1, R=1/2 at both levels
    assert s["level1"]["wheels"]["wheel2"] == pytest.approx({"p": 1, "r": 1 / 2, "f": 2 / 3, "n": 1})
    assert s["level2"]["wheels"]["wheel2"] == pytest.approx({"p": 1, "r": 1 / 2, "f": 2 / 3, "n": 1})
    assert (s["level1"]["f"], s["level1"]["p"], s["level1"]["r"]) == pytest.approx(((4 / 7 + 2 / 3) / 2, 5 / 6, 1 / 2))
    assert (s["level2"]["f"], s["level2"]["p"], s["level2"]["r"]) == pytest.approx(((10 / 19 + 2 / 3) / 2, 7 / 9, 1 / 2))
    assert headline_figures(s)["f_mean"] == pytest.approx((s["level1"]["f"] + s["level2"]["f"]) / 2)


def test_nothing_right_scores_zero_not_nan(wheel):
    s = wheel.score({"c1": ["sad"]}, {"c1": ["glad"]})
    assert s["level1"]["f"] == 0.0 and s["level2"]["p"] == 0.0
    assert wheel.score({"c1": ["neutral"]}, {"c1": ["sad"]})["level1"]["wheels"]["wheel1"]["n"] == 0


def test_missing_predictions_and_files_are_input_errors(wheel, tmp_path):
    with pytest.raises(InputError, match="lack 1 of the 4"):
        wheel.score(TRUTH, {k: v for k, v in PRED.items() if k != "c3"})
    with pytest.raises(MissingInput, match="no wheel<N>.xlsx"):
        EmotionWheel.read(tmp_path)
    folder = write_wheel(tmp_path / "w")
    (folder / "format.csv").unlink()
    with pytest.raises(MissingInput, match="format.csv does not exist"):
        EmotionWheel.read(folder)
