"""Label lists for generated corpora: each clip's list draws words of its true class, some inflected."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.wheel_fixtures import sheet

WORDS = {"neutral": ["calm", "indifferent"], "angry": ["angry", "furious", "annoyed"],
         "happy": ["happy", "joyful", "glad"], "sad": ["sad", "gloomy", "lonely"],
         "worried": ["worried", "anxious", "nervous"], "surprise": ["surprised", "amazed", "astonished"]}
FORMS = ("", "ness", "ly")


def with_label_lists(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """`rows` with a `label_list` per clip: 1 to all words of its true class, joined by ";"."""
    rng = np.random.default_rng(seed)
    lists = []
    for label in rows["true_label"]:
        words = rng.choice(WORDS[label], size=int(rng.integers(1, len(WORDS[label]) + 1)), replace=False)
        lists.append(";".join(w + FORMS[int(rng.integers(3))] if w != "calm" else w for w in words))
    return rows.assign(label_list=lists)


def write_class_wheel(folder):
    """An emotion-wheel folder over WORDS: one wheel, level 1 the class, level 2 its first two words."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, words in WORDS.items():
        for i, word in enumerate(words):
            rows.append((label if i == 0 else None, words[min(i, 1)], word))
    sheet(folder / "wheel1.xlsx", ["level1", "level2", "level3"], rows)
    every = [w for words in WORDS.values() for w in words]
    header = [f"{kind}_run{k}" for k in range(1, 9) for kind in ("word", "synonym")]
    sheet(folder / "synonym.xlsx", header, [[c for _ in range(8) for c in (w, None)] for w in every])
    pd.DataFrame({"name": every, "format": [",".join(w + f for f in FORMS) for w in every]}).to_csv(
        folder / "format.csv", index=False)
    return folder
