"""`dvc metrics diff` and `dvc params diff` against a git revision, as markdown tables with deltas.

Used on pull requests: the base branch's committed metrics are the baseline, the workspace (after
`dvc repro`) is the new side. A base without any metrics is "no baseline yet", not an error.
"""

from __future__ import annotations

from pathlib import Path

from dvc.repo import Repo
from dvc.scm import RevError, resolve_rev
import pandas as pd

from pipeline.errors import MerError
from pipeline.evaluation import markdown_table


class UnknownRevision(MerError, ValueError):
    """The base revision is not a commit, branch or tag of the repository."""


def dvc_diffs(root: Path, base: str) -> tuple[dict, dict]:
    """(metrics diff with unchanged values, changed params) between `base` and the workspace."""
    with Repo(str(root)) as repo:
        try:
            resolve_rev(repo.scm, base)
        except RevError as exc:
            raise UnknownRevision(f"{base!r} is not a revision of {root}: {exc}") from exc
        metrics = repo.metrics.diff(a_rev=base, all=True).get("diff", {})
        params = repo.params.diff(a_rev=base).get("diff", {})
    return metrics, params


def has_baseline(metrics: dict) -> bool:
    return any(entry.get("old") is not None for values in metrics.values() for entry in values.values())


def _value(value, digits: int | None = 4) -> str:
    """Metrics with fixed decimals; params (digits=None) exactly as written."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) and digits else str(value)


def _change(entry: dict) -> str:
    old, new = entry.get("old"), entry.get("new")
    if old is None:
        return "new"
    if new is None:
        return "removed"
    if "diff" not in entry:
        return "changed"
    relative = f" ({entry['diff'] / abs(old):+.1%})" if old else ""
    return f"{entry['diff']:+.4f}{relative}"


def metrics_frame(metrics: dict, include_unchanged: bool = False) -> pd.DataFrame:
    rows = [{"file": Path(file).name, "metric": key, "base": _value(e.get("old")), "this branch": _value(e.get("new")),
             "change": _change(e)}
            for file, values in sorted(metrics.items()) for key, e in sorted(values.items())
            if include_unchanged or e.get("old") != e.get("new")]
    return pd.DataFrame(rows, columns=["file", "metric", "base", "this branch", "change"])


def params_frame(params: dict) -> pd.DataFrame:
    rows = [{"param": key, "base": _value(e.get("old"), None), "this branch": _value(e.get("new"), None)}
            for values in params.values() for key, e in sorted(values.items())]
    return pd.DataFrame(rows, columns=["param", "base", "this branch"])


def render(metrics: dict, params: dict, base: str, include_unchanged: bool = False) -> str:
    lines = [f"## Metrics and params against `{base}`", ""]
    if not has_baseline(metrics):
        lines += [f"**No baseline yet**: `{base}` has no metrics files, so there is nothing to compare against.", ""]
    else:
        changed = metrics_frame(metrics, include_unchanged)
        unchanged = sum(e.get("old") == e.get("new") for values in metrics.values() for e in values.values())
        lines += ["### Metrics", ""]
        lines += [markdown_table(changed) if len(changed) else "No metric changed.\n"]
        if not include_unchanged and unchanged:
            lines += [f"{unchanged} metric values unchanged.", ""]
    lines += ["### Params", ""]
    table = params_frame(params)
    lines += [markdown_table(table) if len(table) else "No param changed.\n"]
    return "\n".join(lines)


def diff_report(root: Path, base: str, include_unchanged: bool = False) -> str:
    return render(*dvc_diffs(root, base), base, include_unchanged)
