"""What is installed here: library versions recorded beside features and checkpoints, and which
optional modules are missing (for availability checks with an install hint)."""

from __future__ import annotations

from importlib import metadata


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions ("missing" when absent)."""
    found = {}
    for dist in distributions:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def missing_packages(*modules: str) -> list[str]:
    """Top-level modules from `modules` that cannot be imported here."""
    from importlib.util import find_spec
    return [m for m in modules if find_spec(m) is None]


def git_revision(folder: str = ".", code: tuple[str, ...] = ("pipeline", "stages")) -> str:
    """The commit checked out in `folder`, with "+dirty" when tracked files under `code` differ from it
    (outputs such as dvc.lock, rewritten while a pipeline runs, do not count), or "unknown"."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=10, check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", *code).strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
