"""`dvc exp run -S` sweeps on a tiny demo corpus: each experiment retrains, none re-extracts or re-encodes,
and the experiments table fits a terminal."""

import json
import re
from pathlib import Path

import pytest
from dvc_project import commit, project_copy, run

from pipeline.evaluation import HEADLINE

TINY = {
    "demo": {"n_train": 48, "n_test1": 12, "n_test2": 6, "n_test3_labelled": 6, "n_unlabelled": 12, "seconds": 1.0},
    "corrupt": {"robustness_snr_db": []},
    "train": {"fusion": {"epochs": 15}, "ablation": ["AVT"]},
}
RATES = {"lr-high": "0.01", "lr-low": "0.0001"}
DROP = "^(metrics|models)/|Created"  # dep columns (the outputs later stages read) and the time, as the README drops them


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    work = project_copy(tmp_path_factory.mktemp("sweep"), TINY)
    run(["dvc", "repro"], work)
    commit(work, "baseline run")
    return work


def experiment_metrics(shown: list[dict]) -> dict[str, dict]:
    """Experiment name -> its metrics files' contents, from `dvc exp show --json`."""
    out = {}
    for commit_ in shown:
        for exp in commit_.get("experiments") or []:
            for revision in exp["revs"]:
                data = revision.get("data") or {}
                if revision.get("name"):
                    out[revision["name"]] = {Path(f).name: m["data"] for f, m in (data.get("metrics") or {}).items()}
    return out


@pytest.mark.slow
def test_learning_rate_sweep_retrains_from_stored_features(baseline):
    for name, lr in RATES.items():
        log = run(["dvc", "exp", "run", "-n", name, "-S", f"train.fusion.lr={lr}"], baseline).stdout
        assert "Running stage 'train'" in log, log
        for stage in ("demo", "prepare", "extract", "corrupt", "encode@"):
            assert f"Running stage '{stage}" not in log, (stage, log)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], baseline).stdout)
    metrics = experiment_metrics(shown)
    assert set(RATES) <= set(metrics), metrics.keys()
    assert all(set(m) == {"headline.json"} for m in metrics.values())  # the detail files are plain outputs
    high, low = (metrics[name]["headline.json"] for name in RATES)
    assert (high["multiF1"], high["multiMSE"]) != (low["multiF1"], low["multiMSE"])
    table = run(["dvc", "exp", "show", "--sort-by", "metrics/headline.json:multi", "--csv"], baseline).stdout
    assert all(name in table for name in RATES)


@pytest.mark.slow
def test_queued_two_by_two_sweep_table_fits_160_columns(baseline):
    run(["dvc", "exp", "remove", "--all-commits"], baseline)  # the table of this sweep alone, as a user sees it
    grid = ["-S", "train.fusion.lr=0.01,0.0001", "-S", "train.fusion.dropout=0.1,0.5"]
    run(["dvc", "exp", "run", "--queue", "-C", "featurestore", *grid], baseline)
    log = run(["dvc", "exp", "run", "--run-all", "-j", "1"], baseline)
    assert "Running stage 'extract'" not in log.stdout + log.stderr
    run(["dvc", "queue", "remove", "--success"], baseline)  # the run records go (State, Executor); experiments stay
    narrow = {"COLUMNS": "160"}
    # the README's command: the retrained outputs' hashes (changed deps) dropped, so nothing folds into …
    shown = run(["dvc", "exp", "show", "--only-changed", "--drop", DROP, "--no-pager"], baseline, env=narrow).stdout
    print(shown)
    lines = [line for line in shown.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 160
    header = lines[1].split()
    assert {"train.fusion.lr", "train.fusion.dropout", *HEADLINE} <= set(header), header  # swept keys and figures
    rows = [line for line in lines if re.search(r"\[[a-z]+-[a-z]+\]", line)]
    assert len(rows) >= 4 and not any("…" in line for line in lines), shown
    table = run(["mer", "exps"], baseline, env=narrow).stdout
    print(table)
    assert max(len(line) for line in table.splitlines()) <= 160
    header = next(i for i, line in enumerate(table.splitlines()) if line.startswith("experiment"))
    assert table.splitlines()[header].split()[:3] == ["experiment", "train.fusion.lr", "train.fusion.dropout"]
    assert all(label.split()[0] in table for label, _ in HEADLINE.values())
    experiments = json.loads(run(["dvc", "exp", "show", "--json"], baseline).stdout)
    best = max(m["headline.json"]["multi"] for m in experiment_metrics(experiments).values())
    assert f"{best:.3f}" in table.splitlines()[header + 1]  # sorted by MER-MULTI, best first
