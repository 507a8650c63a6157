"""The generated demo corpus: real H.264/AAC files, correct manifest, determinism, detectable faces,
and an audio emotion signal that follows its strength parameter."""

from dataclasses import replace

import av
import numpy as np
import pandas as pd
import pytest

from pipeline.demo import DemoSpec, generate_corpus
from pipeline.labels import MER_LABELS
from pipeline.media.decode import decode_clip
from pipeline.media.faces import extract_faces, make_detector

TINY = DemoSpec(n_train=6, n_test1=2, n_test2=2, n_test3_labelled=2, n_unlabelled=4, seconds=1.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, pd.read_csv(generate_corpus(out, TINY, progress=False), keep_default_na=False, na_values=[""])


def test_clips_are_h264_with_aac(corpus):
    root, manifest = corpus
    for rel in manifest["path"]:
        with av.open(str(root / rel)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert container.streams.audio[0].codec_context.name == "aac"


def test_manifest_has_every_split_and_hides_unlabelled_truth(corpus):
    _, manifest = corpus
    assert manifest["split"].value_counts().to_dict() == {"train": 6, "test3": 6, "test1": 2, "test2": 2}
    unlabelled = manifest["label"].isna()
    assert unlabelled.sum() == 4 and (manifest.loc[unlabelled, "split"] == "test3").all()
    assert manifest["true_label"].isin(MER_LABELS).all() and manifest.loc[~unlabelled, "label"].isin(MER_LABELS).all()
    assert manifest["valence"].dropna().between(-5, 5).all()
    assert (manifest["valence"].dropna() * 4 % 1 == 0).all()  # 0.25 steps


def test_same_seed_same_corpus(corpus, tmp_path):
    root, manifest = corpus
    again = pd.read_csv(generate_corpus(tmp_path, TINY, progress=False), keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(manifest, again)
    first = decode_clip(root / manifest["path"][0], 5, 16)
    second = decode_clip(tmp_path / manifest["path"][0], 5, 16)
    np.testing.assert_array_equal(first.audio, second.audio)
    np.testing.assert_array_equal(first.frames, second.frames)


def test_default_detector_finds_the_face(corpus):
    root, manifest = corpus
    detector = make_detector("haar")
    found = [extract_faces(decode_clip(root / p, 5, 16).frames, detector).found for p in manifest["path"][:6]]
    assert np.concatenate(found).mean() >= 0.8


def mean_pitch_by_class(root, manifest) -> dict[str, float]:
    import librosa

    pitches = {}
    for rel, label in zip(manifest["path"], manifest["true_label"]):
        audio = decode_clip(root / rel, 1, 1).audio
        f0, voiced, _ = librosa.pyin(audio, fmin=60, fmax=500, sr=16000, frame_length=1024)
        pitches.setdefault(label, []).append(np.nanmean(f0[voiced]))
    return {k: float(np.mean(v)) for k, v in pitches.items()}


@pytest.mark.slow
def test_audio_strength_controls_the_prosody_gap(tmp_path):
    spec = replace(TINY, n_train=24, n_unlabelled=0, n_test3_labelled=0)
    gaps = []
    for strength in (0.0, 1.0):
        root = tmp_path / f"s{strength}"
        manifest = pd.read_csv(generate_corpus(root, replace(spec, audio_strength=strength), progress=False))
        pitch = mean_pitch_by_class(root, manifest)
        gaps.append(max(pitch.values()) - min(pitch.values()))
    assert gaps[1] > 2 * gaps[0]
