"""The report's run header: what produced these figures (git revision and whether the sources had
uncommitted changes, and its date; corpus, items per split, params that differ from the code's defaults;
the architecture and libraries that made them)."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

from pipeline.config import SECTIONS, build, load_params
from pipeline.environment import code_revision, versions
from pipeline.inputs import PREPARE, read_table


def git_state(root: Path) -> str:
    """"<revision> (clean)" or "<revision> + uncommitted changes in a, b", or why there is none."""
    revision = code_revision(root)
    if revision.commit == "unknown":
        return "not a git checkout"
    if not revision.changed:
        return f"{revision.commit[:12]} (clean)"
    more = f" and {len(revision.changed) - 5} more" if len(revision.changed) > 5 else ""
    return f"{revision.commit[:12]} + uncommitted changes in {', '.join(revision.changed[:5])}{more}"


def changed_params(params: Path) -> list[tuple[str, str]]:
    """(section.key, value) for every params.yaml value that differs from the config dataclass's default."""
    rows = []
    for section, raw in load_params(params).items():
        rows += _changed(build(SECTIONS[section], raw or {}, section), build(SECTIONS[section], {}, section), section)
    return rows


def _changed(ours, default, prefix: str) -> list[tuple[str, str]]:
    """The differing values of two configs, a nested one (train.fusion) key by key."""
    values, rows = dataclasses.asdict(ours), []
    for f in dataclasses.fields(ours):
        mine, theirs, key = getattr(ours, f.name), getattr(default, f.name), f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(mine):
            rows += _changed(mine, theirs, key)
        elif mine != theirs:
            rows.append((key, json.dumps(values[f.name])))
    return rows


def split_counts(manifest: Path) -> str:
    """"train 120, test1 40, ..." with the labelled count where some items have no label."""
    rows = read_table(manifest, PREPARE, ("split", "label"))
    parts = []
    for split, group in rows.groupby("split", sort=False):
        labelled = int(group["label"].notna().sum())
        parts.append(f"{split} {len(group)}" + ("" if labelled == len(group) else f" ({labelled} labelled)"))
    return ", ".join(parts)


def run_rows(root: Path, params: Path | None, manifest: Path | None) -> list[tuple[str, str]]:
    """The header as (what, value) rows; inputs that are missing say so."""
    # Only what the inputs determine: the same code and params give the same page on any run (no wall
    # clock, no host name), so a fresh clone of a commit reproduces its committed report.
    rows = [("code revision", git_state(root)), ("code date", code_revision(root).date or "unknown"),
            ("made with", f"{platform.machine()}, Python {platform.python_version()}, "
                          + ", ".join(f"{k} {v}" for k, v in versions("torch", "av", "numpy").items()))]
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
