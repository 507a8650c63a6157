"""`mer diff-report`: real `dvc metrics diff` / `dvc params diff` between commits of a small DVC repo."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dvc_project import commit, run
from pipeline.cli import app

DVC_YAML = {"stages": {"train": {"cmd": "true", "params": ["train.lr", "train.epochs"],
                                 "metrics": [{"metrics/mer_multi.json": {"cache": False}}]}}}


def write_state(repo: Path, lr: float, metrics: dict | None) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": lr, "epochs": 100}}))
    if metrics is not None:
        (repo / "metrics").mkdir(exist_ok=True)
        (repo / "metrics/mer_multi.json").write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """Three commits: params only (no metrics yet), a first run, a run with another learning rate."""
    repo = tmp_path_factory.mktemp("diffrepo")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    write_state(repo, 0.001, None)
    commit(repo, "no metrics yet")
    write_state(repo, 0.001, {"f1_weighted": 0.5, "valence_mse": 2.0, "subset": "AVT"})
    commit(repo, "first run")
    write_state(repo, 0.01, {"f1_weighted": 0.55, "valence_mse": 2.0, "subset": "AVT"})
    commit(repo, "higher learning rate")
    return repo


def diff_report(repo: Path, *args: str):
    return CliRunner().invoke(app, ["diff-report", *args, "--repo", str(repo)])


def test_changed_metrics_and_params_with_deltas(history):
    result = diff_report(history, "HEAD~1")
    assert result.exit_code == 0, result.output
    assert "| mer_multi.json | f1_weighted | 0.5000 | 0.5500 | +0.0500 (+10.0%) |" in result.output
    assert "valence_mse" not in result.output  # unchanged metrics are only counted
    assert "2 metric values unchanged." in result.output
    assert "| train.lr | 0.001 | 0.01 |" in result.output
    assert "train.epochs" not in result.output
    everything = diff_report(history, "HEAD~1", "--all")
    assert "| mer_multi.json | valence_mse | 2.0000 | 2.0000 | +0.0000 (+0.0%) |" in everything.output


def test_base_without_metrics_is_no_baseline_yet(history):
    result = diff_report(history, "HEAD~2")
    assert result.exit_code == 0, result.output
    assert "No baseline yet" in result.output and "| mer_multi.json |" not in result.output
    assert "| train.lr | 0.001 | 0.01 |" in result.output


def test_unknown_base_is_a_usage_error(history):
    result = diff_report(history, "no-such-branch")
    assert result.exit_code == 2
    assert "no-such-branch" in result.output
