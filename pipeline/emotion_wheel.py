"""The emotion-wheel (EW) metric of MER-FG (MER 2025 and 2026, Track 2): open-vocabulary label lists scored
against the truth through five emotion wheels, offline and deterministic.

The organisers' files, in a folder the user names: `wheel<N>.xlsx` (columns level1, level2, level3, an
empty cell repeats the cell above), `synonym.xlsx` (eight runs of columns word_runK, synonym_runK: a wheel
word and its synonyms) and `format.csv` (name, format: a base word and its inflected forms). A label is
lower-cased and stripped, then

  label --format.csv--> base words --synonym.xlsx--> wheel words --(smallest that the wheel has)--> category

where the category is the word's level-1 ring (innermost) or level-2 ring of that wheel; a label that
reaches no category is dropped. Per clip, P = |true & pred| / |pred| and R = |true & pred| / |true| over
the category sets (a clip whose true set is empty is skipped; an empty predicted set scores 0 and 0);
P and R are averaged over clips, F = 2PR / (P + R) (0 when both are 0), and a level's figures are the
means of F, P and R over the wheels. This follows the organisers' scorer step by step, ties included
(the alphabetically first wheel word decides; a word listed twice on a wheel keeps its last place), and
reads the files with pandas' defaults as theirs does, so the figures agree to rounding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import InputError, MissingInput

LEVELS = ("level1", "level2")
SYNONYM_RUNS = 8
FILES_HINT = "wheel1..5.xlsx, synonym.xlsx and format.csv (MERTools MER2025/MER2025_Track23/emotion_wheel/)"


def label_list(value) -> list[str]:
    """A label list from its text form ("['happy', 'joyful']", "happy, joyful") or a sequence: split at
    quotes and commas as the organisers' parser does, items stripped, empty ones dropped."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return []
    text = str(value)
    text = text[1:] if text.startswith("[") else text
    text = text[:-1] if text.endswith("]") else text
    return [item.strip() for item in re.split("['\",]", text) if item.strip()]


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def read_rings(path: Path) -> dict[str, dict[str, str]]:
    """One wheel: level -> word -> category. An empty cell repeats the one above; at level 1 every word maps
    to its innermost ring, at level 2 to its second ring (a level-1 word to its alphabetically first
    level-2 word); a word listed twice keeps its last place in the sheet's order."""
    frame = _read(path, pd.read_excel, ("level1", "level2", "level3"))
    tree: dict[str, dict[str, list[str]]] = {}
    current = ["", "", ""]
    for row in frame[["level1", "level2", "level3"]].itertuples(index=False):
        current = [str(v if not _blank(v) else c).lower().strip() for v, c in zip(row, current)]
        tree.setdefault(current[0], {}).setdefault(current[1], []).append(current[2])
    rings: dict[str, dict[str, str]] = {"level1": {}, "level2": {}}
    for inner, middles in tree.items():
        rings["level1"][inner] = inner
        rings["level2"][inner] = sorted(middles)[0]
        for middle, outers in middles.items():
            rings["level1"][middle], rings["level2"][middle] = inner, middle
            for outer in outers:
                rings["level1"][outer], rings["level2"][outer] = inner, middle
    return rings


def read_forms(path: Path) -> dict[str, set[str]]:
    """format.csv: each surface form (and each base word itself) -> its base words."""
    frame = _read(path, pd.read_csv, ("name", "format"))
    forms: dict[str, set[str]] = {}
    for base, inflected in frame[["name", "format"]].itertuples(index=False):
        for form in label_list(inflected):
            forms.setdefault(form, set()).add(base)
        forms.setdefault(base, set()).add(base)
    return forms


def read_synonyms(path: Path) -> dict[str, set[str]]:
    """synonym.xlsx, its eight runs merged: each wheel word and each synonym -> the wheel words it stands for."""
    columns = [f"{kind}_run{k}" for k in range(1, SYNONYM_RUNS + 1) for kind in ("word", "synonym")]
    frame = _read(path, pd.read_excel, columns)
    heads: dict[str, set[str]] = {}
    for k in range(1, SYNONYM_RUNS + 1):
        for word, synonyms in frame[[f"word_run{k}", f"synonym_run{k}"]].itertuples(index=False):
            if _blank(word):
                raise InputError(f"{path}: an empty word_run{k} cell; every row names a wheel word in each run")
            word = str(word).strip().lower()
            for synonym in [word, *(s.strip().lower() for s in label_list(synonyms))]:
                heads.setdefault(synonym, set()).add(word)
    return heads


