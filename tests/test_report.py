"""`mer report`: the HTML page and markdown summary from the committed metrics, missing-file notes, and
the page as headless Chromium renders it."""

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline import evaluation as ev
from pipeline.config import PseudolabelConfig
from pipeline.extract import face_summary
from pipeline.labels import MER_LABELS, logit_columns
from pipeline.reporting import figures
from pipeline.reporting.report import write_report
from pipeline.training import semi

REPO = Path(__file__).resolve().parents[1]
METRICS = REPO / "metrics"
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
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["fusion"]["lr"] = 0.0042
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    pd.DataFrame({"split": ["train"] * 5 + ["test1"] * 2 + ["test3"] * 3,
                  "label": ["happy"] * 7 + [None, None, "sad"]}).to_parquet(out / "manifest.parquet")
    result = write_report(out / "metrics", out / "report.html", out / "summary.md",
                          params=out / "params.yaml", manifest=out / "manifest.parquet", root=REPO)
    assert result["missing"] == []
    return out


def figure_data(page: str) -> dict[str, list[dict]]:
    """Caption -> what the figure's axes show (the page's data-plotted records)."""
    found = re.findall(r'<figure data-plotted="([^"]*)">.*?<figcaption>(.*?)</figcaption>', page)
    return {html.unescape(caption): json.loads(html.unescape(data)) for data, caption in found}


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
    assert "| test1 | 2 | 2 | 0.0000 |" in summary   # d: an empty shipped faces array, a clip without a face
    assert "d: no face (its shipped faces array is empty)" in summary
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
                    f"--screenshot={shot}", "--window-size=1400,2000", (rendered / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert pixels.shape == (2000, 1400, 3)
    ink = (pixels < 235).any(axis=2)
    assert 0.03 < ink.mean() < 0.6, ink.mean()  # text, tables and figures, not an empty or error page
    blue = (pixels[..., 2] - pixels[..., 0] > 60) & (pixels[..., 2] > 120)
    assert blue.sum() > 2000  # the confusion matrix (Blues) is drawn in the first screen


def test_run_header_says_what_produced_the_figures(rendered):
    summary = (rendered / "summary.md").read_text()
    header = summary[summary.index("## Run"):summary.index("## Challenge")]
    assert re.search(r"\| code revision \| [0-9a-f]{12} ", header)
    assert "| items per split | train 5, test1 2, test3 3 (1 labelled) |" in header
    assert "| param train.fusion.lr | 0.0042 |" in header and "| corpus | demo at data/demo |" in header
    assert "param train.fusion.epochs" not in header  # at its default: a nested section is compared key by key
    assert re.search(r"\| code date \| \d{4}-\d\d-\d\dT", header) and "| made with | " in header


def test_run_header_is_the_same_on_every_run_of_the_same_code(rendered, tmp_path):
    """Nothing from the wall clock or the host: a fresh clone rewrites the committed report byte for byte."""
    first = (rendered / "summary.md").read_text()
    write_report(rendered / "metrics", tmp_path / "report.html", tmp_path / "summary.md",
                 params=rendered / "params.yaml", manifest=rendered / "manifest.parquet", root=REPO)
    assert (tmp_path / "summary.md").read_text() == first
    assert (tmp_path / "report.html").read_bytes() == (rendered / "report.html").read_bytes()


def test_robustness_panels_draw_the_metrics_file(rendered):
    page = (rendered / "report.html").read_text()
    curve = committed("robustness.csv")
    panels = next(data for caption, data in figure_data(page).items() if caption.startswith("test2 with noise"))
    assert [p["title"] for p in panels] == ["weighted F1 against SNR", "valence MSE against SNR",
                                            "weighted F1 against blur", "valence MSE against blur"]
    clean = curve[curve["view"] == "clean"].set_index("subset")
    for panel, (x, y) in zip(panels, [("snr_db", "f1_weighted"), ("snr_db", "valence_mse"),
                                      ("blur", "f1_weighted"), ("blur", "valence_mse")]):
        references = [line for line in panel["lines"] if line["label"].startswith("_clean ")]
        assert sorted(line["label"][7:] for line in references) == sorted(clean.index)  # one per subset
        for line in references:  # at the clean view's figure, not at a blur view's
            assert line["linestyle"] == ":" and line["y"] == pytest.approx([clean.loc[line["label"][7:], y]] * 2)
        for subset, rows in curve[np.isfinite(curve[x])].groupby("subset"):   # the +inf dB control is not drawn
            drawn = next(line for line in panel["lines"] if line["label"] == subset)
            rows = rows.sort_values(x)
            assert drawn["x"] == pytest.approx(list(rows[x])) and drawn["y"] == pytest.approx(list(rows[y]))
        values = curve.loc[np.isfinite(curve[x]), y]
        low, high = panel["ylim"]
        assert low <= values.median() <= high
        inside = values[(values >= low) & (values <= high)]
        assert len(inside) >= 0.75 * len(values)  # the axis fits the bulk of the data
        if values.max() > 4 * values.median():  # a far outlier does not stretch the axis
            assert high < values.max()


def with_control(curve: pd.DataFrame, f1_shift: float = 0.0) -> pd.DataFrame:
    """The curve with a control view (+inf dB) that scores the clean figures, F1 shifted by `f1_shift`."""
    control = curve[curve["view"] == "clean"].assign(view="snrinf", snr_db=np.inf, blur=np.nan, snr="inf")
    control["f1_weighted"] += f1_shift
    both = pd.concat([curve[curve["view"] != "snrinf"], control], ignore_index=True)
    return both.sort_values(["subset", "snr_db", "blur"], na_position="last")   # as evaluate writes it


def test_robustness_says_what_the_gap_at_the_highest_snr_is_made_of(tmp_path):
    from pipeline.reporting.report import control_note

    curve = committed("robustness.csv")
    note = control_note(with_control(curve))
    assert "scores exactly the clean figures for every subset" in note and "is the noise's effect" in note
    at20 = curve[curve["view"] == "snr20"].set_index("subset")["f1_weighted"]
    clean = curve[curve["view"] == "clean"].set_index("subset")["f1_weighted"]
    assert f"At 20 dB: A {at20['A']:.3f} (clean {clean['A']:.3f})" in note
    assert " T " not in note   # text only: noise cannot move it
    broken = control_note(with_control(curve, f1_shift=-0.1))
    assert "does not reproduce the clean figures" in broken and "defect" in broken
    assert f"A {clean['A'] - 0.1:.3f} (clean {clean['A']:.3f})" in broken
    assert "No control view" in control_note(curve[curve["view"] != "snrinf"])
    metrics = tmp_path / "metrics"
    shutil.copytree(METRICS, metrics)
    with_control(curve).to_csv(metrics / "robustness.csv", index=False)
    write_report(metrics, tmp_path / "report.html", tmp_path / "summary.md")
    summary = (tmp_path / "summary.md").read_text()
    assert "| 20 | inf | clean |" in summary and "scores exactly the clean figures" in summary


def test_every_figure_names_its_item_count(rendered):
    page = (rendered / "report.html").read_text()
    captions = list(figure_data(page))
    assert captions and all(re.search(r"n = \d+", c) or "item counts not recorded" in c for c in captions), captions
    assert any(f"n = {len(committed('confusion.csv'))}" in c for c in captions if c.startswith("Confusion"))


def test_tables_fit_a_1400_px_page_in_chromium(rendered, tmp_path):
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); apt-get install chromium")
    # a copy of the page that writes every table's overflow into the DOM, read back with --dump-dom
    probe = ("<script>addEventListener('load', () => { const w = document.documentElement.clientWidth;"
             "document.body.dataset.overflow = JSON.stringify([...document.querySelectorAll('table')].map("
             "t => Math.round(t.getBoundingClientRect().right - Math.min(w, t.parentElement.getBoundingClientRect().right))));"
             "document.body.dataset.page = document.documentElement.scrollWidth - w; });</script>")
    page = tmp_path / "probe.html"
    page.write_text((rendered / "report.html").read_text().replace("</body>", probe + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    overflow = json.loads(html.unescape(re.search(r'data-overflow="([^"]*)"', dom).group(1)))
    assert len(overflow) >= 5 and max(overflow) <= 0, overflow  # no table wider than its box
    assert int(re.search(r'data-page="(-?\d+)"', dom).group(1)) <= 0  # and no horizontal scroll


# ---------------------------------------------------------------- a run with another label set

RAVDESS_8 = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def eight_class_predictions(n: int = 96) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest, predictions) of an AVT model over RAVDESS's eight classes: labelled out-of-fold training
    rows, labelled test1 rows and an unlabelled test3 pool; classes 'calm' and 'disgust' never occur."""
    rng = np.random.default_rng(8)
    occurring = [i for i, c in enumerate(RAVDESS_8) if c not in ("calm", "disgust")]
    y = rng.choice(occurring, n)
    split = np.array(["train", "test1", "test3"])[np.arange(n) % 3]
    manifest = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(n)], "split": split,
                             "label": np.where(split == "test3", None, np.array(RAVDESS_8, dtype=object)[y]),
                             "valence": np.nan, "true_label": np.array(RAVDESS_8)[y]})
    logits = 3 * np.eye(len(RAVDESS_8))[y] + rng.normal(size=(n, len(RAVDESS_8)))
    predictions = pd.DataFrame(logits, columns=logit_columns(RAVDESS_8))
    predictions.insert(0, "sample_id", manifest["sample_id"])
    predictions.insert(0, "test", np.where(split == "train", "train-oof", split))
    predictions.insert(0, "seed", 0)
    predictions.insert(0, "subset", "AVT")
    return manifest, predictions.assign(valence=0.0, fallback=False)


def eight_class_metrics(out: Path) -> Path:
    """The committed metrics with the per-class files of an 8-class run, written by evaluate's and
    pseudolabel's own functions."""
    metrics = out / "metrics"
    shutil.copytree(METRICS, metrics)
    manifest, predictions = eight_class_predictions()
    rows = ev.joined(predictions, manifest)
    confusion = ev.confusion_rows(rows, "AVT", "test1")
    confusion.to_csv(metrics / "confusion.csv", index=False)
    ev.per_class_f1(confusion, RAVDESS_8).to_csv(metrics / "per_class_f1.csv", index=False)
    for task in ("mer_multi", "mer_noise", "mer_semi"):
        (metrics / f"{task}.json").write_text(json.dumps(ev.score(rows, "AVT", "test1") | {"labels": list(RAVDESS_8)}))
    picked, thresholds = semi.select_items(semi.labelled_oof(predictions, manifest),
                                           semi.unlabelled_pool(predictions, manifest), eta=0.5)
    picked = semi.with_truth(picked, manifest)
    for folder in (metrics / "pseudolabel").iterdir():
        picked.to_csv(folder / "selected.csv", index=False)
        summary = semi.round_report(folder.name, "start", PseudolabelConfig(), thresholds, picked, predictions,
                                    predictions, manifest)
        (folder / "selection.json").write_text(json.dumps(summary))
    return metrics


def confusion_axes(metrics: Path, out: Path, monkeypatch):
    """(the confusion matrix's axes as the report draws it from `metrics`, the markdown summary)."""
    drawn = []  # every figure the report renders, read after rendering (closing keeps its artists)
    monkeypatch.setattr(figures, "render", lambda fig, render=figures.render: (drawn.append(fig), render(fig))[1])
    write_report(metrics, out / "report.html", out / "summary.md")
    return next(f.axes[0] for f in drawn if f.axes[0].get_ylabel() == "actual"), (out / "summary.md").read_text()


def assert_every_class_shown(metrics: Path, labels: tuple[str, ...], out: Path, monkeypatch) -> None:
    """The confusion matrix's rows, columns and counts and the per-class tables (F1, pseudo-label
    selection) cover the run's label set, also classes no item has."""
    ax, summary = confusion_axes(metrics, out, monkeypatch)
    assert [t.get_text() for t in ax.get_xticklabels()] == [t.get_text() for t in ax.get_yticklabels()] == list(labels)
    counts = np.array([int(t.get_text()) for t in ax.texts]).reshape(len(labels), len(labels))
    expected = pd.crosstab(*pd.read_csv(metrics / "confusion.csv").to_numpy().T).reindex(
        index=labels, columns=labels, fill_value=0).to_numpy()
    assert np.array_equal(counts, expected)
    per_class_f1 = summary[summary.index("## Per class"):summary.index("## Robustness")]
    selection = summary[summary.index("## Pseudo-labels"):]
    for label in labels:
        assert re.search(rf"^\| {label} \|", per_class_f1, re.MULTILINE), label
        assert re.search(rf"^\| {label} \|", selection, re.MULTILINE), label
    others = set(MER_LABELS) - set(labels)
    assert not any(f"| {label} |" in summary for label in others), others  # nothing of MER's six but shared ones


def test_an_eight_class_run_shows_every_class_in_every_per_class_table_and_figure(tmp_path, monkeypatch):
    metrics = eight_class_metrics(tmp_path)
    assert pd.read_csv(metrics / "confusion.csv")["actual"].eq("surprised").any()  # a class MER lacks, drawn
    assert_every_class_shown(metrics, RAVDESS_8, tmp_path, monkeypatch)
