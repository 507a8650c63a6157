"""A corpus laid out as the MER 2023 release through a real `dvc repro` with the README's recipe: every
labelled item of test1, test2 and test3 is scored, MER-NOISE on test2 as released and on the `noisy` view,
and the challenge figures recomputed from the submission files equal metrics/mer_*.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc_project import project_copy, run
from mer2023_release import labelled_counts, submission_figures, write_release

from pipeline.config import DemoConfig
from pipeline.demo.corpus import generate_corpus

pytestmark = pytest.mark.slow

# 240 clips: a few hundred, as small and short as still gives every split labelled items of every class
SPEC = DemoConfig(n_train=90, n_test1=36, n_test2=36, n_test3_labelled=30, n_unlabelled=48, seconds=1.0, fps=10)
RECIPE = {"prepare": {"adapter": "mer2023", "root": "data/release"},  # the README's recipe, as written there
          "corrupt": {"splits": []}, "evaluate": {"noise_view": "clean"}}
FAST = {"corrupt": {"robustness_snr_db": [], "robustness_blur": []},
        "train": {"folds": 3, "fusion": {"epochs": 15}, "ablation": ["T", "AVT"]}}
CHALLENGES = {"test1": "mer_multi", "test2": "mer_noise", "test3": "mer_semi"}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    demo = tmp_path_factory.mktemp("demo")
    generate_corpus(demo, SPEC, progress=False, workers=2)
    rows = pd.read_csv(demo / "manifest.csv", dtype=str, keep_default_na=False)
    overrides = {section: RECIPE.get(section, {}) | FAST.get(section, {}) for section in RECIPE | FAST}
    work = project_copy(tmp_path_factory.mktemp("project"), overrides)
    rows = write_release(demo, rows, work / "data" / "release")
    run(["dvc", "repro", "evaluate"], work)
    return work, rows


def metrics(work: Path, name: str) -> dict:
    return json.loads((work / "metrics" / f"{name}.json").read_text())


def set_params(work: Path, section: str, values: dict) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_every_labelled_item_of_every_test_split_is_scored(release):
    work, rows = release
    counts = labelled_counts(rows)
    manifest = pd.read_parquet(work / "data" / "manifest.parquet")
    assert manifest.groupby("split")["label"].count().to_dict() == counts
    for split, name in CHALLENGES.items():
        assert metrics(work, name)["n"] == counts[split] > 0, name
    ablation = metrics(work, "ablation")
    empty = rows["sentence"].isna() | (rows["sentence"] == "")
    for key, split in (("multi", "test1"), ("noise", "test2"), ("semi", "test3")):
        assert ablation["AVT"][f"{key}_n"] == ablation["T"][f"{key}_n"] == counts[split]
        assert ablation["AVT"][f"{key}_fallback"] == 0  # every clip has its audio
        # text alone: the items with a NaN or empty sentence come from the training prior, and count
        no_text = int((empty & (rows["split"] == split) & (rows["label"] != "")).sum())
        assert ablation["T"][f"{key}_fallback"] >= no_text > 0, key


def test_challenge_figures_recomputed_from_the_submissions(release):
    work, rows = release
    for split, name in CHALLENGES.items():
        submission = pd.read_csv(work / "models" / "submissions" / f"{split}-pred.csv")
        assert sorted(submission["name"]) == sorted(rows.loc[rows["split"] == split, "name"])  # every item
        truth = pd.read_csv(work / "data" / "release" / f"{split}-label.csv")
        expected, written = submission_figures(submission, truth), metrics(work, name)
        for key, value in expected.items():
            assert written[key] == pytest.approx(value, abs=1e-9), (name, key)
        assert submission["valence"].between(-5, 5).all()


def test_noise_view_clean_the_noisy_view_and_an_unknown_view(release):
    work, rows = release
    clean = metrics(work, "mer_noise")
    set_params(work, "corrupt", {"splits": ["test2"]})
    set_params(work, "evaluate", {"noise_view": "noisy"})
    run(["dvc", "repro", "evaluate"], work)
    noisy = metrics(work, "mer_noise")
    assert noisy["n"] == clean["n"] == labelled_counts(rows)["test2"]
    tests = set(pd.read_parquet(work / "models" / "predictions.parquet", columns=["test"])["test"])
    assert {"test2", "test2@noisy"} <= tests and noisy != clean
    set_params(work, "evaluate", {"noise_view": "foggy"})
    done = run(["dvc", "repro", "evaluate"], work, check=False)
    assert done.returncode != 0
    assert "evaluate.noise_view" in done.stderr + done.stdout and "clean, noisy" in done.stderr + done.stdout
