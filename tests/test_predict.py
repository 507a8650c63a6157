"""`mer predict` on generated clips: the same extract/encode/normalise/ensemble path as `train`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from checkpoint_fixtures import train_checkpoint
from media_fixtures import truncate, write_clip
from scipy.special import softmax
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_section
from pipeline.datasets import Candidate, validate
from pipeline.fingerprint import file_sha256, source_digest
from pipeline.labels import MER_LABELS, VALENCE_RANGE, logit_columns
from pipeline.training import checkpoint
from pipeline.training.checkpoint import FeatureMismatch
from stages import train

LOGIT_COLUMNS = logit_columns(MER_LABELS)

PARAMS = {
    "extract": {"workers": 1},
    "encode": {"features": {"egemaps": {"encoder": "egemaps", "options": {}}, "fer": {"encoder": "fer", "options": {}},
                            "minilm": {"encoder": "minilm", "options": {}}}},
    "train": {"features": {"audio": "egemaps", "visual": "fer", "text": "minilm"}, "folds": 2,
              "fusion": {"epochs": 3, "hidden": [16, 8]},
              "feature_norm": "standard", "ablation": [], "seeds": [0]},
}


def write_params(path, overrides: dict | None = None):
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    for key, value in (overrides or {}).items():
        params["encode"]["features"][key] = value
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """12 labelled clips (lengths and faces vary, transcripts given) and one test clip without a transcript,
    through extract, encode and train."""
    work = tmp_path_factory.mktemp("predict")
    corpus = work / "corpus"
    corpus.mkdir()
    candidates = []
    for i in range(12):
        write_clip(corpus / f"c{i:02d}.mp4", seconds=0.6 + 0.05 * i, face=i % 3 != 0)
        candidates.append(Candidate(f"c{i:02d}", "train", f"c{i:02d}.mp4", MER_LABELS[i % 6], float(i % 5 - 2),
                                    transcript=f"I feel {MER_LABELS[i % 6]} today", speaker=f"s{i % 4}"))
    write_clip(corpus / "new.mp4", seconds=0.8)
    candidates.append(Candidate("new", "test1", "new.mp4", "happy", 1.0))
    manifest, rejects = validate(candidates, corpus, MER_LABELS, {})
    assert rejects.empty
    params = write_params(work / "params.yaml")
    manifest.to_parquet(work / "manifest.parquet")
    train_checkpoint(work, corpus, params)
    return work


def test_predict_matches_the_trained_ensemble_on_the_same_clip(trained, tmp_path):
    out = tmp_path / "pred.json"
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), str(tmp_path / "absent.mp4"),
                                    "--checkpoint", str(trained / "checkpoint"), "--params", str(trained / "params.yaml"),
                                    "--out", str(out), "--allow-failures"])
    assert done.exit_code == 0, done.output
    assert f"failed: {tmp_path / 'absent.mp4'}: missing file" in done.stderr     # named all the same
    records = {r["sample_id"]: r for r in json.loads(out.read_text())}
    new, absent = records["new"], records["absent"]
    preds = pd.read_parquet(trained / "predictions.parquet")
    expected = preds[(preds["test"] == "test1") & (preds["sample_id"] == "new")].iloc[0]
    probs = softmax(expected[LOGIT_COLUMNS].to_numpy(float))
    assert np.allclose([new["probabilities"][c] for c in MER_LABELS], probs, atol=1e-5)
    assert new["valence"] == pytest.approx(expected["valence"], abs=1e-5)
    assert new["emotion"] == MER_LABELS[int(np.argmax(probs))] and new["modalities"] == "audio,visual"
    assert new["error"] == ""
    assert "missing file" in absent["error"] and absent["probabilities"] is None and absent["emotion"] is None


def test_a_partly_failed_predict_names_the_failed_clips_and_exits_1(trained, tmp_path):
    (tmp_path / "garbled.mp4").write_bytes(b"not a video")
    out = tmp_path / "pred.jsonl"
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), str(tmp_path / "garbled.mp4"),
                                    "--checkpoint", str(trained / "checkpoint"), "--params", str(trained / "params.yaml"),
                                    "--out", str(out)])
    assert done.exit_code == 1
    assert f"failed: {tmp_path / 'garbled.mp4'}: unreadable container" in done.stderr
    assert "1 of 2 clips gave no prediction (named above; the others' predictions are in" in str(done.exception)
    lines = out.read_text().splitlines()           # .jsonl: one JSON object per line
    records = {r["sample_id"]: r for r in map(json.loads, lines)}
    assert len(lines) == 2 and records["new"]["emotion"] in MER_LABELS and records["garbled"]["emotion"] is None


def test_predict_warns_when_the_checkpoint_was_trained_on_the_demo_corpus(trained, tmp_path):
    """prepare records a generated corpus in the manifest; train's checkpoint card carries it; predict warns."""
    from pipeline.config import PrepareConfig
    from pipeline.datasets.prepare import prepare

    corpus = tmp_path / "demo"
    shutil.copytree(trained / "corpus", corpus)
    rows = pd.read_parquet(trained / "manifest.parquet")
    rows[["sample_id", "split", "path", "label", "valence", "transcript", "speaker"]].to_csv(corpus / "manifest.csv",
                                                                                            index=False)
    prepare(PrepareConfig(adapter="demo", root=str(corpus), options={"manifest": "manifest.csv"}),
            tmp_path / "manifest.parquet", tmp_path / "rejects.csv")
    train.run(trained / "params.yaml", manifest=tmp_path / "manifest.parquet", clean=trained / "media.zarr",
              corrupted=None, features=trained / "features", predictions=tmp_path / "predictions.parquet",
              metrics=tmp_path / "cv.json", curves=tmp_path / "curves", checkpoint=tmp_path / "checkpoint")
    card = json.loads((tmp_path / "checkpoint/checkpoint.json").read_text())["corpus"]
    assert card["adapter"] == "demo" and card["root"] == str(corpus) and card["generated"]
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(tmp_path / "checkpoint"),
                                    "--params", str(trained / "params.yaml"), "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 0, done.output
    assert f"warning: {tmp_path / 'checkpoint'} was trained on the generated demo corpus ({corpus})" in done.stderr
    quiet = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(trained / "checkpoint"),
                                     "--params", str(trained / "params.yaml"), "--out", str(tmp_path / "pred.json")])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr                 # a corpus of real clips


