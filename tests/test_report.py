"""`mer report`: the HTML page and markdown summary from the committed metrics, missing-file notes, and
the page as headless Chromium renders it."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.extract import face_summary
from pipeline.reporting.report import write_report

METRICS = Path(__file__).resolve().parents[1] / "metrics"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# store index rows (n_frames, n_faces per item) of a run where one test1 clip got no face
FACE_INDEX = pd.DataFrame({"sample_id": ["a", "b", "c", "d"], "split": ["train", "train", "test1", "test1"],
                           "n_frames": [10, 4, 8, 0], "n_faces": [9, 4, 0, 0]})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    shutil.copytree(METRICS, out / "metrics")
    if not (out / "metrics" / "faces.json").is_file():  # committed runs from before extract wrote it
        (out / "metrics" / "faces.json").write_text(json.dumps(face_summary(FACE_INDEX, "blazeface")))
    result = write_report(out / "metrics", out / "report.html", out / "summary.md")
    assert result["missing"] == []
    return out


def committed(name: str):
    path = METRICS / name
    return json.loads(path.read_text()) if path.suffix == ".json" else pd.read_csv(path)


def last_round() -> str:
    return sorted((p.parent.name for p in METRICS.glob("pseudolabel/*/selection.json")), key=lambda r: (len(r), r))[-1]


def test_page_has_every_section_with_embedded_figures(rendered):
    page = (rendered / "report.html").read_text()
    for title in ("MER 2023 baseline", "Ablation", "Per class", "Robustness", "Pseudo-labels", "Training curves"):
        assert title in page
    multi = committed("mer_multi.json")["f1_weighted"]  # the run's MER-MULTI F1 beside the paper's
    assert re.search(rf'<td>MER-MULTI</td><td>weighted F1</td><td class="num">{multi:.4f}</td><td class="num">0.7757</td>', page)
    for subset in committed("ablation.json"):
        assert f"<td>{subset}</td>" in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    threshold_curve = not committed(f"pseudolabel/{last_round()}/selected.csv").empty
    study = (METRICS / "semi_study.csv").is_file()
    # confusion, valence, robustness, training curves, and the pseudo-label figures that have data
    assert len(images) == 4 + threshold_curve + study
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: nothing fetched


def test_faces_section_shows_each_split_and_names_items_without_a_face(tmp_path):
    shutil.copytree(METRICS, tmp_path / "metrics")
    (tmp_path / "metrics" / "faces.json").write_text(json.dumps(face_summary(FACE_INDEX, "blazeface")))
    write_report(tmp_path / "metrics", tmp_path / "report.html", tmp_path / "summary.md")
    summary = (tmp_path / "summary.md").read_text()
    assert "| train | 2 | 0 | 0.9286 |" in summary   # 13 of 14 frames
    assert "| test1 | 1 | 1 | 0.0000 |" in summary   # d has no frames: not counted
    assert "c: no face in its 8 sampled frame(s) (blazeface detector)" in summary


def test_summary_has_the_headline_and_per_class_tables(rendered):
    summary = (rendered / "summary.md").read_text()
    semi = committed("mer_semi.json")["f1_weighted"]
    assert f"| MER-SEMI | weighted F1 | {semi:.4f} | 0.8675 |" in summary
    first = committed("per_class_f1.csv").iloc[0]
    assert f"| {first['label']} | {first['f1']:.4f} |" in summary
    selection = committed(f"pseudolabel/{last_round()}/selection.json")
    label, threshold = next((c, t) for c, t in selection["thresholds"].items() if t is not None)
    assert f"| {label} | {threshold:.4f} | {selection['per_class'][label]} |" in summary


def test_missing_and_broken_files_become_notes(tmp_path):
    metrics = tmp_path / "metrics"
    (metrics / "pseudolabel/r1").mkdir(parents=True)
    shutil.copy(METRICS / "mer_multi.json", metrics)
    shutil.copy(METRICS / f"pseudolabel/{last_round()}/selection.json", metrics / "pseudolabel/r1")
    (metrics / "ablation.json").write_text("{not json")
    result = write_report(metrics, tmp_path / "r.html", tmp_path / "r.md")
    page = (tmp_path / "r.html").read_text()
    assert "mer_noise.json" in result["missing"] and "confusion.csv" in result["missing"]
    assert "ablation.json could not be read" in page
    assert "selected.csv not found" in page and "no threshold curve" in page
    assert f"{committed('mer_multi.json')['f1_weighted']:.4f}" in page and "<img" not in page


def test_headless_chromium_renders_a_non_blank_page(rendered, tmp_path):
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); apt-get install chromium")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,2000", (rendered / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert pixels.shape == (2000, 1200, 3)
    ink = (pixels < 235).any(axis=2)
    assert 0.03 < ink.mean() < 0.6, ink.mean()  # text, tables and figures, not an empty or error page
    blue = (pixels[..., 2] - pixels[..., 0] > 60) & (pixels[..., 2] > 120)
    assert blue.sum() > 2000  # the confusion matrix (Blues) is drawn in the first screen
