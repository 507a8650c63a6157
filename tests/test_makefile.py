"""The Makefile's set-up choices, dry-run (`make -n`): which interpreter makes the venv, and where torch
comes from for each TORCH setting."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAMES = ("python3", "python3.11", "python3.12", "python3.13", "python3.14")


def make(tmp_path: Path, runs: dict[str, bool], *args: str, dry: bool = True) -> subprocess.CompletedProcess:
    """`make -n setup` (or `make setup`) in a copy of the Makefile, with fake interpreters first on PATH: each runs the real
    one (runs=True) or fails like a broken pyenv shim (runs=False)."""
    project, fakes = tmp_path / "project", tmp_path / "bin"
    project.mkdir()
    fakes.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, project / name)
    for name in NAMES:
        script = f'#!/bin/sh\nexec "{sys.executable}" "$@"\n' if runs.get(name) else "#!/bin/sh\nexit 127\n"
        (fakes / name).write_text(script)
        (fakes / name).chmod(0o755)
    env = os.environ | {"PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHON", None)
    command = ["make", *(["-n"] if dry else []), "setup", *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_first_interpreter_that_runs_makes_the_venv(tmp_path):
    done = make(tmp_path, {"python3.13": True, "python3.14": True})
    assert done.returncode == 0, done.stderr
    assert "\npython3.13 -m venv .venv\n" in done.stdout  # python3 .. python3.12 are broken shims here


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_no_suitable_interpreter_says_which_is_needed(tmp_path):
    done = make(tmp_path, {}, dry=False)  # stops at its first recipe line: nothing is installed
    assert done.returncode != 0 and not (tmp_path / "project/.venv").exists()
    assert "Python 3.11 to 3.14 is needed" in done.stderr and "PYTHON=python3.12" in done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("torch, expected", [
    ("auto", '--no-index --no-deps "torch>=2.6,<3"'),
    ("cpu", '--index-url https://download.pytorch.org/whl/cpu "torch>=2.6,<3"'),
    ("cuda", 'pip install --quiet "torch>=2.6,<3"'),
])
def test_torch_comes_from_the_chosen_place_before_the_project(tmp_path, torch, expected):
    done = make(tmp_path, {"python3": True}, f"TORCH={torch}")
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert done.stdout.index(expected) < done.stdout.index('pip install --quiet -e ".[test]"')
