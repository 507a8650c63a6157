"""Whisper on each clip's own length (`clip`) against Whisper's padded 30 s window (`padded`), side by side.

The RAVDESS dev clips (3-5 s of speech) through the `whisper` audio encoder (whisper-base, float32) and
the faster-whisper ASR engine (whisper-base, int8, language detected as in the default params). Each
mode reads every clip once: the clips are dealt into three interleaved rounds (clip i in round i % 3),
each round runs every mode in turn (the order reversed every other round, so no mode always goes first
on a machine whose load changes), and the speed is the median over the rounds of clips per second. The
encoder's vectors give the audio-only weighted F1 on the dev actors (train 01-08, test 09-12, as the
`audio` section) and, less noisy, over three actor-grouped folds of all twelve actors; the transcripts
give the corpus word error rate. `sequential` ASR is the engine as it was: faster-whisper's own
transcribe, one clip at a time, padded window, timestamps and temperature fallback. `clip, no margin`
shows what the 3 s of silence after each clip buys the encoder.

    python benchmarks/bench_real.py --data /work/shared/data --sections whisper_window \
        --out benchmarks/results/whisper_window.json
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold

from pipeline.encoders import make_encoder
from pipeline.media.asr import ASR_ENGINES, word_error_rate

from . import _ravdess as ravdess
from .audio import _score

COMMAND = ("python benchmarks/bench_real.py --data /work/shared/data --sections whisper_window "
           "--out benchmarks/results/whisper_window.json")
MODEL, THREADS, ROUNDS = "whisper-base", 2, 3


def run(data_dir: Path) -> dict:
    data = ravdess.load(data_dir)
    if data is None:
        return {"skipped": f"{Path(data_dir) / ravdess.FOLDER} is absent"}
    encoders = {w: make_encoder("whisper", {"model": MODEL, "window": w.split(",")[0]}, num_threads=THREADS, batch_size=8)
                for w in ("padded", "clip", "clip, no margin")}
    asr = {w: ASR_ENGINES.make("faster-whisper", {"model": MODEL, "window": w}) for w in ("padded", "clip")}
    encoders["clip, no margin"].MARGIN = 0          # what the margin buys: the same clips without it
    modes = {f"encoder {w}": enc.encode for w, enc in encoders.items()}
    modes |= {"asr sequential": _sequential(asr["padded"])} | {f"asr {w}": e.transcribe_batch for w, e in asr.items()}
    for run_mode in modes.values():   # load weights and warm up outside the timed rounds
        run_mode(data["audio"][:1])
    outputs, speeds, loads = {m: [None] * len(data["audio"]) for m in modes}, {m: [] for m in modes}, []
    for r in range(ROUNDS):
        members = list(range(r, len(data["audio"]), ROUNDS))
        loads.append(os.getloadavg())
        for mode in (list(modes) if r % 2 == 0 else list(reversed(modes))):
            start = time.perf_counter()
            out = modes[mode]([data["audio"][i] for i in members])
            speeds[mode].append(round(len(members) / (time.perf_counter() - start), 3))
            for i, o in zip(members, out, strict=True):
                outputs[mode][i] = o
        print(f"round {r}: clips/s {({m: s[-1] for m, s in speeds.items()})}", flush=True)
    loads.append(os.getloadavg())
    result = {"command": COMMAND, "corpus": ravdess.FOLDER, "n_clips": len(data["audio"]), "model": MODEL,
              "threads": THREADS, "rounds": ROUNDS, "load_average_per_round": loads,
              "margin_seconds": {"encoder": encoders["clip"].MARGIN / 100, "asr": asr["clip"].MARGIN / 100},
              "seconds_of_audio": _spread([len(a) / 16000 for a in data["audio"]]), "modes": {}}
    for mode in modes:
        row = {"clips_per_second": statistics.median(speeds[mode]), "clips_per_second_rounds": speeds[mode]}
        row |= _encoder_figures(outputs[mode], data) if mode.startswith("encoder") else _asr_figures(outputs[mode], data)
        result["modes"][mode] = row
    m = result["modes"]
    clip, padded = np.stack(outputs["encoder clip"]), np.stack(outputs["encoder padded"])
    cosine = (clip * padded).sum(1) / np.linalg.norm(clip, axis=1) / np.linalg.norm(padded, axis=1)
    result["encoder_clip_vs_padded"] = {
        "speedup": round(m["encoder clip"]["clips_per_second"] / m["encoder padded"]["clips_per_second"], 2),
        "f1_dev_change": round(m["encoder clip"]["f1_dev"] - m["encoder padded"]["f1_dev"], 4),
        "cosine_similarity": _spread(cosine)}
    result["asr_clip_vs_sequential"] = {
        "speedup": round(m["asr clip"]["clips_per_second"] / m["asr sequential"]["clips_per_second"], 2),
        "wer_change": round(m["asr clip"]["wer"] - m["asr sequential"]["wer"], 4)}
    return result


def _sequential(engine):
    """The faster-whisper engine as it was before batching: its own transcribe, clip by clip."""
    def transcribe(audios):
        texts = []
        for audio in audios:
            segments, _ = engine.whisper.transcribe(audio, beam_size=5, condition_on_previous_text=False)
            texts.append(" ".join(s.text.strip() for s in segments).strip())
        return texts
    return transcribe


def _encoder_figures(vectors: list, data: dict) -> dict:
    x, y, actors = np.stack(vectors), data["label"], data["actor"]
    dev, _ = _score(x, data, ravdess.is_train(actors))
    truth, pred = [], []
    for train_idx, _ in GroupKFold(3).split(x, y, actors):
        train = np.zeros(len(y), bool)
        train[train_idx] = True
        _, probs = _score(x, data, train)
        truth += list(y[~train])
        pred += list(np.unique(y[train])[probs.argmax(1)])
    return {"f1_dev": dev["f1_weighted"], "accuracy_dev": dev["accuracy"],
            "f1_all_actors_3fold": round(float(f1_score(truth, pred, average="weighted")), 4)}


def _asr_figures(texts: list, data: dict) -> dict:
    refs = data["transcript"]
    words = sum(len(ref.split()) for ref in refs)
    edits = sum(word_error_rate(ref, hyp) * len(ref.split()) for ref, hyp in zip(refs, texts, strict=True))
    wrong = [{"file": p, "heard": h} for r, h, p in zip(refs, texts, data["path"], strict=True) if word_error_rate(r, h)]
    return {"wer": round(edits / words, 4), "exact_sentences": len(refs) - len(wrong), "not_exact": wrong}


def _spread(values) -> dict:
    values = np.asarray(values, float)
    return {"min": round(float(values.min()), 4), "median": round(float(np.median(values)), 4),
            "max": round(float(values.max()), 4)}


COLUMNS = {"clips/s": "clips_per_second", "F1 dev (09-12)": "f1_dev", "F1 3-fold, 12 actors": "f1_all_actors_3fold",
           "WER": "wer"}


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"Whisper windows on RAVDESS: skipped ({result['skipped']})."
    head = [f"Whisper `clip` vs `padded` window, RAVDESS dev ({result['n_clips']} clips), {result['model']}, "
            f"{result['threads']} threads; clips/s: median of {result['rounds']} interleaved rounds.", "",
            "| mode | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    return "\n".join(head + [f"| {mode} | " + " | ".join(str(row.get(key, "")) for key in COLUMNS.values()) + " |"
                             for mode, row in result["modes"].items()])
