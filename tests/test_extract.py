"""The extract stage end to end on generated clips: resumable after a real kill, incremental, the same
store from the local pool and a Dask cluster, and honest about broken inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from media_fixtures import truncate, write_clip

from pipeline.config import DemoConfig, ExtractConfig, PrepareConfig, RunConfig
from pipeline.datasets.prepare import prepare
from pipeline.demo import generate_corpus
from pipeline.extract import balanced_parts, extract
from pipeline.failures import TooManyFailures, write_failures
from pipeline.media.decode import file_hash
from pipeline.registry import Unavailable
from pipeline.store.media import MediaStore

N_CLIPS = 16
CFG = ExtractConfig(workers=1, clips_per_part=2)
ROW_FIELDS = ["source_hash", "params_hash", "n_frames", "audio_len", "n_faces", "transcript", "transcript_source",
              "audio_key", "faces_key", "text_key", "meta"]
ARRAYS = ["audio", "faces", "found", "frame_time", "boxes"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Demo clips (talking astronaut faces with speech) and their manifest from the real prepare stage."""
    root = tmp_path_factory.mktemp("demo")
    spec = DemoConfig(n_train=N_CLIPS, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0)
    generate_corpus(root, spec, progress=False, workers=1)
    result = prepare(PrepareConfig(root=str(root)), root / "manifest.parquet", root / "rejects.csv")
    return root, result.manifest


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """The store of one uninterrupted in-process run."""
    root, manifest = corpus
    store = tmp_path_factory.mktemp("reference") / "media.zarr"
    summary, failures = extract(manifest, root, store, CFG)
    assert failures == [] and summary["processed"] == N_CLIPS
    return store


def store_content(path: Path) -> dict[str, dict]:
    """sample id -> its live index fields and arrays, read back through the store."""
    store = MediaStore(path)
    content = {}
    for row in store.view().itertuples(index=False):
        item = store.load(row)
        content[row.sample_id] = {**{f: getattr(row, f) for f in ROW_FIELDS},
                                  **{a: getattr(item, a) for a in ARRAYS}}
    return content


def assert_same_store(a: Path, b: Path) -> None:
    left, right = store_content(a), store_content(b)
    assert sorted(left) == sorted(right)
    for sample_id, item in left.items():
        for name, value in item.items():
            other = right[sample_id][name]
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other, err_msg=f"{sample_id}.{name}")
            else:
                assert value == other or (pd.isna(value) and pd.isna(other)), (sample_id, name, value, other)


def assert_readable(path: Path) -> None:
    """Every committed row loads completely: no index row points at a missing or partial part."""
    store = MediaStore(path)
    for row in store.index().itertuples(index=False):
        item = store.load(row)
        assert len(item.audio) == row.audio_len and len(item.faces) == row.n_frames


# --- incremental, resumable, parallel ----------------------------------------------------------------

@pytest.mark.parametrize("n, max_size, workers", [(200, 16, 2), (200, 16, 1), (7, 16, 2), (3, 1, 4), (96, 16, 3), (0, 16, 2)])
def test_parts_are_balanced_over_the_workers(n, max_size, workers):
    frame = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(n)]})
    parts = balanced_parts(frame, max_size, workers)
    sizes = [len(p) for p in parts]
    assert pd.concat(parts)["sample_id"].tolist() == frame["sample_id"].tolist() if n else not parts
    assert all(0 < s <= max_size for s in sizes) and (max(sizes) - min(sizes) <= 1 if sizes else True)
    assert len(parts) % workers == 0 or len(parts) == n  # whole rounds of work, unless items run out


def _counts(summary: dict) -> dict:
    return {k: summary[k] for k in ("items", "reused", "failed", "processed")}


def test_rerun_does_nothing_and_new_clips_alone_are_processed(corpus, reference, tmp_path):
    root, manifest = corpus
    store = tmp_path / "media.zarr"
    first, _ = extract(manifest.iloc[:-3], root, store, CFG)
    assert _counts(first) == {"items": N_CLIPS - 3, "reused": 0, "failed": 0, "processed": N_CLIPS - 3}
    added, _ = extract(manifest, root, store, CFG)
    assert _counts(added) == {"items": N_CLIPS, "reused": N_CLIPS - 3, "failed": 0, "processed": 3}
    again, _ = extract(manifest, root, store, CFG)
    assert _counts(again) == {"items": N_CLIPS, "reused": N_CLIPS, "failed": 0, "processed": 0}
    assert again["faces"] == added["faces"]  # reused items count in the face summary too
    assert_same_store(store, reference)


