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

from pipeline.demo.corpus import DemoSpec, generate_corpus
from pipeline.media.decode import decode_clip, read_audio_file
from test_pipeline import project_copy, run

pytestmark = pytest.mark.slow

SPEC = DemoSpec(n_train=30, n_test1=10, n_test2=8, n_test3_labelled=6, n_unlabelled=6, seconds=1.0, fps=10)
OVERRIDES = {
    "prepare": {"adapter": "csv", "root": "data/corpus", "manifest": "manifest.csv"},
    "corrupt": {"robustness_snr_db": []},
    "train": {"folds": 3, "epochs": 15},
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


def test_every_figure_says_how_many_items_it_covers(corpus_run):
    kind, rows, cv, multi, ablation = corpus_run
    for record in ablation:
        expected, faces_only = coverage(labelled(rows, "test1"), record["subset"])
        assert expected - 0.3 * faces_only <= record["multi_n"] <= expected, record
        assert record["cv_n"] == next(r for r in cv["runs"] if r["subset"] == record["subset"])["items"]
    if kind == "mixed":  # one modality alone covers about half the items, more modalities cover more
        n = {r["subset"]: r["multi_n"] for r in ablation}
        assert n["A"] < n["AT"] < n["AVT"] and n["T"] < n["AT"]
