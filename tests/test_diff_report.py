"""`mer diff-report`: real `dvc metrics diff` / `dvc params diff` between commits of a small DVC repo."""

import json
import re
from pathlib import Path

import pytest
import yaml
from dvc_project import commit, run
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.evaluation import headline

DVC_YAML = {"stages": {"train": {"cmd": "true", "params": ["train.lr", "train.epochs"],
                                 "outs": [{"metrics/mer_multi.json": {"cache": False}},
                                          {"metrics/calibration.json": {"cache": False}}],
                                 "metrics": [{"metrics/headline.json": {"cache": False}}]}}}


def write_state(repo: Path, lr: float, multi: dict | None, ece: float = 0.1) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": lr, "epochs": 100}}))
    if multi is not None:
        (repo / "metrics").mkdir(exist_ok=True)
        (repo / "metrics/mer_multi.json").write_text(json.dumps(multi))
        (repo / "metrics/calibration.json").write_text(json.dumps({"oof_ece_raw": ece}))
        cv = {"combined": 0.3}
        (repo / "metrics/headline.json").write_text(json.dumps(headline({"mer_multi": multi}, cv)))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """Three commits: params only (no metrics yet), a first run, a run with another learning rate."""
    repo = tmp_path_factory.mktemp("diffrepo")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    write_state(repo, 0.001, None)
    commit(repo, "no metrics yet")
    write_state(repo, 0.001, {"f1_weighted": 0.5, "valence_mse": 2.0, "combined": 0.0, "subset": "AVT"})
    commit(repo, "first run")
    write_state(repo, 0.01, {"f1_weighted": 0.55, "valence_mse": 2.2, "combined": 0.002, "subset": "AVT"}, ece=0.05)
    commit(repo, "higher learning rate")
    return repo


def diff_report(repo: Path, *args: str):
    return CliRunner().invoke(app, ["diff-report", *args, "--repo", str(repo)])


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| figure")]


def test_headline_first_with_directions(history):
    result = diff_report(history, "HEAD~1")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    # the challenge score first; a base near zero gets no percentage
    assert rows[0] == "| MER-MULTI F1-0.25MSE | 0.0000 | 0.0020 | +0.0020 | better (↑) |"
    assert "| MER-MULTI F1 | 0.5000 | 0.5500 | +0.0500 (+10.0%) | better (↑) |" in rows
    assert "| MER-MULTI MSE | 2.0000 | 2.2000 | +0.2000 (+10.0%) | worse (↓) |" in rows
    assert "| CV F1-0.25MSE | 0.3000 | 0.3000 | +0.0000 (+0.0%) | same |" in rows
    assert "| MER-NOISE F1 | — | — | — |  |" in rows  # not scored on either side
    # the changed params next, then the detail folded away
    assert result.output.index("| train.lr | 0.001 | 0.01 |") < result.output.index("<details>")
    assert "train.epochs" not in result.output
    detail = result.output[result.output.index("<details>"):]
    assert "| calibration.json | oof_ece_raw | 0.1000 | 0.0500 | -0.0500 (-50.0%) | better (↓) |" in detail
    assert "| mer_multi.json | f1_weighted | 0.5000 | 0.5500 |" in detail
    assert "subset" not in detail and re.search(r"<summary>Detail: \d+ values of 2 metrics files changed", detail)
    assert detail.rstrip().endswith("</details>")


def test_all_lists_unchanged_detail(history):
    everything = diff_report(history, "HEAD~1", "--all")
    assert "| mer_multi.json | subset | AVT | AVT | changed | same |" in everything.output


def test_base_without_metrics_is_no_baseline_yet(history):
    result = diff_report(history, "HEAD~2")
    assert result.exit_code == 0, result.output
    assert "No baseline yet" in result.output and "MER-MULTI" not in result.output
    assert "| train.lr | 0.001 | 0.01 |" in result.output


def test_unknown_base_is_a_usage_error(history):
    result = diff_report(history, "no-such-branch")
    assert result.exit_code == 2
    assert "no-such-branch" in result.output
