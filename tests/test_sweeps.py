"""`dvc exp run -S` sweeps on a tiny demo corpus: each experiment retrains, none re-extracts or re-encodes."""

import json
from pathlib import Path

import pytest

from dvc_project import commit, project_copy, run

TINY = {
    "demo": {"n_train": 48, "n_test1": 12, "n_test2": 6, "n_test3_labelled": 6, "n_unlabelled": 12, "seconds": 1.0},
    "corrupt": {"robustness_snr_db": []},
    "train": {"epochs": 15, "ablation": ["AVT"]},
}
RATES = {"lr-high": "0.01", "lr-low": "0.0001"}


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
        log = run(["dvc", "exp", "run", "-n", name, "-S", f"train.lr={lr}"], baseline).stdout
        assert "Running stage 'train'" in log, log
        for stage in ("demo", "prepare", "extract", "corrupt", "encode@"):
            assert f"Running stage '{stage}" not in log, (stage, log)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], baseline).stdout)
    metrics = experiment_metrics(shown)
    assert set(RATES) <= set(metrics), metrics.keys()
    high, low = (metrics[name]["mer_multi.json"] for name in RATES)
    assert high["n"] == low["n"] == 12
    assert (high["f1_weighted"], high["valence_mse"]) != (low["f1_weighted"], low["valence_mse"])
    table = run(["dvc", "exp", "show", "--sort-by", "metrics/mer_multi.json:combined", "--csv"], baseline).stdout
    assert all(name in table for name in RATES)
