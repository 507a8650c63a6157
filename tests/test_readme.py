"""The README is executable: every ```bash block marked `<!-- run -->` runs, in order, in a fresh `git clone`
of this repository, so a tracked file, a missing install step or a stale flag fails a test.

The clone is of HEAD: it tests the committed tree, not uncommitted changes. It runs as a new user would:
its own `.venv` made by `make setup` (pip installs from the package registries), with the clone's venv
first on PATH (the README's commands after the quick start assume it is active). The quick start (`make repro`,
`make test`) runs on the committed params, as a user's would; then, to keep the rest (a second repro, five
experiments) to minutes, the demo corpus becomes the sweep tests' tiny one, committed in the clone.
MER_README_FULL=1 keeps the committed params throughout.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dvc_project import REPO, commit, override_params
from test_sweeps import TINY

README = REPO / "README.md"
MARKED = re.compile(r"<!-- (run|not run: [^>]+?) -->\n```bash\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    """(marker, commands) of every marked bash block, in README order."""
    return MARKED.findall(README.read_text())


def runnable() -> list[str]:
    return [code for marker, code in blocks() if marker == "run"]


def test_every_bash_block_says_whether_it_is_run():
    text = README.read_text()
    assert len(blocks()) == text.count("```bash\n"), "a ```bash block without <!-- run --> or <!-- not run: why -->"
    assert all(len(m) > len("not run: ") for m, _ in blocks() if m != "run")  # an exclusion says why


def test_the_runnable_blocks_include_the_quick_start_and_the_sweep():
    commands = runnable()
    assert commands and commands[0].startswith("make repro")
    assert any("--queue -C featurestore" in c and "--run-all" in c for c in commands)


def test_folders_copied_into_queued_experiments_hold_no_tracked_file():
    """`dvc exp run -C DIR` copies DIR into a checkout of the commit; a tracked file there makes the copy fail."""
    folders = {f for code in runnable() for f in re.findall(r"\s-C\s+(\S+)", code)}
    assert folders
    for folder in folders:
        tracked = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True)
        assert not tracked.stdout, f"tracked under {folder}/: {tracked.stdout}"


def user_env(clone: Path) -> dict[str, str]:
    """A shell of a new user whose venv is the clone's own: no other venv, no project variables."""
    here = str(Path(sys.executable).parent)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != here and not p.endswith("/.venv/bin")]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "HF_HUB_OFFLINE", "DVC_NO_ANALYTICS")}
    return env | {"PATH": os.pathsep.join([str(clone / ".venv/bin"), *path])}


def shrink(clone: Path) -> None:
    """The tiny demo corpus, committed with whatever the quick start left."""
    override_params(clone / "params.yaml", clone / "params.yaml", TINY)
    commit(clone, "a tiny demo corpus")


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_readme_commands_run_from_a_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = user_env(clone)
    for i, code in enumerate(runnable()):
        if i == 1 and os.environ.get("MER_README_FULL", "") in ("", "0"):
            shrink(clone)
        start = time.monotonic()
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=clone, env=env, capture_output=True,
                              text=True)
        print(f"{time.monotonic() - start:6.0f} s  {code.splitlines()[0]}", flush=True)
        assert done.returncode == 0, f"{code}\nfailed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
        if "--run-all" in code:  # the queue ran: a failed experiment leaves no experiment behind
            shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=clone, env=env, check=True,
                                              capture_output=True, text=True).stdout)
            names = [r["name"] for c in shown for e in c.get("experiments") or [] for r in e["revs"] if r.get("name")]
            assert len(names) >= 5, names  # the workspace experiment and the 2 x 2 grid
            assert "Running stage 'extract'" not in done.stdout + done.stderr
    page = (clone / "dvc_plots/index.html").read_text()
    assert "cdn.jsdelivr" not in page and "window.vegaEmbed=" in page  # `dvc plots show` drew offline
