"""Corrupted views through the real prepare -> extract -> corrupt stages on generated clips."""

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from media_fixtures import astronaut_face, write_clip

from pipeline.config import load_section
from pipeline.corrupt import draw_params
from pipeline.corrupt_views import CONTROL_VIEW, view_specs
from pipeline.evaluation import robustness_curve
from pipeline.labels import MER_LABELS, logit_columns
from pipeline.media.decode import reencode
from pipeline.store.media import MediaStore
from stages import corrupt as corrupt_stage
from stages import extract as extract_stage
from stages import prepare as prepare_stage

LOGIT_COLUMNS = logit_columns(MER_LABELS)

N_TRAIN, N_TEST = 7, 4


def write_params(path, root, **corrupt):
    params = {
        "prepare": {"adapter": "csv", "root": str(root), "options": {"manifest": "manifest.csv"}},
        "extract": {"fps": 4.0, "max_frames": 4, "workers": 1},
        "corrupt": {"robustness_snr_db": [0], "robustness_blur": [4], "blur": [1, 4], **corrupt},
    }
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for i in range(N_TRAIN + N_TEST):
        name = f"clip{i:02d}.mp4"
        write_clip(root / name, seconds=1.0, fps=8, size=128)
        rows.append({"path": name, "split": "train" if i < N_TRAIN else "test2", "label": "happy",
                     "valence": 1.0, "transcript": "hello there"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    work = tmp_path_factory.mktemp("work")
    params = write_params(work / "params.yaml", root)
    prepare_stage.run(params, manifest=work / "manifest.parquet", rejects=work / "rejects.csv")
    extract_stage.run(params, manifest=work / "manifest.parquet", store=work / "clean.zarr",
                      failures=work / "extract_failures.jsonl", faces=work / "faces.json")
    return work, params


def corrupted(work, params, out):
    summaries = corrupt_stage.run(params, manifest=work / "manifest.parquet", clean=work / "clean.zarr", out=out,
                                  failures=work / f"{out.name}_failures.jsonl")
    return summaries


def items(store):
    store = MediaStore(store)
    return {row.sample_id: store.load(row) for row in store.view().itertuples()}


@pytest.fixture(scope="module")
def views(corpus):
    work, params = corpus
    summaries = corrupted(work, params, work / "corrupted.zarr")
    return work, params, summaries


def test_every_view_covers_the_noise_split(views):
    work, _, summaries = views
    assert set(summaries) == {"noisy", "snr0", "blur4", CONTROL_VIEW}
    for name in summaries:
        view = MediaStore(work / "corrupted.zarr" / name).view()
        assert len(view) == N_TEST and set(view["sample_id"]) == {f"clip{i:02d}" for i in range(N_TRAIN, N_TRAIN + N_TEST)}


def test_fixed_snr_view_keeps_faces_and_noises_audio(views):
    work, _, _ = views
    clean, noisy = items(work / "clean.zarr"), items(work / "corrupted.zarr" / "snr0")
    for sid, item in noisy.items():
        assert np.array_equal(item.faces, clean[sid].faces) and np.array_equal(item.found, clean[sid].found)
        meta = item.meta["corruption"]
        assert meta["snr_db"] == 0 and meta["blur"] == 1 and meta["noise"][0].startswith("babble:")
        assert abs(meta["measured_snr_db"]) < 0.1
        assert not np.array_equal(item.audio, clean[sid].audio)


def test_the_control_view_is_the_clean_view_bit_for_bit(views):
    """The control goes through the SNR views' code (babble drawn and mixed in at +inf dB, blur 1): every
    item must come out as the clean one, byte for byte, with the same content keys, so the encoders see the
    same inputs (the feature store holds them once) and every model predicts the same."""
    work, _, _ = views
    clean, control = items(work / "clean.zarr"), items(work / "corrupted.zarr" / CONTROL_VIEW)
    assert len(control) == N_TEST
    for sid, item in control.items():
        for name in ("audio", "faces", "found", "boxes", "frame_time"):
            mine, theirs = getattr(item, name), getattr(clean[sid], name)
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and mine.tobytes() == theirs.tobytes(), name
        meta = item.meta["corruption"]
        assert meta["snr_db"] == np.inf and meta["blur"] == 1 and meta["noise"][0].startswith("babble:")
        assert meta["noise_gain"] == 0 and meta["measured_snr_db"] == np.inf
    keys = ["audio_key", "faces_key", "text_key"]
    mine = MediaStore(work / "corrupted.zarr" / CONTROL_VIEW).view().set_index("sample_id")[keys].sort_index()
    theirs = MediaStore(work / "clean.zarr").view().set_index("sample_id").loc[mine.index, keys]
    pd.testing.assert_frame_equal(mine, theirs)


def test_the_control_comes_with_the_snr_views():
    from pipeline.config import CorruptConfig

    with_snr = view_specs(CorruptConfig(robustness_snr_db=(0.0, 20.0), robustness_blur=()), 0)
    assert list(with_snr) == ["noisy", "snr0", "snr20", CONTROL_VIEW]
    assert with_snr[CONTROL_VIEW].snr == np.inf and with_snr[CONTROL_VIEW].blur == 1 and with_snr[CONTROL_VIEW].noise
    assert list(view_specs(CorruptConfig(robustness_snr_db=(), robustness_blur=(4,)), 0)) == ["noisy", "blur4"]


def test_blur_view_keeps_audio_and_blurs_faces(views):
    work, _, _ = views
    clean, blurred = items(work / "clean.zarr"), items(work / "corrupted.zarr" / "blur4")
    for sid, item in blurred.items():
        assert np.array_equal(item.audio, clean[sid].audio)
        assert item.meta["corruption"]["blur"] == 4 and item.meta["corruption"]["snr_db"] is None
        both = item.found & clean[sid].found
        assert both.any()
        sharpness = [np.abs(np.diff(x[both].astype(float), axis=2)).mean() for x in (item.faces, clean[sid].faces)]
        assert sharpness[0] < 0.8 * sharpness[1], sharpness


def test_noisy_view_records_its_draws(views):
    work, params, _ = views
    spec = view_specs(load_section("corrupt", params), load_section("base", params).seed)["noisy"]
    for sid, item in items(work / "corrupted.zarr" / "noisy").items():
        meta = item.meta["corruption"]
        assert {k: meta[k] for k in ("snr_db", "blur")} == draw_params(spec, sid)
        assert 5 <= meta["snr_db"] <= 10 and {"noise", "noise_offset", "noise_gain", "rescale"} <= set(meta)


def test_rerun_reuses_everything_and_a_fresh_run_is_bit_identical(views, tmp_path):
    work, params, _ = views
    again = corrupted(work, params, work / "corrupted.zarr")
    assert all(s["processed"] == 0 and s["reused"] == N_TEST for s in again.values()), again
    fresh = corrupted(work, params, tmp_path / "corrupted.zarr")
    assert all(s["processed"] == N_TEST for s in fresh.values())
    for name in fresh:
        old, new = items(work / "corrupted.zarr" / name), items(tmp_path / "corrupted.zarr" / name)
        for sid in old:
            assert old[sid].audio.tobytes() == new[sid].audio.tobytes()
            assert old[sid].faces.tobytes() == new[sid].faces.tobytes()


def test_another_seed_gives_other_noise(views, tmp_path):
    work, _, _ = views
    params = write_params(tmp_path / "params.yaml", load_section("prepare", work / "params.yaml").root)
    raw = yaml.safe_load(params.read_text()) | {"base": {"seed": 1}}
    params.write_text(yaml.safe_dump(raw))
    corrupted(work, params, tmp_path / "seed1.zarr")
    seed0, seed1 = items(work / "corrupted.zarr" / "snr0"), items(tmp_path / "seed1.zarr" / "snr0")
    assert all(seed0[sid].audio.tobytes() != seed1[sid].audio.tobytes() for sid in seed0)
    assert all(item.meta["corruption"]["seed"] == 1 for item in seed1.values())


def predictions(test, correct, subset="A"):
    """Joined prediction rows of one test: the first `correct` of 4 items right, valence off by 1."""
    labels = ["happy", "sad", "angry", "neutral"]
    logits = np.zeros((4, len(LOGIT_COLUMNS)))
    for i, label in enumerate(labels):
        logits[i, MER_LABELS.index(label if i < correct else "worried")] = 1.0
    frame = pd.DataFrame(logits, columns=LOGIT_COLUMNS)
    return frame.assign(sample_id=[f"s{i}" for i in range(4)], subset=subset, seed=0, test=test,
                        label=labels, valence=0.0, valence_true=1.0, true_label=labels, fallback=False)


def test_robustness_curve_places_each_view_on_its_axis():
    rows = pd.concat([predictions("test2", 4), predictions("test2@snr0", 2), predictions("test2@snr-5", 1),
                      predictions("test2@blur4", 3), predictions("test2@noisy", 0), predictions("test1", 0),
                      predictions(f"test2@{CONTROL_VIEW}", 4)])
    curve = robustness_curve(rows).set_index("view")
    # SNR curve ascending (the control at +inf dB last), then the blur curve
    assert list(curve.index) == ["snr-5", "snr0", CONTROL_VIEW, "clean", "blur4"]
    assert curve.loc[CONTROL_VIEW, "snr_db"] == np.inf and curve.loc[CONTROL_VIEW, "snr"] == "inf"
    assert curve.loc["clean", "f1_weighted"] == 1.0 and curve.loc["snr0", "f1_weighted"] < 1.0
    assert curve.loc["snr-5", "f1_weighted"] < curve.loc["snr0", "f1_weighted"]
    assert curve["snr_db"].tolist()[:3] == [-5.0, 0.0, np.inf] and curve.loc[["clean", "blur4"], "snr_db"].isna().all()
    assert curve.loc["clean", "blur"] == 1 and curve.loc["blur4", "blur"] == 4 and np.isnan(curve.loc["snr0", "blur"])
    assert (curve["valence_mse"] == 1.0).all()


@pytest.mark.parametrize("h, w", [(64, 48), (37, 53)])
def test_reencode_is_a_lossy_size_preserving_round_trip(h, w):
    face = cv2.resize(astronaut_face(), (w, h))
    frames = np.stack([np.roll(face, k, axis=1) for k in range(6)])
    once, twice = reencode(frames, 8.0), reencode(frames, 8.0)
    assert once.shape == frames.shape and once.dtype == np.uint8
    assert np.array_equal(once, twice)  # deterministic: the corrupted view stays reproducible
    mse = np.mean((once.astype(float) - frames) ** 2)
    assert 0 < mse and 10 * np.log10(255**2 / mse) > 20  # lossy, but the face survives