def test_predict_writes_csv(trained, tmp_path):
    out = tmp_path / "pred.csv"
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/c01.mp4"), "--checkpoint", str(trained / "checkpoint"),
                                    "--params", str(trained / "params.yaml"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    frame = pd.read_csv(out)
    assert list(frame["sample_id"]) == ["c01"]
    assert frame[[f"prob_{c}" for c in MER_LABELS]].sum(axis=1).iloc[0] == pytest.approx(1)


def test_predict_refuses_another_visual_encoder(trained, tmp_path):
    params = write_params(tmp_path / "params.yaml", {"fer": {"encoder": "fer", "options": {"include_probs": False}}})
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(trained / "checkpoint"),
                                    "--params", str(params)])
    assert isinstance(done.exception, FeatureMismatch)
    assert "visual: encoder 'fer'" in str(done.exception) and "audio" not in str(done.exception)


def test_train_stage_writes_checkpoint_curves_per_fold_and_seed_summary(trained):
    curves = sorted((trained / "curves").glob("fold*.csv"))
    assert [p.name for p in curves] == ["fold0.csv", "fold1.csv"]
    frame = pd.read_csv(curves[0])
    assert list(frame["epoch"]) == [1, 2, 3] and {"train_loss", "val_combined"} <= set(frame.columns)
    report = json.loads((trained / "cv.json").read_text())
    assert report["over_seeds"]["AVT"]["f1_weighted"] == pytest.approx(report["runs"][0]["f1_weighted"])
    meta = json.loads((trained / "checkpoint/checkpoint.json").read_text())
    assert meta["features"]["audio"]["encoder"] == "egemaps" and meta["architecture"]["n_models"] == 2


def test_lightgbm_checkpoint_predicts_like_its_training_run(trained, tmp_path):
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((trained / "params.yaml").read_text())
    raw["train"] |= {"model": "lightgbm", "lightgbm": {"n_estimators": 10, "num_leaves": 4, "min_child_samples": 2}}
    params.write_text(yaml.safe_dump(raw))
    train.run(params, manifest=trained / "manifest.parquet", clean=trained / "media.zarr", corrupted=None,
              features=trained / "features", predictions=tmp_path / "predictions.parquet", metrics=tmp_path / "cv.json",
              curves=tmp_path / "curves", checkpoint=tmp_path / "checkpoint")
    assert not list((tmp_path / "curves").glob("*.csv"))  # no epochs, no curves
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(tmp_path / "checkpoint"),
                                    "--params", str(params), "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "pred.json").read_text())[0]
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    expected = preds[(preds["test"] == "test1") & (preds["sample_id"] == "new")].iloc[0]
    assert np.allclose([record["probabilities"][c] for c in MER_LABELS],
                       softmax(expected[LOGIT_COLUMNS].to_numpy(float)), atol=1e-6)
    assert record["valence"] == pytest.approx(expected["valence"], abs=1e-6)


