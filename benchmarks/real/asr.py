"""Word error rate of the offline ASR engines on the RAVDESS dev recordings (whose statements are known).

Every recording is transcribed by each (engine, model, language) setting; WER is the corpus-level word
edit distance over the reference words (pipeline.media.asr.word_error_rate per clip, summed), after
lower-casing and dropping punctuation. Emotional delivery (shouted, whispered, sobbing) is what makes
these short sentences hard.

    python benchmarks/bench_real.py --sections asr     # figures in results/real_data.json
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.media.asr import make_engine, word_error_rate

from . import _ravdess as ravdess

SETTINGS = [("faster-whisper", "whisper-base", ""), ("faster-whisper", "whisper-base", "en"),
            ("faster-whisper", "whisper-tiny.en", "")]


def run(data_dir: Path) -> dict:
    data = ravdess.load(data_dir)
    if data is None:
        return {"skipped": f"{Path(data_dir) / ravdess.FOLDER} is absent"}
    rows = {}
    for engine, model, language in SETTINGS:
        asr = make_engine(engine, {"model": model, "language": language})
        start = time.perf_counter()
        hyps = [asr(audio) for audio in data["audio"]]
        seconds = (time.perf_counter() - start) / len(hyps)
        words = sum(len(ref.split()) for ref in data["transcript"])
        edits = sum(word_error_rate(ref, hyp) * len(ref.split()) for ref, hyp in zip(data["transcript"], hyps))
        worst = max(zip(data["transcript"], hyps, data["path"]), key=lambda t: word_error_rate(t[0], t[1]))
        rows[f"{asr.source} language={language or 'detected'}"] = {
            "wer": round(edits / words, 4),
            "exact_sentences": sum(word_error_rate(r, h) == 0 for r, h in zip(data["transcript"], hyps)),
            "seconds_per_clip": round(seconds, 2), "worst": {"file": worst[2], "heard": worst[1]}}
    return {"corpus": ravdess.FOLDER, "n_clips": len(data["audio"]), "statements": sorted(set(data["transcript"])),
            "rows": rows}


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"ASR on RAVDESS: skipped ({result['skipped']})."
    lines = [f"ASR word error rate, RAVDESS dev ({result['n_clips']} clips, known statements).", "",
             "| engine:model | language | WER | exact sentences | s/clip |", "|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        source, language = name.split(" language=")
        lines.append(f"| {source.removeprefix('asr:')} | {language} | {row['wer']:.3f} | "
                     f"{row['exact_sentences']}/{result['n_clips']} | {row['seconds_per_clip']:.2f} |")
    return "\n".join(lines)

