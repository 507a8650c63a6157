"""A copy of the project in a fresh git + DVC repository, and a checked subprocess runner, for tests
that run real `dvc` commands."""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.config import SECTIONS

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` with this venv's tools first on PATH; with check, a failure fails the test with its output."""
    tools_first = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = os.environ | {"PATH": tools_first, "HF_HUB_OFFLINE": "1"} | (env or {})
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0 or not check, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def project_copy(dest: Path, overrides: dict) -> Path:
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, dest / name)
    for folder in ("pipeline", "stages"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    override_params(REPO / "params.yaml", dest / "params.yaml", overrides)
    run(["git", "init", "-q"], dest)
    commit(dest, "init")
    run(["dvc", "init", "-q"], dest)
    shutil.copytree(REPO / ".dvc/plots", dest / ".dvc/plots")  # the project's own plot templates
    return dest


def override_params(source: Path, dest: Path, overrides: dict) -> None:
    """source's params with overrides ({section: {key: value}}) written to dest."""
    params = yaml.safe_load(source.read_text())
    for section, values in overrides.items():
        params[section].update({key: params[section][key] | value if key in subsections(section) else value
                                for key, value in values.items()})
    dest.write_text(yaml.safe_dump(params, sort_keys=False))


def subsections(section: str) -> set[str]:
    """The keys of a params section that are sections of their own (train.fusion, train.lightgbm, ...): an override
    of one sets only the keys it names, as `dvc exp run -S train.fusion.lr=...` needs them all in params.yaml;
    any other mapping (train.features, encode.features) is replaced whole."""
    declared = SECTIONS.get(section)
    return {f.name for f in dataclasses.fields(declared) if dataclasses.is_dataclass(f.default_factory)} if declared else set()


def commit(repo: Path, message: str) -> None:
    """Commit everything in the work tree."""
    run(["git", "add", "-A"], repo)
    # A fixed date: the same files give the same commit id in every copy, as checkpoints record it.
    date = {"GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message], repo, date)
