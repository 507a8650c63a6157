"""Challenge scoring on a MER-2023-shaped set of predictions, fast (no clips): every labelled item counts
(items a subset cannot see are scored from the training prior and counted as fallback), MER-NOISE on
test2 as released or on a corrupted view, and the figures recomputed from the submission files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from mer2023_release import submission_figures

from pipeline.config import ConfigError
from pipeline.labels import MER_LABELS, label_index, logit_columns
from pipeline.training.metrics import over_seeds_by_subset
from stages import evaluate

# labelled / unlabelled items per split, as the release's proportions shrunk (test3 mostly unlabelled)
SHAPE = {"train": (60, 0), "test1": (41, 0), "test2": (37, 0), "test3": (23, 50)}
LABELLED = {split: n for split, (n, _) in SHAPE.items()}


def manifest() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    records = []
    for split, (labelled, unlabelled) in SHAPE.items():
        for i in range(labelled + unlabelled):
            label = MER_LABELS[rng.integers(6)] if i < labelled else None
            valence = float(rng.integers(-20, 21) / 4) if label and split != "test3" else np.nan  # steps of 0.25
            records.append({"sample_id": f"{'sample' if label else 'samplenew'}_{split}{i:05d}", "split": split,
                            "label": label, "valence": valence, "true_label": label})
    return pd.DataFrame(records)


def predictions(rows: pd.DataFrame, tests: dict[str, str]) -> pd.DataFrame:
    """Subsets T and AVT, one seed; T has no input for every 5th item (fallback); valence stays in [-5, 5]."""
    rng = np.random.default_rng(1)
    frames = []
    for subset in ("T", "AVT"):
        for test, split in tests.items():
            items = rows[rows["split"] == split]
            truth = np.eye(6)[np.maximum(label_index(items["label"], MER_LABELS), 0)]
            frame = pd.DataFrame(2 * truth + rng.normal(scale=1.2, size=truth.shape), columns=logit_columns(MER_LABELS))
            frame.insert(0, "sample_id", items["sample_id"].to_numpy())
            frame.insert(0, "test", test)
            frame.insert(0, "seed", 0)
            frame.insert(0, "subset", subset)
            frame["valence"] = np.clip(np.nan_to_num(items["valence"].to_numpy()) + rng.normal(size=len(items)), -5, 5)
            frame["fallback"] = (subset == "T") & (np.arange(len(items)) % 5 == 0)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def scored(tmp_path):
    """evaluate.run on the release shape with the README's recipe: no corrupted view, noise_view clean."""
    def run(noise_view: str = "clean", views: tuple[str, ...] = ()):
        rows = manifest()
        tests = {"train-oof": "train", "test1": "test1", "test2": "test2", "test3": "test3"}
        tests |= {f"test2@{v}": "test2" for v in views}
        rows.to_parquet(tmp_path / "manifest.parquet")
        predictions(rows, tests).to_parquet(tmp_path / "predictions.parquet")
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"noise_view": noise_view}}))
        runs = [{"subset": s, "seed": 0, "items": 60, "f1_weighted": 0.5} for s in ("T", "AVT")]
        cv = {"main_subset": "AVT", "runs": runs, "over_seeds": over_seeds_by_subset(runs)}  # as train writes it
        (tmp_path / "cv.json").write_text(json.dumps(cv))
        evaluate.run(tmp_path / "params.yaml", manifest=tmp_path / "manifest.parquet",
                     predictions=tmp_path / "predictions.parquet", semi_predictions=tmp_path / "predictions.parquet",
                     cv_metrics=tmp_path / "cv.json", out=tmp_path / "metrics", submissions=tmp_path / "submissions")
        read = lambda name: json.loads((tmp_path / "metrics" / f"{name}.json").read_text())  # noqa: E731
        return rows, read, tmp_path / "submissions"
    return run


def test_every_labelled_item_counts_and_fallbacks_are_counted(scored):
    rows, read, _ = scored()
    for name, split in (("mer_multi", "test1"), ("mer_noise", "test2"), ("mer_semi", "test3")):
        assert read(name)["n"] == LABELLED[split] and read(name)["n_fallback"] == 0, name
    ablation = read("ablation")
    for key, split in (("multi", "test1"), ("noise", "test2"), ("semi", "test3")):
        assert ablation["T"][f"{key}_n"] == ablation["AVT"][f"{key}_n"] == LABELLED[split]
        assert ablation["T"][f"{key}_fallback"] == len(range(0, LABELLED[split], 5)) and ablation["AVT"][f"{key}_fallback"] == 0


def test_figures_recomputed_from_the_submissions_equal_the_metrics(scored):
    rows, read, submissions = scored()
    for name, split in (("mer_multi", "test1"), ("mer_noise", "test2"), ("mer_semi", "test3")):
        submission = pd.read_csv(submissions / f"{split}-pred.csv")
        assert list(submission.columns) == ["name", "discrete", "valence"]
        assert len(submission) == (rows["split"] == split).sum()  # unlabelled items are submitted too
        mine = rows[(rows["split"] == split) & rows["label"].notna()]
        truth = mine.rename(columns={"sample_id": "name", "label": "discrete"})
        truth = truth[["name", "discrete"] if split == "test3" else ["name", "discrete", "valence"]]
        expected, written = submission_figures(submission, truth), read(name)
        assert set(expected) <= set(written)
        for key, value in expected.items():
            assert written[key] == pytest.approx(value, abs=1e-9, rel=0), (name, key)


def test_noise_view_names_test2_as_released_or_a_corrupted_view(scored):
    _, read, _ = scored("clean", views=("noisy",))
    clean = read("mer_noise")
    _, read, _ = scored("noisy", views=("noisy",))
    assert read("mer_noise")["n"] == clean["n"] == LABELLED["test2"] and read("mer_noise") != clean
    with pytest.raises(ConfigError, match=r"no view 'foggy'.*clean, noisy"):
        scored("foggy", views=("noisy",))
    with pytest.raises(ConfigError, match=r"the views that exist: clean \("):
        scored("noisy")  # corrupt.splits: [] leaves test2 as released only
