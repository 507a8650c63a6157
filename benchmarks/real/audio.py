"""Speaker-independent audio-only emotion recognition on the RAVDESS dev actors, per audio encoder.

Train on actors 01-08 (64 clips), test on 09-12 (32 clips; eight RAVDESS emotions, one clip per actor and
emotion). Each encoder's utterance vectors go through a standardised logistic regression whose C is
chosen by actor-grouped cross-validation inside the training actors; fusion concatenates the encoders'
vectors (early) or averages the per-encoder class probabilities (late).

    python benchmarks/bench_real.py --sections audio     # figures in results/real_data.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.encoders import make_encoder

from . import _ravdess as ravdess

ENCODERS = {"egemaps": ("egemaps", {}), "whisper": ("whisper", {"model": "whisper-base"})}
CS = [0.001, 0.01, 0.1, 1.0, 10.0]


def run(data_dir: Path) -> dict:
    data = ravdess.load(data_dir)
    if data is None:
        return {"skipped": f"{Path(data_dir) / ravdess.FOLDER} is absent"}
    train = ravdess.is_train(data["actor"])
    features, seconds = {}, {}
    for name, (encoder, options) in ENCODERS.items():
        enc = make_encoder(encoder, options, num_threads=2)
        start = time.perf_counter()
        features[name] = np.stack(enc.encode(data["audio"]))
        seconds[name] = round((time.perf_counter() - start) / len(data["audio"]), 3)
    rows, probs = {}, {}
    for name, x in features.items():
        rows[name], probs[name] = _score(x, data, train)
    rows["+".join(features) + " (concat)"], _ = _score(np.hstack(list(features.values())), data, train)
    late = np.mean(list(probs.values()), axis=0)
    classes = np.unique(data["label"][train])
    rows["+".join(features) + " (late)"] = _figures(data["label"][~train], classes[late.argmax(1)])
    return {"corpus": ravdess.FOLDER, "train_actors": "01-08", "test_actors": "09-12",
            "n_train": int(train.sum()), "n_test": int((~train).sum()), "chance_accuracy": round(1 / len(classes), 3),
            "rows": rows, "encode_seconds_per_clip": seconds,
            "dims": {name: int(x.shape[1]) for name, x in features.items()}}


def _score(x: np.ndarray, data: dict, train: np.ndarray) -> tuple[dict, np.ndarray]:
    y, actors = data["label"], data["actor"]
    folds = list(GroupKFold(4).split(x[train], y[train], actors[train]))
    model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=CS, cv=folds, max_iter=5000, scoring="f1_weighted"))
    model.fit(x[train], y[train])
    figures = _figures(y[~train], model.predict(x[~train]))
    return figures | {"C": float(model[-1].C_[0])}, model.predict_proba(x[~train])


def _figures(truth, pred) -> dict:
    return {"f1_weighted": round(float(f1_score(truth, pred, average="weighted")), 4),
            "accuracy": round(float(accuracy_score(truth, pred)), 4)}


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"Audio-only on RAVDESS: skipped ({result['skipped']})."
    lines = [f"Audio-only emotion, RAVDESS dev: train actors {result['train_actors']} ({result['n_train']} clips), "
             f"test actors {result['test_actors']} ({result['n_test']}); chance {result['chance_accuracy']:.3f}.", "",
             "| audio encoder | weighted F1 | accuracy |", "|---|---|---|"]
    lines += [f"| {name} | {row['f1_weighted']:.3f} | {row['accuracy']:.3f} |" for name, row in result["rows"].items()]
    return "\n".join(lines)

