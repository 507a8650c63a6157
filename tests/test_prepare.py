"""Ingest: every reject reason, the reject-rate gate, and the MER 2023 layout with its label npz."""

import io
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from media_fixtures import write_clip

from pipeline.config import ConfigError, PrepareConfig
from pipeline.datasets.mer2023 import read_label_npz
from pipeline.datasets.prepare import TooManyRejects, prepare
from pipeline.errors import InputError


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_clip(path, seconds=0.5, fps=5, size=64)
    return path


def make_corpus(root: Path, clip: Path, rows: list[dict]) -> PrepareConfig:
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for name in ("a", "b", "c", "d"):
        (root / "clips" / f"{name}.mp4").write_bytes(clip.read_bytes())
    (root / "clips" / "broken.mp4").write_text("not a video")
    (root / "clips" / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    (root.parent / "outside.mp4").write_bytes(clip.read_bytes())
    frames = root / "clips" / "frames"      # a frame folder whose second frame links outside the root
    frames.mkdir(exist_ok=True)
    cv2.imwrite(str(frames / "frame_0.png"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(root.parent / "outside.png"), np.zeros((32, 32, 3), np.uint8))
    (frames / "frame_1.png").unlink(missing_ok=True)
    (frames / "frame_1.png").symlink_to(root.parent / "outside.png")
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return PrepareConfig(adapter="csv", root=str(root), options={"manifest": "manifest.csv"}, max_reject_rate=1.0)


GOOD = {"path": "clips/a.mp4", "split": "train", "label": "happy", "valence": 1.5, "transcript": "hi", "speaker": "s1"}

BAD_ROWS = {
    "missing file": {"path": "clips/nope.mp4"},
    "path escapes the data root": {"path": "../outside.mp4"},
    "path escapes the data root: clips/frames/frame_1.png": {"path": "clips/frames"},
    "unknown label": {"path": "clips/b.mp4", "label": "joyful"},
    "unreadable container": {"path": "clips/broken.mp4"},
    "duplicate sample id": {"path": "clips/a.mp4"},
    "unknown split": {"path": "clips/c.mp4", "split": "dev"},
    "valence 9.0 outside": {"path": "clips/d.mp4", "valence": 9.0, "sample_id": "d9"},
    "valence is not a number": {"path": "clips/d.mp4", "valence": "high", "sample_id": "dx"},
    "no media and no transcript": {"path": "", "transcript": "", "sample_id": "empty"},
    "neither a video nor an audio stream": {"path": "clips/subs.srt"},
}


@pytest.mark.parametrize("reason", BAD_ROWS)
def test_each_reject_reason_is_recorded(tmp_path, clip, reason):
    cfg = make_corpus(tmp_path / "corpus", clip, [GOOD, GOOD | BAD_ROWS[reason]])
    result = prepare(cfg, tmp_path / "manifest.parquet", tmp_path / "rejects.csv")
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert len(result.manifest) == 1 and len(rejects) == 1
    assert reason in rejects["reason"].iloc[0]


def test_good_rows_carry_hash_streams_and_mapped_labels(tmp_path, clip):
    rows = [GOOD, GOOD | {"path": "clips/b.mp4", "label": "joy", "valence": "", "transcript": ""},
            GOOD | {"path": "", "transcript": "text only row", "sample_id": "t1", "label": ""}]
    cfg = make_corpus(tmp_path / "corpus", clip, rows)
    cfg = PrepareConfig(**{**cfg.__dict__, "label_map": {"joy": "happy"}})
    manifest = prepare(cfg, tmp_path / "m.parquet", tmp_path / "r.csv").manifest.set_index("sample_id")
    assert manifest.loc["b", "label"] == "happy" and np.isnan(manifest.loc["b", "valence"])
    assert manifest.loc["a", "has_video"] and manifest.loc["a", "has_audio"]
    assert manifest.loc["a", "media_hash"] == manifest.loc["b", "media_hash"]  # same bytes
    assert pd.isna(manifest.loc["t1", "path"]) and pd.isna(manifest.loc["t1", "label"])
    assert pd.read_parquet(tmp_path / "m.parquet").shape[0] == 3


def test_reject_rate_above_threshold_fails_with_summary(tmp_path, clip):
    cfg = make_corpus(tmp_path / "corpus", clip, [GOOD, GOOD | BAD_ROWS["missing file"]])
    cfg = PrepareConfig(**{**cfg.__dict__, "max_reject_rate": 0.2})
    with pytest.raises(TooManyRejects, match=r"1 of 2 rows rejected .*missing file"):
        prepare(cfg, tmp_path / "m.parquet", tmp_path / "r.csv")
    assert (tmp_path / "r.csv").is_file()  # the reasons are written before failing


def write_npz(path: Path, corpora: dict) -> None:
    np.savez(path, **{f"{split}_corpus": np.array(corpus, dtype=object) for split, corpus in corpora.items()})


def test_mer2023_layout_with_label_npz_and_placeholders(tmp_path, clip):
    root = tmp_path / "mer"
    for split, names in {"train": ["sample_00000001", "sample_00000002"], "test1": ["sample_00000003"],
                         "test3": ["samplenew_00000004"]}.items():
        (root / split).mkdir(parents=True)
        for name in names:
            (root / split / f"{name}.avi" if split == "test1" else root / split / f"{name}.mp4").write_bytes(clip.read_bytes())
    (root / "train-label.csv").write_text("name,discrete,valence\nsample_00000001,angry,-2.5\nsample_00000002,sad,-1.75\n")
    (root / "transcription.csv").write_text("name,sentence\nsample_00000001,我很生气\nsample_00000002,\n")
    write_npz(root / "label-6way.npz", {"test1": {"sample_00000003": {"emo": "happy", "val": 2.0}},
                                        "test3": {"samplenew_00000004": {"emo": "neutral", "val": -10}}})
    cfg = PrepareConfig(adapter="mer2023", root=str(root))
    manifest = prepare(cfg, tmp_path / "m.parquet", tmp_path / "r.csv").manifest.set_index("sample_id")
    assert manifest.loc["sample_00000001", ["label", "valence", "transcript"]].tolist() == ["angry", -2.5, "我很生气"]
    assert manifest.loc["sample_00000002", "transcript"] == ""        # NaN sentence: empty, not missing
    assert manifest.loc["sample_00000003", "label"] == "happy"        # from the npz
    assert pd.isna(manifest.loc["samplenew_00000004", "label"])       # placeholder is not a label
    assert pd.isna(manifest.loc["samplenew_00000004", "transcript"])   # no row: ASR may fill it


class Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_label_npz_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "label-6way.npz"
    raw = io.BytesIO()
    np.lib.format.write_array_header_1_0(raw, {"descr": "|O", "fortran_order": False, "shape": ()})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_corpus.npy", raw.getvalue() + pickle.dumps({"x": Evil()}))
    with pytest.raises(InputError, match="refusing to load builtins.print"):
        read_label_npz(path)


@pytest.mark.parametrize("adapter, options, message", [
    ("ravdes", {}, r"prepare.adapter: unknown corpus adapter 'ravdes'; "
                   r"known: cremad, csv, demo, mer2023, mer2024, mer2025, ravdess"),
    ("csv", {"test_speakers": ["1"]}, r"prepare.options: unknown key\(s\) \['test_speakers'\]; valid keys: \['manifest'\]"),
])
def test_adapter_and_its_options_are_checked_when_params_load(tmp_path, adapter, options, message):
    with pytest.raises(ConfigError, match=message):
        PrepareConfig(adapter=adapter, root=str(tmp_path), options=options)
