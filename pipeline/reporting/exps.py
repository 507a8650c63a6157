"""Tables over DVC experiments, read from `dvc exp show --json`: `mer exps` (the challenge figures and the
params that differ between experiments) and `mer semi-study` (the pseudo-label threshold study).

Only metrics/headline.json is a DVC metrics file; the per-round pseudo-label figures are plain outputs
committed with each experiment, so the study reads them from the experiment's git commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from pipeline.errors import InputError
from pipeline.evaluation import EVERY_HEADLINE, headline_keys, markdown_table
from pipeline.outputs import HEADLINE, METRICS, SELECTION, round_folder

HEADLINE_FILE = f"{METRICS}/{HEADLINE}"


def dvc_exp_show(repo: Path) -> list[dict]:
    # the DVC installed beside this interpreter, whether or not its venv is on PATH
    done = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo, capture_output=True,
                          text=True)
    if done.returncode != 0:   # not a DVC project, most often: DVC's own message says which
        raise InputError(f"`dvc exp show` in {repo} failed: {done.stderr.strip() or done.stdout.strip()}; pass "
                         f"--repo with the project's root")
    return json.loads(done.stdout)


def exp_states(exp_show: list[dict]) -> Iterator[dict]:
    """Every state of `dvc exp show --json`: workspace, baseline commits and their experiments."""
    for state in exp_show:
        yield state
        for exp_range in state.get("experiments") or []:
            yield from exp_states(exp_range.get("revs") or [])


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"fusion": {"lr": 0.1}}} -> {"train.fusion.lr": 0.1}; lists stay values."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out |= flatten(value, f"{name}.") if isinstance(value, dict) and value else {name: value}
    return out


def _file_data(data: dict, kind: str, path: str) -> dict:
    files = data.get(kind) or {}
    entry = next((v for k, v in files.items() if Path(k).as_posix() == path), None) or {}
    return entry.get("data") or {}


def state_name(state: dict) -> str:
    rev = state.get("rev", "")
    return state.get("name") or ("workspace" if rev == "workspace" else rev[:7])


def experiments_frame(exp_show: list[dict], sort_by: str = "multi") -> pd.DataFrame:
    """One row per experiment: its name, the params.yaml values that differ between the rows, and the
    headline figures of the protocols they were scored by; sorted by `sort_by` (a headline key; the first
    headline figure when no row has it), best first, rows without it last."""
    rows, params = [], []
    for state in exp_states(exp_show):
        data = state.get("data") or {}
        if not data:
            continue  # queued or failed before writing anything
        rows.append({"experiment": state_name(state)} | flatten(_file_data(data, "metrics", HEADLINE_FILE)))
        params.append(flatten(_file_data(data, "params", "params.yaml")))
    values = pd.DataFrame(params).map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)
    changed = [c for c in values.columns if values[c].astype(str).nunique(dropna=False) > 1]
    keys = headline_keys(k for row in rows for k, v in row.items() if v is not None)
    figures = pd.DataFrame(rows).reindex(columns=["experiment", *keys])
    frame = pd.concat([figures[["experiment"]], values[changed], figures[keys]], axis=1)
    sort_by = sort_by if sort_by in keys else keys[0]
    higher = EVERY_HEADLINE[sort_by][1]
    return frame.sort_values(sort_by, ascending=not higher, na_position="last", kind="stable").reset_index(drop=True)


def render_experiments(frame: pd.DataFrame, markdown: bool = False, width: int | None = None) -> str:
    """The frame as a markdown table, or as a terminal table (figure labels over two lines to stay narrow)."""
    labels = {key: label for key, (label, _) in EVERY_HEADLINE.items()}
    shown = frame.astype(object).where(frame.notna(), None)
    for key in shown.columns:  # the headline's own 3 decimals; params as written
        shown[key] = [None if v is None else f"{v:.3f}" if key in labels else str(v) for v in shown[key]]
    if markdown:
        return markdown_table(shown.rename(columns=labels))
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in frame.columns:
        numeric = column in labels
        table.add_column(labels[column].replace(" ", "\n", 1) if numeric else column,
                         justify="right" if numeric else "left", no_wrap=numeric)
    for row in shown.itertuples(index=False):
        table.add_row(*("—" if v is None else str(v) for v in row))
    console = Console(width=width, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


# ---------------------------------------------------------------- pseudo-label threshold study

STUDY_COLUMNS = ["experiment", "eta", "round", "final", "selected", "precision", "mer_semi_f1", "mer_multi_f1",
                 "mer_semi_f1_start", "mer_multi_f1_start"]


def git_reader(repo: Path) -> Callable[[str, str], dict | None]:
    """(rev, path) -> the JSON file committed at rev, or None where it is not."""
    def read(rev: str, path: str) -> dict | None:
        done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
        return json.loads(done.stdout) if done.returncode == 0 else None
    return read


def study_frame(exp_show: list[dict], read: Callable[[str, str], dict | None]) -> pd.DataFrame:
    """One row per (experiment, round): eta, pseudo-labels selected, their precision and the test F1 of
    the round's model, from each experiment's metrics/pseudolabel/<round>/selection.json (`read(rev, path)`).
    The workspace row repeats the last run and is left out."""
    records = []
    for state in exp_states(exp_show):
        data = state.get("data") or {}
        if state.get("rev") == "workspace" or not data:
            continue
        names = list((_file_data(data, "params", "params.yaml").get("pseudolabel") or {}).get("rounds") or {})
        rounds = [(name, read(state["rev"], f"{METRICS}/{round_folder(name)}/{SELECTION}")) for name in names]
        rounds = [(name, figures) for name, figures in rounds if figures is not None]
        for i, (name, figures) in enumerate(rounds):
            records.append({"experiment": state_name(state), "eta": figures.get("eta"),
                            "round": name, "final": i == len(rounds) - 1}
                           | {k: figures.get(k) for k in STUDY_COLUMNS[4:]})
    frame = pd.DataFrame(records, columns=STUDY_COLUMNS)
    return frame.sort_values(["eta", "experiment", "round"], kind="stable").reset_index(drop=True)