def test_changed_clip_or_params_are_reprocessed(corpus, reference, tmp_path):
    root, manifest = corpus
    store = tmp_path / "media.zarr"
    extract(manifest, root, store, CFG)
    edited = manifest.copy()
    edited.loc[0, "transcript"] = "a corrected transcript"
    summary, _ = extract(edited, root, store, CFG)
    assert summary["processed"] == 1
    assert MediaStore(store).view().set_index("sample_id").loc[edited.loc[0, "sample_id"], "transcript"] == \
        "a corrected transcript"
    summary, _ = extract(manifest, root, store, replace(CFG, clips_per_part=5))
    assert summary["processed"] == 0  # the clip as it was is still stored; part sizes never change output
    summary, _ = extract(manifest.iloc[:2], root, store, replace(CFG, fps=2.0))
    assert summary["processed"] == 2
    summary, _ = extract(manifest.iloc[:1], root, store, replace(CFG, face_quality=50))
    assert summary["processed"] == 1   # the crops are stored otherwise


def test_face_quality_shapes_the_item_hash_and_lossless_keeps_the_hash_from_before_it():
    from pipeline.extract import item_fingerprint, output_params

    params = {q: output_params(ExtractConfig(face_quality=q)) for q in (0, 75, 92)}
    assert "face_quality" not in params[0]   # lossless crops read as the raw pixels stored before
    assert params[75]["face_quality"] == 75
    assert len({item_fingerprint(ExtractConfig(face_quality=q)) for q in params}) == 3


def _params(path: Path, root: Path, **extract_params) -> Path:
    path.write_text(yaml.safe_dump({"prepare": {"root": str(root)}, "extract": extract_params}))
    return path


