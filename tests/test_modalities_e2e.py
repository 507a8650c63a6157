"""End to end with missing modalities: audio-only, text-only, image-only and mixed corpora through a real
`dvc repro` (prepare.adapter: csv), each derived from one small generated talking-face corpus."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from test_pipeline import project_copy, run
from test_report import assert_every_class_shown

from pipeline.config import DemoConfig
from pipeline.demo.corpus import generate_corpus
from pipeline.media.decode import decode_clip, read_audio_file

pytestmark = pytest.mark.slow

SPEC = DemoConfig(n_train=30, n_test1=10, n_test2=8, n_test3_labelled=6, n_unlabelled=6, seconds=1.0, fps=10)
OVERRIDES = {
    "prepare": {"adapter": "csv", "root": "data/corpus", "options": {"manifest": "manifest.csv"}},
    "corrupt": {"robustness_snr_db": []},
    "train": {"folds": 3, "fusion": {"epochs": 15}},
}
AUDIO_RATE = 22050  # written at another rate than the pipeline's 16 kHz, so extraction resamples
KINDS = ("video", "audio", "image", "text")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("demo")
    generate_corpus(root, SPEC, progress=False, workers=2)
    return root, pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


def derive(demo_root: Path, rows: pd.DataFrame, out: Path, kind_of) -> pd.DataFrame:
    """A corpus at `out` where row i keeps only the media kind `kind_of(i)`: the clip, its audio as a WAV,
    its middle frame as a PNG, or its transcript alone (every other kind drops the transcript)."""
    (out / "media").mkdir(parents=True)
    records = []
    for i, row in enumerate(rows.to_dict("records")):
        kind, clip = kind_of(i), demo_root / row["path"]
        stem = Path(row["path"]).stem
        if kind == "audio":
            row["path"] = f"media/{stem}.wav"
            write_wav(out / row["path"], read_audio_file(clip, AUDIO_RATE), AUDIO_RATE)
        elif kind == "image":
            frames = decode_clip(clip, fps=SPEC.fps, max_frames=SPEC.fps * 2).frames
            row["path"] = f"media/{stem}.png"
            cv2.imwrite(str(out / row["path"]), cv2.cvtColor(frames[len(frames) // 2], cv2.COLOR_RGB2BGR))
        elif kind == "video":
            row["path"] = f"media/{stem}.mp4"
            (out / row["path"]).write_bytes(clip.read_bytes())
        else:
            row["path"] = ""
        if kind not in ("video", "text"):
            row["transcript"] = ""
        carries = {"video": "AVT", "audio": "A", "image": "V", "text": "T"}[kind]
        records.append(row | {"carries": carries if row["transcript"] else carries.replace("T", "")})
    frame = pd.DataFrame(records)
    frame.drop(columns="carries").to_csv(out / "manifest.csv", index=False)
    return frame


@pytest.fixture(scope="module", params=["audio", "text", "image", "mixed"])
def corpus_run(request, demo, tmp_path_factory):
    kind = request.param
    work = project_copy(tmp_path_factory.mktemp(f"project_{kind}"), OVERRIDES)
    kind_of = (lambda i: KINDS[i % 4]) if kind == "mixed" else (lambda i: kind)
    rows = derive(*demo, work / "data" / "corpus", kind_of)
    run(["dvc", "repro", "evaluate"], work)
    read = lambda name: json.loads((work / "metrics" / name).read_text())  # noqa: E731
    return kind, rows, read("cv.json"), read("mer_multi.json"), read("ablation.json")


MAIN = {"audio": "A", "text": "T", "image": "V", "mixed": "AVT"}


def coverage(rows: pd.DataFrame, subset: str) -> tuple[int, int]:
    """(items with one of the subset's modalities, those of them reaching it only through a face, which
    has no visual input when no face is detected in it)."""
    shared = rows["carries"].map(lambda c: set(c) & set(subset))
    return int((shared.str.len() > 0).sum()), int((shared == {"V"}).sum())


def labelled(rows: pd.DataFrame, split: str) -> pd.DataFrame:
    return rows[(rows["split"] == split) & (rows["label"] != "")]


def test_each_corpus_trains_and_evaluates_on_the_modalities_it_has(corpus_run):
    kind, rows, cv, multi, ablation = corpus_run
    assert cv["main_subset"] == MAIN[kind]
    assert [r["subset"] for r in cv["runs"]] == (["A", "V", "T", "AV", "AT", "VT", "AVT"] if kind == "mixed"
                                                 else [MAIN[kind]])
    assert cv["labels"] == multi["labels"] == ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    assert np.isfinite(multi["f1_weighted"]) and multi["n"] > 0
    for modality, n in cv["train_items_with"].items():
        expected, faces_only = coverage(labelled(rows, "train"), modality[0].upper())
        assert expected - 0.3 * faces_only <= n <= expected, (modality, n, expected)


def test_every_figure_scores_every_item_and_says_how_many_its_modalities_cover(corpus_run):
    kind, rows, cv, multi, ablation = corpus_run
    usable = labelled(rows, "test1")
    usable = usable[usable["carries"] != ""]  # a row with no media and no transcript is a reject of prepare
    assert multi["n"] == len(usable)
    for subset, record in ablation.items():
        assert record["multi_n"] == len(usable), record  # the items the subset misses from the training prior
        expected, faces_only = coverage(labelled(rows, "test1"), subset)
        covered = record["multi_n"] - record["multi_fallback"]
        assert expected - 0.3 * faces_only <= covered <= expected, record
        assert record["cv_n"] == next(r for r in cv["runs"] if r["subset"] == subset)["items"]
    if kind == "mixed":  # one modality alone covers about half the items, more modalities cover more
        n = {subset: r["multi_n"] - r["multi_fallback"] for subset, r in ablation.items()}
        assert n["A"] < n["AT"] < n["AVT"] and n["T"] < n["AT"]


RAVDESS_CODES = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05", "worried": "06", "surprise": "08"}
RAVDESS_8 = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def ravdess_corpus(demo_root: Path, rows: pd.DataFrame, out: Path) -> dict[str, str]:
    """The demo's labelled clips as RAVDESS audio-only WAVs (Actor_NN/03-01-EE-II-SS-RR-NN.wav);
    returns file stem -> RAVDESS label. Intensity, statement and repetition keep the names unique."""
    taken: dict[tuple[str, int], int] = {}
    truth = {}
    for row in rows[rows["label"] != ""].to_dict("records"):
        code, actor = RAVDESS_CODES[row["label"]], int(row["speaker"].removeprefix("spk")) + 1
        n = taken[(code, actor)] = taken.get((code, actor), -1) + 1
        if n >= (4 if code == "01" else 8):  # neutral has no strong intensity
            continue
        stem = f"03-01-{code}-{n // 4 + 1:02d}-{n // 2 % 2 + 1:02d}-{n % 2 + 1:02d}-{actor:02d}"
        (out / f"Actor_{actor:02d}").mkdir(parents=True, exist_ok=True)
        write_wav(out / f"Actor_{actor:02d}" / f"{stem}.wav", read_audio_file(demo_root / row["path"], AUDIO_RATE), AUDIO_RATE)
        truth[stem] = RAVDESS_8[int(code) - 1]
    return truth


def test_ravdess_named_audio_with_its_eight_classes_and_speaker_folds(demo, tmp_path, monkeypatch):
    overrides = OVERRIDES | {"prepare": {"adapter": "ravdess", "root": "data/corpus", "labels": RAVDESS_8,
                                         "label_map": {}, "options": {"test_speakers": ["7", "8"]}},
                             "train": OVERRIDES["train"] | {"group_by": "speaker"}}
    work = project_copy(tmp_path, overrides)
    truth = ravdess_corpus(*demo, work / "data" / "corpus")
    run(["dvc", "repro", "report"], work)
    manifest = pd.read_parquet(work / "data" / "manifest.parquet").set_index("sample_id")
    assert manifest["label"].to_dict() == truth and not manifest["has_video"].any()
    cv = json.loads((work / "metrics" / "cv.json").read_text())
    multi = json.loads((work / "metrics" / "mer_multi.json").read_text())
    assert cv["labels"] == multi["labels"] == RAVDESS_8
    assert [r["subset"] for r in cv["runs"]] == ["A", "T", "AT"]  # the spoken statement is the transcript
    assert multi["n"] == int(manifest["speaker"].isin(["7", "8"]).sum()) > 0
    assert cv["runs"][0]["items"] == int((manifest["split"] == "train").sum())
    per_class = pd.read_csv(work / "metrics" / "per_class_f1.csv")
    assert per_class["label"].tolist() == RAVDESS_8
    predictions = pd.read_parquet(work / "models" / "predictions.parquet")
    assert [c for c in predictions.columns if c.startswith("logit_")] == [f"logit_{c}" for c in RAVDESS_8]
    # the report: every class in the confusion matrix and the per-class tables, calm and disgust (no item) too
    assert_every_class_shown(work / "metrics", tuple(RAVDESS_8), tmp_path, monkeypatch)
    assert "| calm |" in (work / "reports" / "summary.md").read_text()
