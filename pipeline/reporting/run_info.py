"""The report's run header: what produced these figures (git revision and whether the sources had
uncommitted changes, corpus, items per split, params that differ from the code's defaults, date, machine)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pipeline.config import SECTIONS, build, load_params

# What `dvc repro` itself rewrites: changes there do not make the sources dirty.
OUTPUTS = ("dvc.lock", "metrics/", "reports/", "models/", "data/")


def git_state(root: Path) -> str:
    """"<revision> (clean)" or "<revision> + uncommitted changes in a, b", or why there is none."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        return "not a git checkout"
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").stdout.splitlines()]
    changed = [path for path in changed if not path.startswith(OUTPUTS)]
    if not changed:
        return f"{head.stdout.strip()} (clean)"
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return f"{head.stdout.strip()} + uncommitted changes in {', '.join(changed[:5])}{more}"


def changed_params(params: Path) -> list[tuple[str, str]]:
    """(section.key, value) for every params.yaml value that differs from the config dataclass's default."""
    rows = []
    for section, raw in load_params(params).items():
        ours = dataclasses.asdict(build(SECTIONS[section], raw or {}, section))
        default = dataclasses.asdict(build(SECTIONS[section], {}, section))
        rows += [(f"{section}.{key}", json.dumps(value)) for key, value in ours.items() if value != default[key]]
    return rows


def split_counts(manifest: Path) -> str:
    """"train 120, test1 40, ..." with the labelled count where some items have no label."""
    rows = pd.read_parquet(manifest, columns=["split", "label"])
    parts = []
    for split, group in rows.groupby("split", sort=False):
        labelled = int(group["label"].notna().sum())
        parts.append(f"{split} {len(group)}" + ("" if labelled == len(group) else f" ({labelled} labelled)"))
    return ", ".join(parts)


def run_rows(root: Path, params: Path | None, manifest: Path | None) -> list[tuple[str, str]]:
    """The header as (what, value) rows; inputs that are missing say so."""
    rows = [("git revision", git_state(root)),
            ("written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("machine", f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, "
                        f"{platform.system()} {platform.release()}, Python {platform.python_version()}")]
    if params is not None and params.is_file():
        prepare = build(SECTIONS["prepare"], load_params(params).get("prepare") or {}, "prepare")
        rows.append(("corpus", f"{prepare.adapter} at {prepare.root}"))
    if manifest is not None and manifest.is_file():
        rows.append(("items per split", split_counts(manifest)))
    else:
        rows.append(("items per split", f"{manifest} not found (run prepare)"))
    if params is not None and params.is_file():
        changed = changed_params(params)
        rows += [(f"param {key}", value) for key, value in changed] or [("params", "all at the code's defaults")]
    else:
        rows.append(("params", f"{params} not found"))
    return rows
