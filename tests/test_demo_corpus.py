"""pipeline.demo: the synthetic corpus is real MP4, labelled as the manifest says, deterministic, shows a
detectable face, and its voice carries the emotion in proportion to audio_strength."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.config import DemoConfig
from pipeline.demo import generate_corpus
from pipeline.demo.corpus import COLUMNS
from pipeline.demo.voice import EMOTIONS
from pipeline.labels import MER_LABELS
from pipeline.media.decode import decode_clip

SPEC = DemoConfig(seed=3, n_train=4, n_test1=2, n_test2=2, n_test3_labelled=2, n_unlabelled=2, seconds=1.0,
                  n_speakers=2)
FPS = SPEC.fps


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("demo"), SPEC, progress=False, workers=2)


@pytest.fixture(scope="module")
def decoded(corpus):
    return [decode_clip(corpus.parent / row["path"], fps=FPS, max_frames=100) for row in _rows(corpus)]


def test_clips_are_h264_aac_mp4(corpus):
    for row in _rows(corpus):
        path = corpus.parent / row["path"]
        assert path.suffix == ".mp4" and path.parent.name == "clips"
        with av.open(str(path)) as container:
            assert container.format.name.startswith("mov,mp4")
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
            assert (video.width, video.height) == (SPEC.size, SPEC.size)
            assert audio.codec_context.name == "aac" and audio.channels == 1


def test_decoded_length_matches_spec(decoded):
    for clip in decoded:
        assert len(clip.frames) == round(SPEC.seconds * FPS)
        assert abs(len(clip.audio) / clip.sample_rate - SPEC.seconds) < 0.1
        assert np.sqrt(np.mean(clip.audio ** 2)) > 0.005  # speech, not silence


def test_manifest_columns_splits_and_labels(corpus):
    with open(corpus, encoding="utf-8") as f:
        assert f.readline().strip() == ",".join(COLUMNS)
    rows = _rows(corpus)
    splits = [row["split"] for row in rows]
    assert splits == ["train"] * 4 + ["test1"] * 2 + ["test2"] * 2 + ["test3"] * 4
    for row in rows:
        assert row["true_label"] in MER_LABELS
        valence = float(row["true_valence"])
        assert -5 <= valence <= 5 and valence * 4 == round(valence * 4)
        assert row["speaker"] in {"spk00", "spk01"}
    labelled, unlabelled = rows[:-SPEC.n_unlabelled], rows[-SPEC.n_unlabelled:]
    assert all(row["label"] == row["true_label"] and row["valence"] == row["true_valence"] for row in labelled)
    assert all(row["label"] == "" and row["valence"] == "" for row in unlabelled)
    for split in ("train", "test1", "test2", "test3"):
        assert {row["speaker"] for row in rows if row["split"] == split} == {"spk00", "spk01"}


def test_same_spec_gives_identical_corpus(corpus, decoded, tmp_path):
    """Serial here, two workers in the fixture: the same bytes. Decoded media are compared first, so a
    failure says whether the content or only the encoding differs."""
    again = generate_corpus(tmp_path, SPEC, progress=False, workers=1)
    assert again.read_bytes() == corpus.read_bytes()
    for row, first in zip(_rows(again), decoded):
        second = decode_clip(tmp_path / row["path"], fps=FPS, max_frames=100)
        np.testing.assert_array_equal(second.audio, first.audio, err_msg=f"{row['path']}: decoded audio differs")
        np.testing.assert_array_equal(second.frames, first.frames, err_msg=f"{row['path']}: decoded frames differ")
        same = (tmp_path / row["path"]).read_bytes() == (corpus.parent / row["path"]).read_bytes()
        assert same, f"{row['path']}: same decoded media, different encoded bytes"


def test_haar_finds_the_face_after_h264(decoded):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    frames = [frame for clip in decoded for frame in clip.frames]
    found = [len(cascade.detectMultiScale(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), scaleFactor=1.1,
                                          minNeighbors=5)) > 0 for f in frames]
    assert np.mean(found) >= 0.8


def _loudness_slope(root: Path, spec: DemoConfig) -> float:
    """dB of clip loudness per dB that the clip's class prescribes (EMOTIONS[label].loudness)."""
    manifest = generate_corpus(root, spec, progress=False, workers=1)
    prescribed, measured = [], []
    for row in _rows(manifest):
        audio = decode_clip(root / row["path"], fps=FPS, max_frames=1).audio
        prescribed.append(EMOTIONS[row["true_label"]].loudness)
        measured.append(20 * np.log10(np.sqrt(np.mean(audio ** 2))))
    return float(np.polyfit(prescribed, measured, 1)[0])


def test_audio_strength_controls_the_emotion_in_the_voice(tmp_path):
    spec = DemoConfig(seed=0, n_train=12, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0,
                      seconds=1.0, n_speakers=2, size=64)
    silent = _loudness_slope(tmp_path / "none", replace(spec, audio_strength=0.0))
    clear = _loudness_slope(tmp_path / "full", replace(spec, audio_strength=1.0))
    assert abs(silent) < 0.2, silent
    assert clear > 0.4, clear