def _read(path: Path, reader, columns: Iterable[str]) -> pd.DataFrame:
    if not path.is_file():
        raise MissingInput(f"{path} does not exist: the emotion-wheel folder needs {FILES_HINT}")
    try:
        frame = reader(path)
    except Exception as err:  # a corrupt xlsx or csv surfaces as any of several library errors
        raise InputError(f"{path}: cannot be read ({err}); use the organisers' file as shipped") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: no column(s) {missing}; found {list(frame.columns)}")
    return frame


def _wheel_number(path: Path) -> int:
    return int(re.fullmatch(r"wheel(\d+)\.xlsx", path.name).group(1))


@dataclass(frozen=True)
class EmotionWheel:
    """The organisers' wheel files, read once: forms, synonyms and each wheel's rings."""
    forms: dict[str, set[str]]
    synonyms: dict[str, set[str]]
    wheels: dict[str, dict[str, dict[str, str]]]   # wheel name -> level -> word -> category

    @classmethod
    def read(cls, folder: str | Path) -> EmotionWheel:
        folder = Path(folder)
        if not folder.is_dir():
            raise MissingInput(f"{folder}: no such emotion-wheel folder; it must hold {FILES_HINT}")
        paths = sorted((p for p in folder.glob("wheel*.xlsx") if re.fullmatch(r"wheel\d+\.xlsx", p.name)),
                       key=_wheel_number)
        if not paths:
            raise MissingInput(f"{folder}: no wheel<N>.xlsx; the emotion-wheel folder must hold {FILES_HINT}")
        return cls(read_forms(folder / "format.csv"), read_synonyms(folder / "synonym.xlsx"),
                   {p.stem: read_rings(p) for p in paths})

    def category(self, label: str, wheel: str, level: str) -> str | None:
        """The wheel category of one label at `level`, or None when it reaches none."""
        ring = self.wheels[wheel][level]
        words = sorted(w for base in self.forms.get(label.lower().strip(), ()) for w in self.synonyms.get(base, ()))
        return next((ring[w] for w in words if w in ring), None)

    def categories(self, labels, wheel: str, level: str) -> set[str]:
        found = (self.category(label, wheel, level) for label in label_list(labels))
        return {c for c in found if c is not None}

    def score(self, truth: Mapping[str, object], predicted: Mapping[str, object]) -> dict:
        """Level-1 and level-2 figures of `predicted` against `truth` (clip name -> label list, as a list or
        its text form) over the clips of `truth`: per level, f, p, r (means over the wheels), the scored
        clip count `n` (clips whose truth reaches a category on that wheel) and the per-wheel figures."""
        missing = [name for name in truth if name not in predicted]
        if missing:
            raise InputError(f"the predictions lack {len(missing)} of the {len(truth)} scored clips "
                             f"(e.g. {', '.join(missing[:3])}); predict a label list for every clip")
        out = {}
        for level in LEVELS:
            per_wheel = {wheel: self._score_wheel(truth, predicted, wheel, level) for wheel in self.wheels}
            means = np.mean([[w["f"], w["p"], w["r"]] for w in per_wheel.values()], axis=0)
            out[level] = {"f": float(means[0]), "p": float(means[1]), "r": float(means[2]), "wheels": per_wheel}
        return out

    def _score_wheel(self, truth, predicted, wheel: str, level: str) -> dict:
        precision, recall = [], []
        for name, labels in truth.items():
            true = self.categories(labels, wheel, level)
            if not true:
                continue
            pred = self.categories(predicted[name], wheel, level)
            hit = len(true & pred)
            precision.append(hit / len(pred) if pred else 0.0)
            recall.append(hit / len(true) if pred else 0.0)
        p = float(np.mean(precision)) if precision else 0.0
        r = float(np.mean(recall)) if recall else 0.0
        return {"f": 2 * p * r / (p + r) if p + r else 0.0, "p": p, "r": r, "n": len(precision)}


def headline_figures(scores: dict) -> dict[str, float]:
    """The EW figures a run reports: level-1 and level-2 F (their mean is the MER 2025 ranking; MER 2026
    ranks by level 1), P and R."""
    return {f"{key}_{level}": scores[level][key] for level in LEVELS for key in ("f", "p", "r")} | {
        "f_mean": (scores["level1"]["f"] + scores["level2"]["f"]) / 2}
