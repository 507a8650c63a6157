"""Any subset of modalities: every media kind through prepare and extract, the RAVDESS and CREMA-D
file-name adapters with label folding, and the label set stored in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from media_fixtures import astronaut_face, write_clip

from pipeline.config import ExtractConfig, PrepareConfig
from pipeline.datasets.prepare import prepare
from pipeline.extract import extract
from pipeline.labels import MER_LABELS, manifest_labels
from pipeline.modalities import ALL_SUBSETS, MODALITIES, parse_subset, subset_code
from pipeline.store.media import MediaStore

SECONDS = 1.0
RATE = 16000
RAVDESS_8 = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FOLD_TO_MER = {"calm": "neutral", "fearful": "worried", "surprised": "surprise", "disgust": ""}


def write_frames(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    face = cv2.cvtColor(cv2.resize(astronaut_face(), (96, 112)), cv2.COLOR_RGB2BGR)
    for i in range(n):
        frame = np.full((160, 160, 3), 110, np.uint8)
        frame[24:136, 32 + i % 3:128 + i % 3] = face
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), frame)
    return folder


# name -> (writer, has_video, has_audio)
KINDS = {
    "av.mp4": (lambda p: write_clip(p, SECONDS, 5, 96), True, True),
    "mute.mp4": (lambda p: write_clip(p, SECONDS, 5, 96, with_audio=False), True, False),
    "stereo44k.wav": (lambda p: write_clip(p, SECONDS, with_video=False, audio_rate=44100, channels=2), False, True),
    "mono22k.flac": (lambda p: write_clip(p, SECONDS, with_video=False, audio_rate=22050, channels=1), False, True),
    "stereo48k.mp3": (lambda p: write_clip(p, SECONDS, with_video=False, audio_rate=48000, channels=2), False, True),
    "mono48k.ogg": (lambda p: write_clip(p, SECONDS, with_video=False, audio_rate=48000, channels=1), False, True),
    "still.png": (lambda p: cv2.imwrite(str(p), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR)), True, False),
    "frames": (lambda p: write_frames(p, 12), True, False),
}


@pytest.fixture(scope="module")
def kinds_corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("kinds")
    (root / "media").mkdir()
    rows = []
    for name, (write, _, _) in KINDS.items():
        write(root / "media" / name)
        rows.append({"sample_id": name.split(".")[0], "path": f"media/{name}", "split": "train", "label": "happy"})
    rows.append({"sample_id": "textonly", "path": "", "split": "train", "label": "sad", "transcript": "so sad"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    cfg = PrepareConfig(adapter="csv", root=str(root), options={"manifest": "manifest.csv"})
    manifest = prepare(cfg, root / "m.parquet", root / "r.csv").manifest
    return root, manifest


def test_prepare_records_which_modalities_each_item_has(kinds_corpus):
    _, manifest = kinds_corpus
    got = manifest.set_index("sample_id")
    for name, (_, has_video, has_audio) in KINDS.items():
        sid = name.split(".")[0]
        assert (got.loc[sid, "has_video"], got.loc[sid, "has_audio"]) == (has_video, has_audio), name
    assert not got.loc["textonly", "has_video"] and not got.loc["textonly", "has_audio"]
    assert got.loc["textonly", "transcript"] == "so sad" and pd.isna(got.loc["av", "transcript"])
    assert got["media_hash"].drop("textonly").notna().all()


def test_extract_produces_only_what_exists(kinds_corpus, tmp_path):
    root, manifest = kinds_corpus
    summary, failures = extract(manifest, root, tmp_path / "media.zarr", ExtractConfig(workers=1, fps=5, max_frames=8))
    assert failures == [] and summary["processed"] == len(manifest)
    store = MediaStore(tmp_path / "media.zarr")
    items = {row.sample_id: store.load(row) for row in store.view().itertuples()}
    for name, (_, has_video, has_audio) in KINDS.items():
        item = items[name.split(".")[0]]
        assert (item.audio is not None) == has_audio, name
        assert (item.faces is not None) == has_video, name
        if has_audio:  # any rate and channel count -> 16 kHz mono at the tone's level (0.3 peak)
            assert abs(len(item.audio) - SECONDS * RATE) < 0.1 * RATE, (name, len(item.audio))
            assert item.audio.std() == pytest.approx(0.3 / np.sqrt(2), rel=0.1), name
        assert pd.isna(item.transcript) and item.transcript_source == "missing"
    assert len(items["still"].faces) == 1 and items["still"].found.all()
    assert len(items["frames"].faces) == 8 and items["frames"].found.sum() >= 6  # 12 frames spread to max_frames
    text = items["textonly"]
    assert text.audio is None and text.faces is None and text.transcript == "so sad"


def test_a_frame_folder_without_images_is_rejected(tmp_path):
    (tmp_path / "empty_frames").mkdir()
    (tmp_path / "empty_frames" / "notes.txt").write_text("no frames")
    pd.DataFrame([{"path": "empty_frames", "split": "train"}]).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = PrepareConfig(adapter="csv", root=str(tmp_path), max_reject_rate=1.0)
    result = prepare(cfg, tmp_path / "m.parquet", tmp_path / "r.csv")
    assert result.manifest.empty and "folder holds no image frames" in result.rejects["reason"].iloc[0]


# ---------------------------------------------------------------- RAVDESS and CREMA-D

RAVDESS_FILES = {
    "Actor_12/01-01-06-01-02-01-12.mp4": "av",     # fearful, normal, statement 2, actor 12
    "Actor_12/03-01-06-01-02-01-12.wav": "audio",  # the same performance, audio only: excluded
    "Actor_12/03-01-02-02-01-02-12.wav": "audio",  # calm, strong, statement 1, repetition 2
    "Actor_03/02-01-08-02-01-01-03.mp4": "video",  # surprised, video only
    "Actor_03/03-01-07-01-01-01-03.wav": "audio",  # disgust
    "Actor_03/03-01-01-01-01-01-03.wav": "audio",  # neutral
    "Actor_03/03-01-05-02-02-01-03.wav": "audio",  # angry
    "Actor_03/03-01-09-01-01-01-03.wav": "audio",  # emotion 09 does not exist
    "Actor_03/readme.wav": "audio",                # not a RAVDESS name
}


def write_named(root: Path, files: dict[str, str]) -> None:
    for rel, kind in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, 0.4, 5, 64, with_video=kind != "audio", with_audio=kind != "video", audio_rate=22050)


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    write_named(root, RAVDESS_FILES)
    return root


def run_prepare(root: Path, tmp_path: Path, **overrides):
    cfg = PrepareConfig(**{"root": str(root), "max_reject_rate": 0.5, **overrides})
    result = prepare(cfg, tmp_path / "m.parquet", tmp_path / "r.csv")
    return result.manifest.set_index("sample_id"), result.rejects.set_index("sample_id")


def test_ravdess_names_give_label_intensity_speaker_and_statement(ravdess, tmp_path):
    manifest, rejects = run_prepare(ravdess, tmp_path, adapter="ravdess", labels=RAVDESS_8, options={"test_speakers": ["3"]})
    av_item = manifest.loc["01-01-06-01-02-01-12"]
    assert (av_item["label"], av_item["speaker"], av_item["split"]) == ("fearful", "12", "train")
    assert av_item["transcript"] == "Dogs are sitting by the door" and av_item["has_video"] and av_item["has_audio"]
    assert json.loads(av_item["meta"]) == {"modality": "audio-video", "vocal_channel": "speech", "intensity": "normal",
                                           "statement": "02", "repetition": 1, "gender": "female"}
    calm = manifest.loc["03-01-02-02-01-02-12"]
    assert calm["label"] == "calm" and json.loads(calm["meta"])["intensity"] == "strong"
    assert calm["transcript"] == "Kids are talking by the door" and not calm["has_video"]
    video_only = manifest.loc["02-01-08-02-01-01-03"]
    assert video_only["has_video"] and not video_only["has_audio"] and video_only["split"] == "test1"
    assert set(manifest["label"]) == {"fearful", "calm", "surprised", "disgust", "neutral", "angry"}
    assert rejects.loc["03-01-06-01-02-01-12", "excluded"]  # one item per performance: the AV file is kept
    assert "same performance" in rejects.loc["03-01-06-01-02-01-12", "reason"]
    assert "unknown RAVDESS code" in rejects.loc["Actor_03/03-01-09-01-01-01-03.wav", "reason"]
    assert "not RAVDESS" in rejects.loc["Actor_03/readme.wav", "reason"]
    assert manifest_labels(pd.read_parquet(tmp_path / "m.parquet")) == RAVDESS_8


def test_ravdess_folded_onto_mer_labels(ravdess, tmp_path):
    manifest, rejects = run_prepare(ravdess, tmp_path, adapter="ravdess", label_map=FOLD_TO_MER)
    assert manifest.loc["03-01-02-02-01-02-12", "label"] == "neutral"     # calm
    assert manifest.loc["01-01-06-01-02-01-12", "label"] == "worried"     # fearful
    assert manifest.loc["02-01-08-02-01-01-03", "label"] == "surprise"    # surprised
    assert "03-01-07-01-01-01-03" not in manifest.index                   # disgust: left out, and said so
    assert rejects.loc["03-01-07-01-01-01-03", "excluded"]
    assert "excluded by prepare.label_map" in rejects.loc["03-01-07-01-01-01-03", "reason"]
    assert set(manifest["label"]) <= set(MER_LABELS)
    assert manifest_labels(pd.read_parquet(tmp_path / "m.parquet")) == MER_LABELS


def test_excluded_items_do_not_count_as_rejects(ravdess, tmp_path):
    # 2 real rejects (bad names) of 8 items: 25%; the 2 excluded rows would push it over 30% if counted
    run_prepare(ravdess, tmp_path, adapter="ravdess", label_map=FOLD_TO_MER, max_reject_rate=0.3)


def test_label_map_onto_a_label_outside_the_set_is_a_config_error(ravdess, tmp_path):
    with pytest.raises(ValueError, match="outside prepare.labels"):
        run_prepare(ravdess, tmp_path, adapter="ravdess", label_map={"calm": "relaxed"})


CREMAD_FILES = {
    "VideoFlash/1001_DFA_ANG_XX.flv": "av",
    "AudioWAV/1001_DFA_ANG_XX.wav": "audio",   # same performance as the FLV: excluded
    "AudioWAV/1002_IEO_HAP_HI.wav": "audio",
    "VideoFlash/1002_TIE_SAD_LO.flv": "av",
    "AudioWAV/1003_ITS_FEA_MD.wav": "audio",
    "AudioWAV/1003_WSI_XYZ_MD.wav": "audio",   # unknown emotion code
}


def test_cremad_names_flv_video_and_wav_audio(tmp_path):
    root = tmp_path / "cremad"
    write_named(root, CREMAD_FILES)
    manifest, rejects = run_prepare(root, tmp_path, adapter="cremad", label_map=FOLD_TO_MER, options={"test_speakers": ["1002"]})
    flv = manifest.loc["1001_DFA_ANG_XX"]
    assert flv["path"] == "VideoFlash/1001_DFA_ANG_XX.flv" and flv["has_video"] and flv["has_audio"]
    assert (flv["label"], flv["speaker"], flv["transcript"]) == ("angry", "1001", "Don't forget a jacket")
    wav = manifest.loc["1002_IEO_HAP_HI"]
    assert not wav["has_video"] and wav["has_audio"] and wav["split"] == "test1"
    assert json.loads(wav["meta"]) == {"modality": "audio", "sentence": "IEO", "intensity": "high"}
    assert manifest.loc["1003_ITS_FEA_MD", "label"] == "worried"
    assert rejects.loc["1001_DFA_ANG_XX", "excluded"]  # the WAV twin of the FLV item
    assert "unknown CREMA-D code" in rejects.loc["AudioWAV/1003_WSI_XYZ_MD.wav", "reason"]
    summary, failures = extract(manifest.reset_index(), root, tmp_path / "media.zarr", ExtractConfig(workers=1))
    assert failures == [] and summary["processed"] == 4
    store = MediaStore(tmp_path / "media.zarr")
    flv_item = store.load(next(r for r in store.view().itertuples() if r.sample_id == "1001_DFA_ANG_XX"))
    assert flv_item.faces is not None and len(flv_item.audio) > 0.3 * RATE


def test_the_modality_table_spells_subsets_in_branch_order():
    assert ALL_SUBSETS == ("A", "V", "T", "AV", "AT", "VT", "AVT")
    assert parse_subset("TA") == ("audio", "text") and parse_subset("AVT") == tuple(MODALITIES)
    assert all(subset_code(parse_subset(code)) == code for code in ALL_SUBSETS)
    with pytest.raises(ValueError, match="made of A, V, T"):
        parse_subset("AX")


def test_a_bad_modality_in_params_stops_at_load(tmp_path):
    from pipeline.config import ConfigError, load_section

    for train, message in (("{features: {audoi: egemaps}}", "train.features"), ("{ablation: [AVX]}", "train.ablation")):
        (tmp_path / "params.yaml").write_text(f"train: {train}\n")
        with pytest.raises(ConfigError, match=message):
            load_section("train", tmp_path / "params.yaml")


def test_empty_inputs_of_each_modality_have_their_reason():
    empty = {"audio": np.zeros(1600, np.float32), "visual": np.zeros((0, 112, 112, 3), np.uint8), "text": "  "}
    full = {"audio": np.ones(1600, np.float32) * 0.1, "visual": np.zeros((2, 112, 112, 3), np.uint8), "text": "hi"}
    assert all(MODALITIES[m].is_empty(x) for m, x in empty.items())
    assert not any(MODALITIES[m].is_empty(x) for m, x in full.items())