def test_predict_fails_when_every_clip_failed(trained, tmp_path):
    """Each clip's reason is printed, and the exit code says that nothing was recognised (a real `mer`)."""
    (tmp_path / "garbled.mp4").write_bytes(b"not a video")
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["mer", "predict", str(tmp_path / "garbled.mp4"), str(tmp_path / "absent.mp4"),
                           "--checkpoint", str(trained / "checkpoint"), "--params", str(trained / "params.yaml")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "none of the 2 clips gave a prediction" in done.stderr
    errors = {r["sample_id"]: r["error"] for r in json.loads(done.stdout)}
    assert "missing file" in errors["absent"] and errors["garbled"]


def test_predict_clips_valence_to_the_label_range(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "checkpoint"
    shutil.copytree(trained / "checkpoint", ckpt)
    weights = next(ckpt.glob("*.safetensors"))
    state = load_file(str(weights))
    for key in [k for k in state if k.startswith("fc_valence.") and k.endswith("bias")]:
        state[key] = state[key] + 100.0  # a model whose raw valence is far above the range
    save_file(state, str(weights))
    meta = json.loads((ckpt / checkpoint.META).read_text())
    meta["sha256"][weights.name] = file_sha256(weights)   # an edit on purpose: record the new bytes
    (ckpt / checkpoint.META).write_text(json.dumps(meta))
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(ckpt),
                                    "--params", str(trained / "params.yaml"), "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "pred.json").read_text())[0]["valence"] == VALENCE_RANGE[1]


def trained_prediction(trained, sample_id="new"):
    preds = pd.read_parquet(trained / "predictions.parquet")
    row = preds[(preds["test"] == "test1") & (preds["sample_id"] == sample_id)].iloc[0]
    return softmax(row[LOGIT_COLUMNS].to_numpy(float))


def test_checkpoint_is_a_model_card(trained):
    meta = json.loads((trained / "checkpoint/checkpoint.json").read_text())
    assert meta["extract"]["fps"] == load_section("extract", trained / "params.yaml").fps and "workers" not in meta["extract"]
    assert meta["corpus"]["splits"] == {"test1": 1, "train": 12} and meta["corpus"]["train_speakers"] == 4
    assert meta["corpus"]["manifest_sha256"] == hashlib.sha256((trained / "manifest.parquet").read_bytes()).hexdigest()
    assert sum(meta["corpus"]["train_labels"].values()) == 12 and meta["corpus"]["train_items_with"]["text"] == 12
    # the training code's digest, not a git commit: a commit elsewhere leaves the checkpoint's bytes alone
    assert meta["code"] == source_digest(*checkpoint.CODE) and len(meta["fingerprint"]) == 32
    assert set(meta["metrics"]) >= {"f1_weighted", "valence_mse"} and meta["labels"] == list(MER_LABELS)


def test_predict_runs_from_any_folder_with_the_checkpoint_alone(trained, tmp_path, monkeypatch):
    """No params file: the checkpoint's own settings reproduce the trained ensemble's prediction, and the
    clip's missing transcript is a warning, not an error."""
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(trained / "checkpoint"),
                                    "--out", "pred.json"])
    assert done.exit_code == 0, done.output
    (record,) = json.loads((tmp_path / "pred.json").read_text())
    assert np.allclose([record["probabilities"][c] for c in MER_LABELS], trained_prediction(trained), atol=1e-5)
    assert record["modalities"] == "audio,visual" and record["error"] == "" and record["face_found_rate"] > 0.5
    assert record["warnings"].startswith("text missing: no transcript") and record["transcript_source"] == "missing"


