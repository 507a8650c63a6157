"""The demo corpus drawn directly as feature vectors: same clips, labels, valences and per-modality
evidence (`corpus.draw_evidence`), but each modality's evidence becomes `intensity * prototype[shown class]`
plus Gaussian noise instead of a rendered face, voice and transcript.

No media, no encoders: thousands of clips in a second, for fast semi-supervised tests and scale
benchmarks. The unlabelled pool keeps its true labels (`true_label`), so pseudo-label precision is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import DemoConfig
from pipeline.demo.corpus import FACE, VALENCE_MEAN, VOICE, WORDS, clip_slots, draw_evidence, draw_valence
from pipeline.labels import MER_LABELS
from pipeline.training.data import Table, standardize

CHANNELS = {"audio": (VOICE, "audio_strength"), "visual": (FACE, "visual_strength"), "text": (WORDS, "text_strength")}
_PROTOTYPE_STREAM = 1 << 41  # apart from the clip ([seed, index]) and speaker streams


def feature_corpus(spec: DemoConfig, dim: int = 16, noise: float = 0.5) -> tuple[pd.DataFrame, dict[str, Table]]:
    """(manifest rows, z-scored tables 'train', 'test1', 'test2', 'test3'); test3 holds the labelled
    MER-SEMI items and the unlabelled pool (label None, true_label kept)."""
    proto_rng = np.random.default_rng([spec.seed, _PROTOTYPE_STREAM])
    prototypes = {m: proto_rng.normal(size=(len(MER_LABELS), dim)) for m in CHANNELS}
    valence_axis = {m: proto_rng.normal(size=dim) / np.sqrt(dim) for m in CHANNELS}
    records = []
    slots = clip_slots(spec)
    X = {m: np.empty((len(slots), dim), np.float32) for m in CHANNELS}
    for slot in slots:
        rng = np.random.default_rng([spec.seed, slot.index])
        label = MER_LABELS[int(rng.integers(len(MER_LABELS)))]
        valence = draw_valence(label, rng)
        for m, (channel, strength) in CHANNELS.items():
            evidence = draw_evidence(label, getattr(spec, strength), channel, rng)
            X[m][slot.index] = (evidence.intensity * prototypes[m][MER_LABELS.index(evidence.cls)]
                                + (valence - VALENCE_MEAN[label]) * getattr(spec, strength) * valence_axis[m]
                                + noise * rng.normal(size=dim))
        records.append({"sample_id": f"demo_{slot.index:05d}", "split": slot.split,
                        "label": label if slot.labelled else None, "valence": valence if slot.labelled else np.nan,
                        "speaker": f"spk{slot.speaker:02d}", "true_label": label, "true_valence": valence})
    rows = pd.DataFrame(records)
    tables = {}
    for split in dict.fromkeys(rows["split"]):
        mask = (rows["split"] == split).to_numpy()
        tables[split] = Table(rows[mask].reset_index(drop=True), {m: x[mask] for m, x in X.items()},
                              {m: np.ones(int(mask.sum()), bool) for m in X}, labels=MER_LABELS)
    return rows, standardize(tables)
