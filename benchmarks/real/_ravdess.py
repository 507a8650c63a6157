"""The RAVDESS dev recordings shared by the audio and ASR sections: files, labels, actors, 16 kHz audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datasets.acted import read_ravdess
from pipeline.media.decode import read_audio_file

FOLDER = "ravdess-audio-dev"
TRAIN_ACTORS = range(1, 9)    # speaker-independent split: actors 01-08 train, 09-12 test


def load(data_dir: Path) -> dict | None:
    """{"path", "label", "actor", "transcript", "audio"} lists, or None when the corpus is absent."""
    root = Path(data_dir) / FOLDER
    if not root.is_dir():
        return None
    rows = sorted((c for c in read_ravdess(root) if c.skip is None and c.meta["vocal_channel"] == "speech"),
                  key=lambda c: c.path)
    return {"path": [c.path for c in rows], "label": np.array([c.label for c in rows]),
            "actor": np.array([int(c.speaker) for c in rows]),
            "transcript": [c.transcript for c in rows],
            "audio": [read_audio_file(root / c.path, 16000) for c in rows]}


def is_train(actors: np.ndarray) -> np.ndarray:
    return np.isin(actors, TRAIN_ACTORS)

