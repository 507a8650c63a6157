"""Evaluation protocols (evaluate.protocol): which challenge track a run is scored as, its headline and the
organisers' submission files.

- mer2023: MER-MULTI, MER-NOISE (F1 - 0.25 MSE, with valence) and MER-SEMI (F1 on test3's labelled items),
  as MER 2023 scores them; submissions name, discrete, valence per test split.
- semi: MER 2024/2025 MER-SEMI (and MER 2026 MER-Cross): weighted F1 and accuracy of the last
  pseudo-labelling round on the labelled candidates (test1), no valence; `submission.csv` (name, discrete)
  for exactly the candidates.
- fg: MER 2025/2026 MER-FG: the emotion-wheel metric (pipeline.emotion_wheel, wheel folder evaluate.wheel)
  of the label-list model's lists on the candidates with a true list; `submission.npz` (arrays filenames,
  fileitems: one "['word', ...]" string per candidate) and `submission.csv` as semi.

Every protocol's evaluate also writes the MER 2023 files (mer_*.json, ablation, ...), and metrics/track.json
holds the chosen protocol's figures; metrics/headline.json leads with its figures (evaluation.HEADLINES).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import evaluation as ev
from pipeline.config import ConfigError, EvaluateConfig
from pipeline.errors import InputError
from pipeline.labels import CANDIDATE_SPLIT, LIST_COLUMN, split_list
from pipeline.registry import Component, Registry


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass
class Scored:
    """What every protocol scores from: the manifest, the joined predictions of train (supervised) and of the
    last pseudo-labelling round (semi), the main subset, the candidates' label lists and the settings."""
    rows: pd.DataFrame
    supervised: pd.DataFrame
    semi: pd.DataFrame
    main: str
    lists: pd.DataFrame
    cfg: EvaluateConfig


class Protocol(Component):
    kind = "evaluation protocol"
    Config = NoOptions

    @classmethod
    def figures(cls, s: Scored) -> dict:
        """metrics/track.json: the track's figures."""
        return {}

    @classmethod
    def headline(cls, track: dict, challenge: dict, cv_main: dict) -> dict:
        """metrics/headline.json (evaluation.HEADLINES[name] keys, 3 decimals)."""
        return ev.headline(challenge, cv_main)

    @classmethod
    def submit(cls, s: Scored, folder: Path) -> None:
        """The organisers' submission files of the track, into `folder`."""


class Mer2023(Protocol):
    """MER 2023: MER-MULTI and MER-NOISE (F1 - 0.25 valence MSE), MER-SEMI (F1 on test3)."""
    name = "mer2023"


class Semi(Protocol):
    """MER 2024-2026 Track 1: weighted F1 and accuracy on the labelled candidates (test1), no valence."""
    name = "semi"

    @classmethod
    def figures(cls, s: Scored) -> dict:
        return ev.score(s.semi, s.main, CANDIDATE_SPLIT, with_valence=False) | {
            "f1_weighted_labelled_only": ev.score(s.supervised, s.main, CANDIDATE_SPLIT, with_valence=False).get(
                "f1_weighted")}

    @classmethod
    def headline(cls, track: dict, challenge: dict, cv_main: dict) -> dict:
        return _rounded(cls.name, {"semi": track.get("f1_weighted"), "semiAcc": track.get("accuracy"),
                                   "cvF1": cv_main.get("f1_weighted")})

    @classmethod
    def submit(cls, s: Scored, folder: Path) -> None:
        names = candidates(s.rows)
        table = ev.submission(s.semi, s.main, CANDIDATE_SPLIT)[["name", "discrete"]]
        table = table.set_index("name").reindex(names)
        if table["discrete"].isna().any():
            raise InputError(f"the predictions lack {int(table['discrete'].isna().sum())} of the {len(names)} "
                             f"candidates ({CANDIDATE_SPLIT}): re-run train and pseudolabel on this manifest")
        table.reset_index().to_csv(folder / "submission.csv", index=False)


class FineGrained(Protocol):
    """MER 2025/2026 Track 2 (MER-FG): the emotion-wheel metric of predicted label lists on the candidates."""
    name = "fg"

    @classmethod
    def figures(cls, s: Scored) -> dict:
        from pipeline.emotion_wheel import EmotionWheel

        if not s.cfg.wheel:
            raise ConfigError("evaluate.wheel: the fg protocol scores with the emotion wheel; set it to the folder of "
                              "the organisers' wheel1..5.xlsx, synonym.xlsx and format.csv")
        truth = {r.sample_id: split_list(r.label_list) for r in s.rows[s.rows["split"] == CANDIDATE_SPLIT].itertuples()
                 if split_list(getattr(r, LIST_COLUMN, None))} if LIST_COLUMN in s.rows else {}
        if not truth:
            return {"n": 0}
        predicted = _predicted(s)
        scores = EmotionWheel.read(s.cfg.wheel).score(truth, predicted)
        return {"n": len(truth), **scores}

    @classmethod
    def headline(cls, track: dict, challenge: dict, cv_main: dict) -> dict:
        if not track.get("n"):
            return _rounded(cls.name, {})
        f1, f2 = track["level1"]["f"], track["level2"]["f"]
        return _rounded(cls.name, {"fg": (f1 + f2) / 2, "fgL1": f1, "fgL2": f2, "cvF1": cv_main.get("f1_weighted")})

    @classmethod
    def submit(cls, s: Scored, folder: Path) -> None:
        Semi.submit(s, folder)
        names = candidates(s.rows)
        predicted = _predicted(s)
        missing = [n for n in names if n not in predicted]
        if missing:
            raise InputError(f"no label list for {len(missing)} of the {len(names)} candidates (e.g. {missing[0]}): "
                             f"the manifest has no label lists to train on, or train ran on another manifest")
        np.savez(folder / "submission.npz", filenames=np.array(names),
                 fileitems=np.array([str(predicted[n]) for n in names]))


def candidates(rows: pd.DataFrame) -> list[str]:
    return rows.loc[rows["split"] == CANDIDATE_SPLIT, "sample_id"].tolist()


def _predicted(s: Scored) -> dict[str, list[str]]:
    lists = s.lists[s.lists["test"] == CANDIDATE_SPLIT]
    return {name: split_list(words) for name, words in zip(lists["sample_id"], lists[LIST_COLUMN])}


def _rounded(name: str, values: dict) -> dict:
    return {key: None if values.get(key) is None else round(float(values[key]), 3) for key in ev.HEADLINES[name]}


PROTOCOLS = Registry("evaluate.protocol", Mer2023, Semi, FineGrained)
