"""bench_release.py adds a later run to an earlier result only when the stage commands' code is the same:
runs of two revisions are not runs of one thing, and their spread would say nothing."""

import subprocess
import sys
from pathlib import Path

from pipeline.environment import code_revision

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_release  # noqa: E402


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_runs_are_added_only_to_a_result_of_the_same_stage_code(tmp_path, monkeypatch):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "train.py").write_text("EPOCHS = 100\n")
    (tmp_path / "README.md").write_text("about\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    monkeypatch.setattr(bench_release, "REPO", tmp_path)
    first = str(code_revision(tmp_path))
    assert not first.endswith("+dirty") and bench_release.code_changes(first) == ""
    assert bench_release.code_changes(None) == "no revision recorded"

    (tmp_path / "README.md").write_text("more about\n")          # not stage code
    git(tmp_path, "commit", "-qam", "docs")
    assert bench_release.code_changes(first) == ""

    (tmp_path / "pipeline" / "train.py").write_text("EPOCHS = 50\n")
    assert bench_release.code_changes(first) == f"recorded {first}, now {first}+dirty"
    git(tmp_path, "commit", "-qam", "fewer epochs")
    changed = bench_release.code_changes(first)
    assert changed.startswith(f"recorded {first}, now ") and not changed.endswith((first, "+dirty"))
