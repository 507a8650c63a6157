"""The file names inside output folders are declared once (pipeline/outputs.py): dvc.yaml's outs, deps,
metrics and plots name the same files, and each stage's folder option points where the readers look."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from pipeline import outputs

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())


def body(stage: str) -> dict:
    return DVC["stages"][stage].get("do", DVC["stages"][stage])


def option(stage: str, name: str) -> str:
    """The path dvc.yaml's cmd passes to `--name`."""
    args = shlex.split(body(stage)["cmd"])
    return args[args.index(f"--{name}") + 1]


def paths(entries: list) -> list[str]:
    """The paths of an outs/deps/metrics/plots list (an entry is a path or a one-key mapping)."""
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def inside(folder: str, found: list[str]) -> set[str]:
    return {p.removeprefix(f"{folder}/") for p in found if p.startswith(f"{folder}/")}


def written(stage: str) -> list[str]:
    return paths(body(stage).get("outs", []) + body(stage).get("metrics", []) + body(stage).get("plots", []))


def test_evaluate_declares_every_file_it_writes_and_no_other():
    out = option("evaluate", "out")
    assert out == outputs.METRICS
    assert inside(out, written("evaluate")) == set(outputs.EVALUATE)
    assert paths(body("evaluate")["metrics"]) == [f"{out}/{outputs.HEADLINE}"]


def test_a_pseudolabel_round_declares_every_file_it_writes_and_no_other():
    folder = option("pseudolabel", "metrics")
    assert folder == f"{outputs.METRICS}/{outputs.round_folder('${key}')}"
    assert inside(folder, written("pseudolabel")) == set(outputs.ROUND)


def test_the_folders_the_report_reads_are_where_the_stages_write():
    assert option("report", "metrics") == outputs.METRICS
    assert option("extract", "faces") == f"{outputs.METRICS}/{outputs.FACES}"
    assert option("train", "curves") == f"{outputs.METRICS}/{outputs.CURVES}"
    assert paths(body("train")["plots"]) == [option("train", "curves")]
    known = {*outputs.EVALUATE, outputs.FACES, outputs.CURVES, outputs.PSEUDOLABEL}
    assert inside(outputs.METRICS, paths(body("report")["deps"])) <= known


def test_every_plot_file_is_a_declared_output():
    files = [p for p in paths(DVC["plots"]) if "/" in p]   # the others are named plots over files (y:)
    files += [f for p in DVC["plots"] for spec in p.values() if isinstance(spec.get("y"), dict) for f in spec["y"]]
    assert files and inside(outputs.METRICS, files) <= set(outputs.EVALUATE)
    assert all(f.startswith(f"{outputs.METRICS}/") for f in files)