def _mer(*args: str, **popen) -> subprocess.Popen:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(["mer", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def _extract_cmd(params: Path, manifest: Path, store: Path, failures: Path) -> list[str]:
    return ["extract", "--params", str(params), "--manifest", str(manifest), "--store", str(store),
            "--failures", str(failures), "--faces", str(failures.with_name("faces.json"))]


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_store(corpus, reference, tmp_path):
    root, _ = corpus
    params = _params(tmp_path / "params.yaml", root, workers=2, clips_per_part=2)
    store = tmp_path / "media.zarr"
    cmd = _extract_cmd(params, root / "manifest.parquet", store, tmp_path / "failures.jsonl")
    # Its own session, so the kill takes the pool's worker processes too, as a job scheduler's would.
    run = _mer(*cmd, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((store / "index").glob("*.parquet"))) < 2 and run.poll() is None:
        assert time.monotonic() < deadline, "no part committed within 120 s"
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = set(MediaStore(store).index()["sample_id"])
    assert 2 <= len(done) < N_CLIPS
    assert_readable(store)

    resumed = _mer(*cmd)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["reused"] == len(done) and summary["processed"] == N_CLIPS - len(done)
    parts = {p.name for p in (store / "parts").iterdir() if p.is_dir()}
    assert parts == set(MediaStore(store).parts.committed())  # what the killed run left half-written is gone
    assert_same_store(store, reference)


@pytest.mark.slow
def test_dask_cluster_writes_the_same_store(corpus, reference, tmp_path):
    from distributed import LocalCluster

    root, manifest = corpus
    store = tmp_path / "media.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary, failures = extract(manifest, root, store, CFG,
                                    run=RunConfig("dask", {"address": cluster.scheduler_address}))
    assert failures == [] and summary["processed"] == N_CLIPS
    # Parts are named by their items, so the two executors even write the same part files.
    assert MediaStore(store).parts.committed() == MediaStore(reference).parts.committed()
    assert_same_store(store, reference)


def test_dask_needs_an_address(corpus, tmp_path):
    root, manifest = corpus
    with pytest.raises(Unavailable, match="executor dask: needs a scheduler address or a scheduler file"):
        extract(manifest.iloc[:1], root, tmp_path / "media.zarr", CFG, run=RunConfig("dask"))


# --- odd and broken inputs ---------------------------------------------------------------------------

SECONDS, FPS = 2.0, 15
GIVEN = "a given transcript"


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """One clip of each kind extract must cope with, and a manifest row for each (as prepare writes it)."""
    root = tmp_path_factory.mktemp("odd")
    clips = {
        "ok": {}, "vfr": {"vfr": True}, "noface": {"face": False}, "two": {"size": (320, 160), "two_faces": True},
        "audioonly": {"with_video": False}, "videoonly": {"with_audio": False}, "cut": {}, "headless": {},
    }
    for name, spec in clips.items():
        write_clip(root / f"{name}.mp4", SECONDS, FPS, spec.pop("size", 160), **spec)
    truncate(root / "cut.mp4", 0.5)        # the first half decodes
    truncate(root / "headless.mp4", 0.02)  # not even the header is left
    (root / "empty.mp4").write_bytes(b"")
    names = [*clips, "empty"]
    rows = [{"sample_id": n, "split": "train", "path": f"{n}.mp4", "media_hash": file_hash(root / f"{n}.mp4"),
             "transcript": GIVEN if n == "ok" else None} for n in names]
    rows.append({"sample_id": "textonly", "split": "train", "path": None, "media_hash": None, "transcript": GIVEN})
    return root, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def odd_store(odd, tmp_path_factory):
    root, manifest = odd
    store = tmp_path_factory.mktemp("odd_store") / "media.zarr"
    summary, failures = extract(manifest, root, store, replace(CFG, clips_per_part=4))
    items = {row.sample_id: (row, MediaStore(store).load(row)) for row in MediaStore(store).view().itertuples()}
    return summary, failures, items


def test_unusable_clips_are_recorded_failures_with_their_reason(odd_store, tmp_path):
    summary, failures, items = odd_store
    assert _counts(summary) == {"items": 10, "reused": 0, "failed": 2, "processed": 8}
    by_id = {f["sample_id"]: f for f in failures}
    assert sorted(by_id) == ["empty", "headless"] and not {"empty", "headless"} & set(items)
    for failure in failures:
        assert failure["step"] == "open" and failure["error"] == "MediaError"
    assert "empty file" in by_id["empty"]["message"] and "headless.mp4" in by_id["headless"]["message"]
    path = tmp_path / "failures.jsonl"
    write_failures(failures, 10, path, max_rate=0.2, stage="extract")
    assert [json.loads(line)["sample_id"] for line in path.read_text().splitlines()] == ["empty", "headless"]
    with pytest.raises(TooManyFailures, match=r"2 of 10 items failed .*extract.max_failure_rate"):
        write_failures(failures, 10, path, max_rate=0.1, stage="extract")


def test_a_failing_step_is_named_and_the_other_clips_are_kept(odd, tmp_path):
    """An error outside decoding (here the ASR engine, named with no model) is recorded with its step."""
    root, manifest = odd
    rows = manifest[manifest["sample_id"].isin(["ok", "vfr", "textonly"])]
    summary, failures = extract(rows, root, tmp_path / "media.zarr", replace(CFG, asr="whisper"))
    assert [(f["sample_id"], f["step"], f["error"]) for f in failures] == [("vfr", "asr", "Unavailable")]
    assert "ASR engine whisper: needs extract.asr_options.model" in failures[0]["message"]
    assert summary["processed"] == 2  # "ok" and "textonly" have their transcripts: no ASR needed


def test_items_without_a_face_are_counted_and_named(odd_store):
    summary, _, items = odd_store
    with_frames = [i for i, (row, _) in items.items() if row.n_frames > 0]
    assert summary["no_face"] == 1 and summary["faces"]["all"]["items"] == len(with_frames)
    (listed,) = summary["no_face_items"]
    assert listed.startswith("noface: no face in its") and "blazeface" in listed
    frames = sum(items[i][0].n_frames for i in with_frames)
    found = sum(items[i][0].n_faces for i in with_frames)
    assert summary["faces"]["all"]["face_found_rate"] == pytest.approx(found / frames) and found < frames


def test_partial_media_gives_partial_items(odd_store):
    _, _, items = odd_store
    row, audio_only = items["audioonly"]
    assert row.n_frames == -1 and audio_only.faces is None and pd.isna(row.faces_key)
    assert len(audio_only.audio) == pytest.approx(SECONDS * 16000, rel=0.03)
    row, video_only = items["videoonly"]
    assert row.audio_len == -1 and video_only.audio is None and video_only.found.all()
    row, cut = items["cut"]
    assert 0 < row.n_frames < SECONDS * CFG.fps and cut.found.all()
    assert any(w.startswith("truncated") for w in json.loads(row.meta)["warnings"])
    row, text_only = items["textonly"]
    assert row.n_frames == -1 and row.audio_len == -1 and text_only.transcript == GIVEN


def test_faces_flags_and_main_face(odd_store):
    _, _, items = odd_store
    row, ok = items["ok"]
    assert row.n_frames == SECONDS * CFG.fps and ok.found.all() and not json.loads(row.meta)["no_face"]
    row, noface = items["noface"]
    assert row.n_frames == SECONDS * CFG.fps  # frames without a face are kept, flagged
    assert not noface.found.any() and json.loads(row.meta)["no_face"] and pd.isna(row.faces_key)
    _, two = items["two"]
    centres = (two.boxes[two.found, 0] + two.boxes[two.found, 2]) / 2
    assert two.found.mean() >= 0.8 and (centres < 160).all()  # the face on the left, start to end
    row, vfr = items["vfr"]
    assert "variable frame rate" in json.loads(row.meta)["warnings"] and vfr.found.all()


def test_transcript_source_is_recorded(odd_store):
    _, _, items = odd_store
    assert (items["ok"][1].transcript, items["ok"][0].transcript_source) == (GIVEN, "given")
    assert items["textonly"][0].transcript_source == "given"
    row, missing = items["vfr"]
    assert missing.transcript is None and row.transcript_source == "missing" and pd.isna(row.text_key)


def test_cli_exits_nonzero_above_the_failure_rate(odd, tmp_path):
    root, manifest = odd
    manifest.to_parquet(tmp_path / "manifest.parquet")
    params = _params(tmp_path / "params.yaml", root, workers=1, max_failure_rate=0.1)
    failures = tmp_path / "failures.jsonl"
    run = _mer(*_extract_cmd(params, tmp_path / "manifest.parquet", tmp_path / "media.zarr", failures))
    _, err = run.communicate(timeout=300)
    assert run.returncode != 0
    assert "2 of 10 items failed (20.0% > extract.max_failure_rate 10.0%)" in err
    assert len(failures.read_text().splitlines()) == 2


def tiny_whisper(folder: Path) -> Path:
    """A randomly initialised Whisper with a byte-level BPE vocabulary trained here: the real ASR code path
    (feature extraction, generation, decoding) offline; its text is nonsense."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
                "<|notimestamps|>", "<|nocaptions|>", "<|startoflm|>", "<|startofprev|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(["hello world this is a tiny speech model"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save(str(folder / "tokenizer.json"))
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), unk_token=end, bos_token=end,
                                     eos_token=end, pad_token=end)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = WhisperConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           max_target_positions=32, decoder_start_token_id=ids["<|startoftranscript|>"],
                           eos_token_id=ids[end], pad_token_id=ids[end], bos_token_id=ids[end])
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(decoder_start_token_id=config.decoder_start_token_id, max_length=8,
                                               eos_token_id=ids[end], pad_token_id=ids[end],
                                               no_timestamps_token_id=ids["<|notimestamps|>"])
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_asr_fills_in_missing_transcripts(odd, tmp_path):
    root, manifest = odd
    cfg = replace(CFG, asr="whisper", asr_options={"model": str(tiny_whisper(tmp_path / "whisper"))})
    rows = manifest[manifest["sample_id"].isin(["ok", "vfr", "videoonly"])]
    summary, failures = extract(rows, root, tmp_path / "media.zarr", cfg)
    assert failures == [] and summary["processed"] == 3
    view = MediaStore(tmp_path / "media.zarr").view().set_index("sample_id")
    assert view.loc["ok", "transcript_source"] == "given" and view.loc["ok", "transcript"] == GIVEN
    assert view.loc["vfr", "transcript_source"] == "asr:whisper:whisper" and isinstance(view.loc["vfr", "transcript"], str)
    assert view.loc["videoonly", "transcript_source"] == "missing"  # nothing to transcribe
    # A model that is not there: each clip needing ASR is a recorded failure saying why.
    _, failures = extract(rows, root, tmp_path / "other.zarr", replace(cfg, asr_options={"model": str(tmp_path / "absent")}))
    assert [(f["sample_id"], f["step"], f["error"]) for f in failures] == [("vfr", "asr", "OSError")]
    assert "not available here" in failures[0]["message"]
