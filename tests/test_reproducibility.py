"""Reproducibility as DVC sees it: the same params give the same output hashes in fresh projects.

Exact: the demo corpus (bytes), manifest, media stores and every metric on one machine and thread count.
Within a tolerance: figures of models trained with another BLAS thread count, whose float reductions run
in another order (REDUCTION_TOLERANCE below; see the README's "Reproducibility")."""

import json
from pathlib import Path

import pytest
import yaml

from dvc_project import project_copy, run

TINY = {"demo": {"n_train": 6, "n_test1": 2, "n_test2": 2, "n_test3_labelled": 2, "n_unlabelled": 2,
                 "seconds": 1.0, "n_speakers": 2}}
SMALL = {
    "demo": {"n_train": 72, "n_test1": 24, "n_test2": 18, "n_test3_labelled": 12, "n_unlabelled": 30},
    "corrupt": {"robustness_snr_db": [0], "robustness_blur": [4]},
    "train": {"epochs": 40},
}


def folder(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def lock(project: Path) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def out_hashes(project: Path, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock(project)[stage]["outs"]}


def with_demo_workers(project: Path, workers: int) -> Path:
    """The demo stage's command with an explicit worker count (a runtime knob, not a param)."""
    dvc_yaml = project / "dvc.yaml"
    text = dvc_yaml.read_text().replace("mer demo-corpus --out data/demo", f"mer demo-corpus --out data/demo --workers {workers}")
    dvc_yaml.write_text(text)
    return project


def test_demo_corpus_hash_is_the_same_serial_and_parallel(tmp_path):
    serial = with_demo_workers(project_copy(folder(tmp_path, "serial"), TINY), 1)
    parallel = with_demo_workers(project_copy(folder(tmp_path, "parallel"), TINY), 2)
    for project in (serial, parallel):
        run(["dvc", "repro", "demo"], project)
    assert out_hashes(serial, "demo") == out_hashes(parallel, "demo")


def metrics(project: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((project / "metrics").glob("*.json"))}


@pytest.mark.slow
def test_two_fresh_projects_reproduce_every_output(tmp_path):
    first, second = (project_copy(folder(tmp_path, name), SMALL) for name in ("first", "second"))
    for project in (first, second):
        run(["dvc", "repro"], project)
    assert metrics(first) == metrics(second)
    for stage in lock(first):
        if "outs" in lock(first)[stage]:
            assert out_hashes(first, stage) == out_hashes(second, stage), stage
