"""End to end: real `dvc repro` of every stage on a small generated corpus, in a fresh git repo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "demo": {"n_train": 72, "n_test1": 24, "n_test2": 18, "n_test3_labelled": 12, "n_unlabelled": 30},
    "corrupt": {"robustness_snr_db": [0], "robustness_blur": [4]},
    "train": {"epochs": 40},
}


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def project_copy(dest: Path, overrides: dict) -> Path:
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, dest / name)
    for folder in ("pipeline", "stages"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], dest)
    run(["dvc", "init", "-q"], dest)
    shutil.copytree(REPO / ".dvc/plots", dest / ".dvc/plots")
    return dest


@pytest.fixture(scope="session")
def repro(tmp_path_factory) -> Path:
    work = project_copy(tmp_path_factory.mktemp("project"), SMALL)
    run(["dvc", "repro"], work)
    return work


def test_repro_writes_every_challenge_metric(repro):
    multi = json.loads((repro / "metrics/mer_multi.json").read_text())
    noise = json.loads((repro / "metrics/mer_noise.json").read_text())
    semi = json.loads((repro / "metrics/mer_semi.json").read_text())
    for figures in (multi, noise):
        assert {"f1_weighted", "accuracy", "valence_mse", "combined"} <= set(figures)
        assert figures["combined"] == pytest.approx(figures["f1_weighted"] - 0.25 * figures["valence_mse"])
    assert multi["n"] == 24 and noise["n"] == 18 and semi["n"] == 12
    assert "valence_mse" not in semi  # MER-SEMI is scored by F1 only
    submission = pd.read_csv(repro / "models/submissions/test1-pred.csv")
    assert list(submission.columns) == ["name", "discrete", "valence"] and len(submission) == 24


def test_second_repro_has_nothing_to_do(repro):
    out = run(["dvc", "repro"], repro).stdout
    assert "Running stage" not in out, out
    assert "up to date" in out


def test_a_fused_model_beats_every_unimodal_model(repro):
    runs = {r["subset"]: r["f1_weighted"] for r in json.loads((repro / "metrics/cv.json").read_text())["runs"]}
    fused = max(f1 for subset, f1 in runs.items() if len(subset) > 1)
    for single in ("A", "V", "T"):
        assert fused > runs[single], (single, runs)


def test_noise_hurts_audio_but_not_text(repro):
    curve = pd.read_csv(repro / "metrics/robustness.csv")
    audio = curve[curve["subset"] == "A"].set_index("snr")["f1_weighted"]
    text = curve[curve["subset"] == "T"].set_index("snr")["f1_weighted"]
    assert audio["0"] < audio["clean"]
    assert text["0"] == pytest.approx(text["clean"])  # transcripts are given, so noise cannot touch them
    # The blur view leaves the audio as it was: the audio-only model must score exactly as on clean clips.
    assert audio["blur4"] == pytest.approx(audio["clean"]) and text["blur4"] == pytest.approx(text["clean"])
