"""The scaling table in docs/scaling.md is what benchmarks/scaling_table.py makes of the committed results,
and its arithmetic (clips x CPU seconds a clip / (cores x efficiency), one-process stages as measured, the
bounding stage per column) holds on results with known answers."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import scaling_table  # noqa: E402

ENCODE = "encode, default features (eGeMAPS, e5, FER)"
EXTRACT = "extract, shipped faces and audio (the mer2025 recipe)"


def test_committed_doc_is_the_committed_results_table():
    doc = scaling_table.DOC.read_text()
    assert scaling_table.rewrite(doc, scaling_table.table()) == doc, \
        "docs/scaling.md is stale: run python benchmarks/scaling_table.py and commit it"


def write(results: Path, name: str, content: dict) -> None:
    (results / f"{name}.json").write_text(json.dumps(content))


def release_results(results: Path) -> None:
    write(results, "prepare_scale", {"rows": 1000, "ms_per_row": 1.0})
    write(results, "extract_scaling", {"ratio": 1.6, "corpus_clips": 200, "load_avg_start": [0.1, 0.1, 0.1]})
    write(results, "cluster", {"clips": 64, "figures": {"dask_2_over_1_speedup": 1.8, "load_before": [0.2, 0, 0]}})
    shipped = {"per_clip": {"shipped": {"cpu_ms": 10.0, "wall_ms": 11.0},
                            "decode_and_detect": {"cpu_ms": 100.0, "wall_ms": 101.0, "floor_wall_ms": 90.0}},
               "seconds_per_clip": 4, "video_fps": 25, "video_side_px": 320}
    write(results, "extract_shipped", shipped)
    features = {"egemaps": 20.0, "e5": 10.0, "fer": 10.0, "whisper": 100.0, "audio-concat": 120.0}
    write(results, "encode_overhead", {"audio_seconds_per_clip": 4.0, "faces_per_clip": 20.0, "features": {
        name: {"encode_cpu_ms_per_clip": ms} for name, ms in features.items()}})
    stages = {"train": 600.0, "pseudolabel@r1": 300.0, "pseudolabel@r2": 300.0, "evaluate": 10.0}
    shape = {"dims": {"audio": 88, "text": 384, "visual": 7}, "items": {"train": 7369, "pool": 104802, "candidates": 20000},
             "pool_feature_mb": 192.3, "total_seconds": 1210.0, "total_spread": 0.04, "runs": 2, "peak_rss_mb": 3072.0,
             "stages": {name: {"seconds": s, "peak_rss_mb": 1024.0 if name != "train" else 3072.0, "spread": 0.05,
                               "runs": [{"seconds": s}, {"seconds": s * 1.05}]} for name, s in stages.items()}}
    write(results, "release_scale", {"scale": 1.0, "epochs_override": None, "shapes": {"default": shape}})


def rows(table: str) -> dict[str, list[str]]:
    """First cell -> the column cells (this machine, 16 cores, cluster, GPU) of each table row."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    return {row[0].strip("*"): row[2:6] for row in cells[1:]}


def test_release_times_and_bounding_stage_from_results(tmp_path):
    release_results(tmp_path)
    table = rows(scaling_table.table(tmp_path))
    # encode: 132,171 x 40 ms = 5,287 core-seconds; /(2 x 0.8) = 3,304 s; /(16 x 0.8) = 413 s; /(128 x 0.9) = 46 s
    assert table[ENCODE] == ["55 min", "7 min", "46 s", "not measured"]
    assert table[EXTRACT] == ["14 min", "103 s", "11 s", "not measured"]   # 1,322 core-seconds
    assert table["prepare"][:3] == ["2 min"] * 3 and table["train"][:3] == ["10 min"] * 3
    # this machine: 132 + 826 + 3,304 + 1,210 s; the cluster: 132 + 11 + 46 + 1,210 s
    assert table["the release, stage after stage"][:3] == ["**91 min**", "**31 min**", "**23 min**"]
    assert table["bounded by"][:3] == [ENCODE, "train", "train"]
    assert "alternative" not in table and table["extract, decode + detect (a release without shipped inputs)"][0] == "2.3 h"


def test_what_no_result_measures_says_so(tmp_path):
    release_results(tmp_path)
    (tmp_path / "extract_scaling.json").unlink()   # no local-pool efficiency: no parted stage on local cores
    table = rows(scaling_table.table(tmp_path))
    assert table[ENCODE][:2] == ["not measured"] * 2 and table[ENCODE][2] == "46 s"
    assert table["the release, stage after stage"][:2] == ["**not measured**"] * 2
    assert table["bounded by"][2] == "train"
    assert rows(scaling_table.table(tmp_path / "none"))["train"] == ["not measured"] * 4


def test_the_full_size_run_per_stage_and_its_spread(tmp_path):
    release_results(tmp_path)
    assert rows(scaling_table.table(tmp_path))["train"][0] == "10 min"
    line = next(x for x in scaling_table.release_runs(tmp_path) if x.startswith("| default"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["default (88/384/7)", "10 min, 3.0 GB", "5 min, 1.0 GB", "5 min, 1.0 GB", "10 s, 1.0 GB",
                     "20 min", "3.0 GB", "0.19 GB", "2 runs, spread 4%"]
    release = json.loads((tmp_path / "release_scale.json").read_text())
    write(tmp_path, "release_scale", release | {"epochs_override": 5})   # a shortened run is not the release
    assert scaling_table.release_runs(tmp_path) == ["The full-size feature-level run (`bench_release.py`): not measured."]
    assert rows(scaling_table.table(tmp_path))["train"][0] == "not measured"


def test_a_doc_without_markers_is_refused():
    with pytest.raises(SystemExit, match="lacks the markers"):
        scaling_table.rewrite("# Scaling\n", scaling_table.table())