def test_transcripts_per_clip_and_missing_faces_are_reported(trained, tmp_path):
    csv = tmp_path / "transcripts.csv"
    corpus = trained / "corpus"
    pd.DataFrame({"path": [str(corpus / "new.mp4"), str(corpus / "c00.mp4")],
                  "transcript": ["I feel happy today", "what a sad day"]}).to_csv(csv, index=False)
    done = CliRunner().invoke(app, ["predict", str(corpus / "new.mp4"), str(corpus / "c00.mp4"), str(corpus / "c01.mp4"),
                                    "--checkpoint", str(trained / "checkpoint"), "--transcripts", str(csv),
                                    "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 0, done.output
    records = {r["sample_id"]: r for r in json.loads((tmp_path / "pred.json").read_text())}
    assert records["new"]["modalities"] == "audio,visual,text" and records["new"]["warnings"] == ""
    assert records["new"]["transcript"] == "I feel happy today" and records["new"]["transcript_source"] == "given"
    assert not np.allclose([records["new"]["probabilities"][c] for c in MER_LABELS], trained_prediction(trained))
    no_face = records["c00"]    # written without a face
    assert no_face["modalities"] == "audio,text" and no_face["face_found_rate"] == 0
    assert no_face["warnings"].startswith("visual missing: no face found in")
    assert "text missing" in records["c01"]["warnings"] and records["c01"]["error"] == ""
    one = CliRunner().invoke(app, ["predict", str(corpus / "new.mp4"), str(corpus / "c00.mp4"),
                                   "--checkpoint", str(trained / "checkpoint"), "--transcript", "hello"])
    assert one.exit_code != 0 and "--transcript is for one clip" in one.output


def test_exit_code_is_1_when_every_clip_failed_with_its_real_reason(trained, tmp_path):
    """A file that is no media (rejected on validation) and a clip whose extraction fails (ASR with a model
    that is not there): each keeps its own reason."""
    headless = truncate(write_clip(tmp_path / "headless.mp4", seconds=0.6), 0.02)
    done = CliRunner().invoke(app, ["predict", str(headless), str(trained / "corpus/new.mp4"), "--asr", "whisper",
                                    "--asr-model", str(tmp_path / "no-model"), "--checkpoint", str(trained / "checkpoint"),
                                    "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 1  # the message is checked through a real `mer` above
    records = {r["sample_id"]: r for r in json.loads((tmp_path / "pred.json").read_text())}
    assert "neither a video nor an audio stream" in records["headless"]["error"]
    assert records["new"]["error"].startswith("asr failed: OSError: Whisper model") and records["new"]["emotion"] is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng: apt-get install espeak-ng")
def test_asr_gives_the_text_modality_to_a_speech_recording(trained, tmp_path):
    from pipeline.media.whisper import model_available

    if not model_available("whisper-tiny.en")[0]:
        pytest.skip(model_available("whisper-tiny.en")[1])
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(speech), "I feel really happy today"], check=True)
    done = CliRunner().invoke(app, ["predict", str(speech), "--asr", "faster-whisper", "--asr-model", "whisper-tiny.en",
                                    "--checkpoint", str(trained / "checkpoint"), "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 0, done.output
    (record,) = json.loads((tmp_path / "pred.json").read_text())
    assert record["transcript_source"] == "asr:faster-whisper:whisper-tiny.en" and "happy" in record["transcript"].lower()
    assert record["modalities"] == "audio,text" and record["warnings"] == "visual missing: no video frames"
    assert record["face_found_rate"] is None


def test_checkpoints_recording_the_audio_rate_load_only_at_the_pipelines_rate():
    from pipeline.errors import InputError
    from pipeline.predict import checkpoint_extract

    recorded = {"fps": 5.0, "max_frames": 32, "face_detector": "haar"}
    assert checkpoint_extract(recorded | {"sample_rate": 16000}) == checkpoint_extract(recorded)
    with pytest.raises(InputError, match="trained on 8000 Hz audio"):
        checkpoint_extract(recorded | {"sample_rate": 8000})


def test_a_checkpoint_recording_the_flat_asr_keys_predicts_as_one_recording_asr_options(trained, tmp_path):
    """Checkpoints written before extract.asr_options record asr_model, asr_language and asr_window: they
    load as those options and predict exactly as the checkpoint of today."""
    from pipeline.predict import checkpoint_extract

    old = tmp_path / "old-checkpoint"
    shutil.copytree(trained / "checkpoint", old)
    meta = json.loads((old / "checkpoint.json").read_text())
    assert meta["extract"]["asr_options"] == {} and "asr_model" not in meta["extract"]
    extract = {k: v for k, v in meta["extract"].items() if k != "asr_options"}
    meta["extract"] = extract | {"asr_model": "", "asr_language": "", "asr_window": "padded", "sample_rate": 16000}
    (old / "checkpoint.json").write_text(json.dumps(meta))
    assert checkpoint_extract(meta["extract"]).asr_options == {"model": "", "language": "", "window": "padded"}
    done = CliRunner().invoke(app, ["predict", str(trained / "corpus/new.mp4"), "--checkpoint", str(old),
                                    "--out", str(tmp_path / "pred.json")])
    assert done.exit_code == 0, done.output
    (record,) = json.loads((tmp_path / "pred.json").read_text())
    assert np.allclose([record["probabilities"][c] for c in MER_LABELS], trained_prediction(trained), atol=1e-5)


def test_checkpoints_from_before_face_quality_predict_on_lossless_crops():
    from pipeline.predict import checkpoint_extract

    recorded = {"fps": 5.0, "max_frames": 32, "face_detector": "haar"}
    assert checkpoint_extract(recorded).face_quality == 0
    assert checkpoint_extract(recorded | {"face_quality": 92}).face_quality == 92
