"""Text-only emotion recognition on the MER 2023 training transcripts, per text encoder and language.

The 3,373 training clips' transcripts (`transcription.csv`: Chinese as released, and its English
translation) with their discrete labels (`train-label.csv`); clips with an empty transcript are left
out. Each registered offline text encoder embeds each column; a standardised logistic regression is
scored by weighted F1 over 5 stratified folds (mean and std over the folds). Its regularisation is chosen
per encoder inside each training fold (3-fold inner CV over CS), so no encoder is scored with a setting
tuned for another or on its own test items.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.encoders import config_key, make_encoder
from pipeline.evaluation import markdown_table

CORPUS = "mer2023-text-train"
# row name -> (encoder, options); e5's model card asks for the "query: " prefix (the default) on features,
# the "passage: " row shows what the other prefix gives
ENCODERS = {"minilm": ("minilm", {}), "e5-multilingual": ("e5-multilingual", {}),
            "e5-multilingual passage": ("e5-multilingual", {"prefix": "passage"})}
COLUMNS = ("chinese", "english")
FOLDS, SEED = 5, 0
CS = (0.003, 0.01, 0.03, 0.1, 0.3)  # inverse regularisation strengths the inner CV chooses from
CACHE = Path(tempfile.gettempdir()) / "mer-bench-real"


def transcripts(data: Path) -> pd.DataFrame | None:
    folder = data / CORPUS
    if not (folder / "train-label.csv").is_file() or not (folder / "transcription.csv").is_file():
        return None
    labels = pd.read_csv(folder / "train-label.csv")
    text = pd.read_csv(folder / "transcription.csv", keep_default_na=False)
    return labels.merge(text, on="name", how="inner")


def embed(encoder, texts: list[str]) -> tuple[list, float | None]:
    """The encoder's vectors, kept in a scratch cache keyed by encoder and texts so a rerun (e.g. after
    an interrupted run on a busy machine) does not encode again; seconds is None when cached."""
    options = json.dumps(config_key(encoder.config), sort_keys=True)
    key = hashlib.sha256("\0".join([encoder.name, encoder.version, options, *texts]).encode()).hexdigest()[:16]
    path = CACHE / f"{encoder.name}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes()), None
    started = time.time()
    vectors = encoder.encode(texts)
    seconds = time.time() - started
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(vectors))
    return vectors, seconds


def cv_f1(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Weighted F1 per outer fold, and the C the inner CV chose in each."""
    scores, chosen = [], []
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=list(CS), cv=3, scoring="f1_weighted",
                                                                     max_iter=3000))
        model.fit(x[train], y[train])
        scores.append(float(f1_score(y[test], model.predict(x[test]), average="weighted")))
        chosen.append(float(model[-1].C_[0]))
    return scores, chosen


def run(data_dir: Path) -> dict:
    rows = transcripts(data_dir)
    if rows is None:
        return {"skipped": f"{data_dir / CORPUS}/train-label.csv or transcription.csv not found"}
    result = {"clips": len(rows), "folds": FOLDS, "classes": sorted(rows["discrete"].unique()), "scores": {}}
    for name, (encoder_name, options) in ENCODERS.items():
        encoder = make_encoder(encoder_name, options, batch_size=32)
        for column in COLUMNS:
            kept = rows[rows[column].str.strip() != ""]
            vectors, seconds = embed(encoder, kept[column].tolist())
            usable = [i for i, v in enumerate(vectors) if v is not None]
            x = np.stack([vectors[i] for i in usable])
            y = kept["discrete"].to_numpy()[usable]
            scores, chosen = cv_f1(x, y)
            result["scores"][f"{name}/{column}"] = {
                "encoder": name, "options": options, "language": column, "items": len(usable), "dim": int(x.shape[1]),
                "f1_weighted": float(np.mean(scores)), "f1_weighted_std": float(np.std(scores)),
                "fold_f1": scores, "fold_C": chosen,
                "encode_ms_per_text": None if seconds is None else 1000 * seconds / max(len(kept), 1)}
    zh = {e: result["scores"][f"{e}/chinese"]["f1_weighted"] for e in ("minilm", "e5-multilingual")}
    result["chinese_gain_e5_over_minilm"] = zh["e5-multilingual"] - zh["minilm"]
    return result


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})\n"
    table = pd.DataFrame([{"encoder": s["encoder"], "transcripts": s["language"], "items": s["items"],
                           "weighted F1": s["f1_weighted"], "std over folds": s["f1_weighted_std"],
                           "ms per text": s["encode_ms_per_text"] or "cached"} for s in result["scores"].values()])
    return (f"MER 2023 train transcripts ({result['clips']} clips, empty ones left out), {result['folds']}-fold "
            f"stratified CV, logistic regression on the encoder's vectors (C chosen per encoder inside each "
            f"training fold from {list(CS)}).\n\n{markdown_table(table)}\n"
            f"Chinese: e5-multilingual - MiniLM = {result['chinese_gain_e5_over_minilm']:+.4f} weighted F1.\n")
