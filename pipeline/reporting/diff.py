"""`mer diff-report`: metrics and params of the workspace against a git revision, as markdown, headline first.

Used on pull requests: the base branch's committed metrics are the baseline, the workspace (after
`dvc repro`) is the new side. First the challenge figures (metrics/headline.json, the only DVC metrics
file) and the params that changed, each figure marked better / worse / same by its direction; then every
other JSON file of metrics/ folded in a <details> block. A base without any metrics is "no baseline yet".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dvc.exceptions import NotDvcRepoError
from dvc.repo import Repo
from dvc.scm import RevError, resolve_rev

from pipeline.errors import InputError, MerError
from pipeline.evaluation import EVERY_HEADLINE, headline_keys, markdown_table
from pipeline.outputs import HEADLINE, METRICS

HEADLINE_FILE = f"{METRICS}/{HEADLINE}"
NEAR_ZERO = 0.1  # no percentage change against a base closer to zero than this: it says nothing
SAME = 5e-5      # changes that round to zero at four decimals
LOWER_IS_BETTER = ("mse", "ece", "nll", "loss", "_std")
HIGHER_IS_BETTER = ("f1", "accuracy", "combined", "precision", "selection")


class UnknownRevision(MerError, ValueError):
    """The base revision is not a commit, branch or tag of the repository."""


def detail_files(root: Path) -> list[str]:
    """The workspace's JSON files under metrics/ besides the headline (DVC reads them as metrics files
    on both sides, though only the headline is declared one)."""
    files = sorted((root / METRICS).rglob("*.json"))  # absolute: DVC reads targets against the cwd
    return [str(p.absolute()) for p in files if p.relative_to(root).as_posix() != HEADLINE_FILE]


def dvc_diffs(root: Path, base: str) -> tuple[dict, dict, dict]:
    """(headline diff, detail metrics diff, changed params) between `base` and the workspace; metric diffs
    include unchanged values."""
    try:
        repo = Repo(str(root))
    except NotDvcRepoError as exc:
        raise InputError(f"{root}: {exc}; pass --repo with the project's root") from exc
    with repo:
        try:
            resolve_rev(repo.scm, base)
        except RevError as exc:
            raise UnknownRevision(f"{base!r} is not a revision of {root}: {exc}") from exc
        metrics = repo.metrics.diff(a_rev=base, all=True).get("diff", {})
        targets = detail_files(root)
        detail = repo.metrics.diff(a_rev=base, targets=targets, all=True).get("diff", {}) if targets else {}
        params = repo.params.diff(a_rev=base).get("diff", {})
    headline = next((values for file, values in metrics.items() if Path(file).as_posix() == HEADLINE_FILE), {})
    return headline, detail, params


def has_baseline(headline: dict, detail: dict) -> bool:
    files = [headline, *detail.values()]
    return any(entry.get("old") is not None for values in files for entry in values.values())


def higher_is_better(key: str) -> bool | None:
    """A figure's direction: by the protocols' headlines for their keys, else by its name (MSE, ECE, NLL down;
    F1 up); None: unknown."""
    if key in EVERY_HEADLINE:
        return EVERY_HEADLINE[key][1]
    name = key.lower().rsplit(".", 1)[-1]
    if any(word in name for word in LOWER_IS_BETTER):
        return False
    if any(word in name for word in HIGHER_IS_BETTER):
        return True
    return None


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
    relative = f" ({entry['diff'] / abs(old):+.1%})" if abs(old) >= NEAR_ZERO else ""
    return f"{entry['diff']:+.4f}{relative}"


def verdict(key: str, entry: dict) -> str:
    """better / worse / same, with the direction that decides it (↑ higher is better, ↓ lower is better)."""
    change = entry.get("diff")
    if entry.get("old") is None and entry.get("new") is None:
        return ""  # not scored on either side
    if not isinstance(change, int | float):
        return "same" if entry.get("old") == entry.get("new") else ""
    if abs(change) < SAME:
        return "same"
    higher = higher_is_better(key)
    if higher is None:
        return "changed"
    arrow = "↑" if higher else "↓"
    return f"better ({arrow})" if (change > 0) == higher else f"worse ({arrow})"


COLUMNS = ["base", "this branch", "change", "verdict"]


def headline_frame(headline: dict) -> pd.DataFrame:
    """A row per headline figure of the protocols the two sides were scored by: those with a figure of their
    own on either side (MER 2023's when none has)."""
    rows = [{"figure": label, "base": _value((e := headline.get(key, {})).get("old")),
             "this branch": _value(e.get("new")), "change": _change(e) if e else "—", "verdict": verdict(key, e)}
            for key, label in ((k, EVERY_HEADLINE[k][0]) for k in headline_keys(headline))]
    return pd.DataFrame(rows, columns=["figure", *COLUMNS])


def metrics_frame(metrics: dict, include_unchanged: bool = False) -> pd.DataFrame:
    rows = [{"file": Path(file).as_posix().removeprefix("metrics/"), "metric": key, "base": _value(e.get("old")),
             "this branch": _value(e.get("new")), "change": _change(e), "verdict": verdict(key, e)}
            for file, values in sorted(metrics.items()) for key, e in sorted(values.items())
            if include_unchanged or e.get("old") != e.get("new")]
    return pd.DataFrame(rows, columns=["file", "metric", *COLUMNS])


def params_frame(params: dict) -> pd.DataFrame:
    rows = [{"param": key, "base": _value(e.get("old"), None), "this branch": _value(e.get("new"), None)}
            for values in params.values() for key, e in sorted(values.items())]
    return pd.DataFrame(rows, columns=["param", "base", "this branch"])


def render(headline: dict, detail: dict, params: dict, base: str, include_unchanged: bool = False) -> str:
    lines = [f"## Metrics and params against `{base}`", ""]
    if not has_baseline(headline, detail):
        lines += [f"**No baseline yet**: `{base}` has no metrics files, so there is nothing to compare against.", ""]
    else:
        lines += ["### Challenge figures", "", markdown_table(headline_frame(headline))]
    table = params_frame(params)
    lines += ["### Params", "", markdown_table(table) if len(table) else "No param changed.\n"]
    if has_baseline(headline, detail):
        changed = metrics_frame(detail, include_unchanged)
        unchanged = sum(e.get("old") == e.get("new") for values in detail.values() for e in values.values())
        summary = f"Detail: {len(changed)} values of {len(detail)} metrics files" + (
            "" if include_unchanged else f" changed ({unchanged} unchanged)")
        lines += ["<details>", f"<summary>{summary}</summary>", "",
                  markdown_table(changed) if len(changed) else "No other metric changed.\n", "</details>", ""]
    return "\n".join(lines)


def diff_report(root: Path, base: str, include_unchanged: bool = False) -> str:
    return render(*dvc_diffs(root, base), base, include_unchanged)
