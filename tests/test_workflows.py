"""The GitHub Actions workflows pass a workflow-schema linter, and the PR metrics workflow does what it says."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github/workflows").glob("*.yml"))
PR_METRICS = WORKFLOWS[0].parent / "pr-metrics.yml"


def lint(path: Path) -> subprocess.CompletedProcess:
    # check-jsonschema ships the GitHub workflow schema, so this runs offline
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_the_linter(workflow):
    done = lint(workflow)
    assert done.returncode == 0, done.stdout + done.stderr


def test_linter_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(PR_METRICS.read_text().replace("runs-on:", "run-on:"))
    assert lint(broken).returncode != 0


def test_pr_metrics_workflow_comments_the_diff_against_the_base_branch():
    text = PR_METRICS.read_text()
    flow = yaml.safe_load(text)
    assert set(flow[True]) == {"pull_request"}  # YAML 1.1 reads the key `on` as True
    steps = flow["jobs"]["metrics-diff"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0  # full history: the base branch must be there
    assert 'mer diff-report "origin/$BASE_REF"' in text
    assert flow["jobs"]["metrics-diff"]["env"]["BASE_REF"] == "${{ github.base_ref }}"
    marker = "<!-- mer-pr-metrics -->"
    assert text.count(marker) == 2  # written into the comment, and looked for to update it in place
    assert "updateComment" in text and "createComment" in text
    assert "make setup TORCH=cpu" in text  # never PyPI's multi-GB CUDA build of torch
