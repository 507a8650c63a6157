"""The MER 2024 / 2025 / 2026 adapters on generated releases, and extraction from what a release ships
(aligned faces, audio, subtitles) instead of decoding and detecting."""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError, ExtractConfig, PrepareConfig
from pipeline.datasets.editions import parse_label_list
from pipeline.datasets.prepare import prepare
from pipeline.demo.releases import CHINESE_MARK, FILES, ReleaseSpec, write_release
from pipeline.extract import extract, wanted_rows
from pipeline.media.decode import clip_hash, read_audio_file, read_face_array
from pipeline.store.media import MediaStore

SMALL = {"n_train": 6, "n_candidates": 4, "n_pool": 4, "seconds": 0.6, "fps": 10}
OPTIONS = {  # each shape's prepare.options, as recipes/<shape>.yaml gives them
    "mer2024": {"audio": "audio", "subtitles": "subtitle.csv"},
    "mer2025": {"test_labels": "track1_test.csv",
                "label_lists": ["track2_train_ovmerd.csv", "track2_train_mercaptionplus.csv"]},
    "mer2026": {"train": "track1_train.csv", "candidates": "track1_track2_candidate.csv",
                "test_labels": "track1_test.csv", "language": "english",
                "label_lists": ["track2_train_human.csv", "track2_train_mercaptionplus.csv"]},
}
ADAPTER = {"mer2024": "mer2024", "mer2025": "mer2025", "mer2026": "mer2025"}


