"""What is installed here: library versions recorded beside features and checkpoints, which optional
modules are missing (for availability checks with an install hint), and the C allocator's setting."""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from importlib.metadata import packages_distributions
from pathlib import Path


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions ("missing" when absent)."""
    found = {}
    for dist in distributions:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def folder_digest(folder: str | Path) -> str:
    """sha256 over a folder's files, names and contents ("missing" when there is no such folder): model
    weights given by path, so weights replaced in place are new weights. Dot-files (a download's
    metadata) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            with open(path, "rb") as fh:
                digest.update(f"{rel.as_posix()}\0".encode() + hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def distributions(modules) -> list[str]:
    """The distribution installing each top-level module (cv2 -> opencv-python-headless); a module not
    installed stands for itself."""
    found = _installed_by()
    return [found.get(m, [m])[0] for m in modules]


@cache
def _installed_by() -> dict[str, list[str]]:
    return packages_distributions()


def missing_packages(*modules: str) -> list[str]:
    """Top-level modules from `modules` that cannot be imported here."""
    from importlib.util import find_spec
    return [m for m in modules if find_spec(m) is None]


# What makes the outputs: a commit that only records outputs (dvc.lock, metrics/, reports/) does not move
# the revision, so a fresh clone of that commit writes the same revision into the same outputs.
CODE = ("pipeline", "stages", "dvc.yaml", "params.yaml", "pyproject.toml")


@dataclass(frozen=True)
class Revision:
    commit: str                  # the last commit that changed CODE, or "unknown" outside a git checkout
    date: str = ""               # its commit date (ISO 8601)
    changed: tuple[str, ...] = ()  # CODE paths with uncommitted changes

    def __str__(self) -> str:
        return self.commit + ("+dirty" if self.changed else "")


def code_revision(folder: str | Path = ".") -> Revision:
    """The revision of the code and config that produced a run's outputs (see CODE)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout
    try:
        commit, _, date = git("log", "-1", "--format=%H %cI", "--", *CODE).strip().partition(" ")
        status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE).splitlines()
    except (OSError, subprocess.SubprocessError):
        return Revision("unknown")
    return Revision(commit or "unknown", date, tuple(line[3:] for line in status))


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK = 4 << 20


def return_large_frees() -> None:
    """Have glibc give every freed block of 4 MiB or more back to the system at once. Its default threshold
    rises with each large free, up to 32 MiB, and from then on the 16-32 MiB chunks of a prediction over a
    release's 125,000 test items are carved from the heap and stay there, fragmented: the train stage's peak
    memory grew by 1.7 GB that way (benchmarks/bench_release.py). A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