@pytest.fixture(scope="module", params=["mer2024", "mer2025", "mer2026"])
def release(request, tmp_path_factory) -> tuple[str, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp(request.param)
    rows = write_release(root, ReleaseSpec(shape=request.param, with_video=request.param == "mer2025", **SMALL))
    return request.param, root, pd.DataFrame(rows).set_index("name")


def run_prepare(shape: str, root: Path, tmp: Path, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    cfg = PrepareConfig(adapter=ADAPTER[shape], root=str(root), options=OPTIONS[shape] | options, max_reject_rate=0.5)
    result = prepare(cfg, tmp / "manifest.parquet", tmp / "rejects.csv")
    return result.manifest.set_index("sample_id"), result.rejects


def test_splits_labels_media_and_texts(release, tmp_path):
    shape, root, truth = release
    manifest, rejects = run_prepare(shape, root, tmp_path)
    assert rejects.empty and sorted(manifest.index) == sorted(truth.index)
    assert (manifest["split"] == truth["split"].reindex(manifest.index)).all()
    train, candidates, pool = (manifest[manifest["split"] == s] for s in ("train", "test1", "test3"))
    assert (train["label"] == truth.loc[train.index, "label"]).all()
    if shape == "mer2024":  # no test label file named: the candidates are unlabelled, only predicted
        assert candidates["label"].isna().all()
    else:
        assert (candidates["label"] == truth.loc[candidates.index, "label"]).all()
    assert pool["label"].isna().all() and len(pool) == SMALL["n_pool"]
    assert manifest["has_audio"].all() and manifest["has_video"].all()
    spoken = truth["subtitle"].reindex(manifest.index)
    english = shape == "mer2026"
    expected = [(t if english or not t else CHINESE_MARK + t) if isinstance(t, str) else "" for t in spoken]
    assert manifest["transcript"].tolist() == expected
    if shape == "mer2024":
        assert manifest["face_path"].isna().all() and manifest["label_list"].isna().all()
        assert manifest["path"].str.startswith(("video-labeled/", "video-unlabeled-with-test2noise/")).all()
        assert train["audio_path"].isna().all() and manifest.loc[pool.index, "audio_path"].notna().all()
        return
    assert (manifest["face_path"] == [f"openface_face/{n}/{n}.npy" for n in manifest.index]).all()
    assert (manifest["audio_path"] == [f"audio/{n}.wav" for n in manifest.index]).all()
    assert manifest["path"].notna().all() == (shape == "mer2025")   # mer2026 is laid out without video/
    listed = manifest["label_list"].dropna()   # human lists for train, automatic ones for the pool
    assert set(listed.index) == set(train.index) | set(pool.index)
    assert (listed == truth.loc[listed.index, "label_list"]).all()


def test_language_option_and_unknown_language(release, tmp_path):
    shape, root, truth = release
    if shape == "mer2024":
        pytest.skip("the MER 2024 labelled clips' transcripts are Chinese only")
    other = "chinese" if shape == "mer2026" else "english"
    manifest, _ = run_prepare(shape, root, tmp_path, language=other)
    said = manifest["transcript"][manifest["transcript"] != ""]
    assert said.str.startswith(CHINESE_MARK).all() == (other == "chinese")
    with pytest.raises(ConfigError, match="prepare.options.language"):
        run_prepare(shape, root, tmp_path, language="french")


def append_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def test_rejects_with_their_reasons(release, tmp_path):
    shape, root, truth = release
    train_file = FILES[shape][0]
    original = (root / train_file).read_text()
    first = truth.index[0]
    width = len(original.splitlines()[0].split(","))
    try:  # a name listed twice, and a name with none of its media and no subtitle
        append_rows(root / train_file, [[first, "happy"] + [""] * (width - 2), ["sample_99999999", "sad"] + [""] * (width - 2)])
        manifest, rejects = run_prepare(shape, root, tmp_path)
    finally:
        (root / train_file).write_text(original)
    reasons = dict(zip(rejects["sample_id"], rejects["reason"]))
    assert len(reasons) == 2 and reasons[first] == f"duplicate sample id {first!r}"
    assert reasons["sample_99999999"] == "no media and no transcript: nothing to recognise"
    assert manifest.loc[first, "label"] == truth.loc[first, "label"] and "sample_99999999" not in manifest.index


def test_label_outside_the_set_is_a_reject(tmp_path):
    root = tmp_path / "r"
    rows = write_release(root, ReleaseSpec(**(SMALL | {"n_train": 3, "n_candidates": 1, "n_pool": 1})))
    path = root / "track1_train_disdim.csv"
    path.write_text(path.read_text().replace(f"{rows[1]['name']},{rows[1]['label']},", f"{rows[1]['name']},fear,"))
    manifest, rejects = run_prepare("mer2025", root, tmp_path)
    assert rejects["reason"].tolist() == [f"unknown label 'fear' (known: {', '.join(PrepareConfig().labels)}; "
                                          f"map others with prepare.label_map)"]
    assert rows[1]["name"] not in manifest.index


def test_missing_release_file_names_the_option(tmp_path):
    root = tmp_path / "r"
    write_release(root, ReleaseSpec(**(SMALL | {"n_train": 2, "n_candidates": 1, "n_pool": 1})))
    with pytest.raises(Exception, match="track1_train.csv not found"):
        run_prepare("mer2025", root, tmp_path, train="track1_train.csv")


def test_parse_label_list():
    assert parse_label_list("['excited', 'joyful', 'happy']") == ("excited", "joyful", "happy")
    assert parse_label_list('["担心", "紧张"]') == ("担心", "紧张")
    assert parse_label_list("calm, relaxed, calm") == ("calm", "relaxed")
    assert parse_label_list("[]") == () and parse_label_list("") == ()


def test_read_face_array_samples_resizes_and_turns_bgr_to_rgb(tmp_path):
    bgr = np.zeros((40, 112, 112, 3), np.uint8)
    bgr[..., 0] = np.arange(40)[:, None, None]   # blue channel: the frame index
    np.save(tmp_path / "f.npy", bgr)
    faces, picks = read_face_array(tmp_path / "f.npy", max_frames=8, size=64)
    assert faces.shape == (8, 64, 64, 3) and picks[0] == 0 and picks[-1] == 39
    assert (faces[..., 2] == picks[:, None, None]).all() and not faces[..., 0].any()
    np.save(tmp_path / "e.npy", np.array([]))   # what np.save([]) writes for a clip without a face
    assert read_face_array(tmp_path / "e.npy", 8, 112)[0].shape == (0, 112, 112, 3)
    np.save(tmp_path / "bad.npy", np.zeros((3, 112, 112), np.float32))
    with pytest.raises(Exception, match="expected \\(frames, height, width, 3\\) uint8"):
        read_face_array(tmp_path / "bad.npy", 8, 112)


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as fh:
        return np.frombuffer(fh.readframes(fh.getnframes()), "<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def mer2025(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("mer2025v")
    write_release(root, ReleaseSpec(with_video=True, **SMALL))
    tmp = tmp_path_factory.mktemp("prepared")
    manifest, _ = run_prepare("mer2025", root, tmp)
    return root, manifest.reset_index()


def test_extract_reads_the_shipped_faces_audio_and_subtitles(mer2025, tmp_path):
    root, manifest = mer2025
    # lossless crops (face_quality 0): the shipped faces as they are
    cfg = ExtractConfig(face_source="shipped", audio_source="shipped", max_frames=4, workers=1, face_quality=0)
    summary, failures = extract(manifest, root, tmp_path / "store", cfg)
    assert not failures and summary["processed"] == len(manifest)
    store = MediaStore(tmp_path / "store")
    view = store.view().set_index("sample_id")
    for row in manifest.itertuples():
        item = store.load(view.loc[[row.sample_id]].reset_index().iloc[0])
        faces, _ = read_face_array(root / row.face_path, 4, 112)
        assert np.array_equal(item.faces, faces) and item.found.all() and len(faces) <= 4
        assert json.loads(view.loc[row.sample_id, "meta"])["shipped"] == ["faces", "audio"]
        assert np.abs(item.audio - wav_samples(root / row.audio_path)).max() < 1e-4
        assert item.transcript == row.transcript and item.transcript_source == "given"
    empty = [n for n in manifest["sample_id"] if np.load(root / f"openface_face/{n}/{n}.npy").size == 0]
    assert empty and summary["faces"]["all"]["no_face"] == len(empty)
    assert all("shipped faces array is empty" in s for s in summary["faces"]["all"]["no_face_items"])
    assert (view.loc[empty, "n_frames"] == 0).all() and view.loc[empty, "faces_key"].isna().all()


def test_sources_change_the_cache_key_and_what_is_stored(mer2025, tmp_path):
    root, manifest = mer2025
    keys = {(f, a): wanted_rows(manifest, ExtractConfig(face_source=f, audio_source=a))["params_hash"].iloc[0]
            for f in ("detect", "shipped") for a in ("video", "shipped")}
    assert len(set(keys.values())) == 4
    one = manifest.iloc[[0]]
    detect = ExtractConfig(max_frames=4, workers=1)
    extract(one, root, tmp_path / "store", detect)
    extract(one, root, tmp_path / "store", ExtractConfig(face_source="shipped", max_frames=4, workers=1))
    index = MediaStore(tmp_path / "store").index()
    assert len(index) == 2 and index["faces_key"].nunique() == 2 and index["audio_key"].nunique() == 1
    assert sorted(str(json.loads(m).get("shipped")) for m in index["meta"]) == ["None", "['faces']"]


def test_a_release_without_video_reads_its_shipped_files_whatever_the_sources(mer2025, tmp_path):
    root, manifest = mer2025
    no_video = manifest.assign(path=None).iloc[:3].copy()   # as prepare records a release without video/
    no_video["media_hash"] = [clip_hash([root / a, root / f]) for a, f in zip(no_video["audio_path"], no_video["face_path"])]
    summary, failures = extract(no_video, root, tmp_path / "store", ExtractConfig(max_frames=4, workers=1))
    assert not failures
    metas = [json.loads(m) for m in MediaStore(tmp_path / "store").view()["meta"]]
    assert all(m["shipped"] == ["faces", "audio"] for m in metas)


def test_a_changed_shipped_file_is_refused(mer2025, tmp_path):
    root, manifest = mer2025
    row = manifest.iloc[[0]].copy()
    row["media_hash"] = "0" * 64
    _, failures = extract(row, root, tmp_path / "store", ExtractConfig(face_source="shipped", workers=1))
    assert failures[0]["step"] == "changed" and ".npy" in failures[0]["message"]


def test_a_16k_mono_wav_reads_as_ffmpeg_reads_it(mer2025, tmp_path):
    root, manifest = mer2025
    wav = root / manifest["audio_path"].iloc[0]
    other = tmp_path / "same.bin"   # not .wav: read through FFmpeg
    other.write_bytes(wav.read_bytes())
    direct, through_ffmpeg = read_audio_file(wav), read_audio_file(other)
    assert direct.dtype == through_ffmpeg.dtype == np.float32 and np.array_equal(direct, through_ffmpeg)


def test_test_labels_of_a_name_outside_the_candidates_are_a_reject(tmp_path):
    root = tmp_path / "r"
    rows = write_release(root, ReleaseSpec(**(SMALL | {"n_train": 2, "n_candidates": 2, "n_pool": 1})))
    pool = next(r["name"] for r in rows if r["split"] == "test3")
    append_rows(root / "track1_test.csv", [[pool, "sad"]])
    manifest, rejects = run_prepare("mer2025", root, tmp_path)
    assert rejects[["sample_id", "reason"]].values.tolist() == [
        [pool, "in track1_test.csv but not in track_all_candidates.csv"]]
    assert manifest.loc[pool, "split"] == "test3" and pd.isna(manifest.loc[pool, "label"])


def test_what_the_video_lacks_comes_from_the_shipped_files(mer2025, tmp_path):
    from media_fixtures import write_clip

    root, manifest = mer2025
    row = manifest.iloc[[0]].copy()
    silent = root / "video" / "silent.mp4"   # a video without an audio track, beside the shipped wav
    write_clip(silent, seconds=0.6, fps=10, size=96, with_audio=False)
    row["path"] = "video/silent.mp4"
    row["media_hash"] = clip_hash([silent, root / row["audio_path"].iloc[0], root / row["face_path"].iloc[0]])
    _, failures = extract(row, root, tmp_path / "store", ExtractConfig(max_frames=4, workers=1))  # detect, video
    assert not failures
    store = MediaStore(tmp_path / "store")
    view = store.view()
    assert json.loads(view["meta"].iloc[0])["shipped"] == ["audio"]
    assert np.array_equal(store.load(view.iloc[0]).audio, read_audio_file(root / row["audio_path"].iloc[0]))
