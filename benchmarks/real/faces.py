"""Faces on real data, through the project's own extract code (pipeline.extract.extract into a scratch store).

- Face-found rate per corpus and detector: FER-2013 dev images (48x48 grey face crops) and CREMA-D clips
  (480x360 VP6 video at extract.fps): the share of items with a face in at least one frame and the
  share of sampled frames with a face.
- Visual-only accuracy on the FER-2013 dev images: the project's visual encoder `fer` on each
  detector's aligned crops, a standardised logistic regression trained on one stratified half and
  tested on the other, both ways round (mean of the two). An image without a face is predicted as the
  training half's majority class, so every detector is scored on every image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import ExtractConfig
from pipeline.encoders import make_encoder
from pipeline.evaluation import markdown_table
from pipeline.extract import extract
from pipeline.media.decode import file_hash
from pipeline.store.media import MediaStore

# (label, detector, options): the default, the fallback as configured now and as before, and the crop modes
DETECTORS = {
    "fer2013-dev": [("blazeface", "blazeface", {}), ("auto", "auto", {}), ("whole_frame", "whole_frame", {}),
                    ("haar", "haar", {}), ("haar min_face 0.25", "haar", {"min_face": 0.25})],
    "cremad-av-dev": [("blazeface", "blazeface", {}), ("haar", "haar", {}), ("haar min_face 0.25", "haar", {"min_face": 0.25})],
}
SEED = 0


def corpus_manifest(data: Path, corpus: str) -> pd.DataFrame | None:
    """sample_id, path, media_hash, transcript, split, label for the corpus's labels.csv; None if absent."""
    labels = data / corpus / "labels.csv"
    if not labels.is_file():
        return None
    rows = pd.read_csv(labels)
    return pd.DataFrame({"sample_id": rows["file"].str.rsplit(".", n=1).str[0], "path": rows["file"],
                         "media_hash": [file_hash(data / corpus / f) for f in rows["file"]],
                         "transcript": None, "split": "train", "label": rows["emotion"]})


def extract_with(manifest: pd.DataFrame, root: Path, store: Path, detector: str, options: dict):
    cfg = ExtractConfig(face_detector=detector, face_options=options, workers=1)
    summary, failures = extract(manifest, root, store, cfg)
    if failures:
        raise RuntimeError(f"{root}: extraction failed for {len(failures)} items, e.g. {failures[0]}")
    return summary["faces"]["all"]


def face_vectors(store: Path, manifest: pd.DataFrame, encoder) -> list[np.ndarray | None]:
    """The encoder's vector per manifest item (mean over its face frames), None without a face."""
    media = MediaStore(store)
    rows = {row.sample_id: row for row in media.view().itertuples()}
    crops = [media.load(rows[sid]).found_faces for sid in manifest["sample_id"]]
    return encoder.encode(crops)


def half_split_scores(vectors: list[np.ndarray | None], labels: np.ndarray) -> dict:
    """Accuracy and weighted F1, trained on one stratified half and tested on the other, both ways."""
    has = np.array([v is not None for v in vectors])
    dim = next(v.shape[0] for v in vectors if v is not None)
    x = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in vectors])
    accuracy, f1 = [], []
    for train, test in StratifiedKFold(2, shuffle=True, random_state=SEED).split(x, labels):
        fit = train[has[train]]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
        model.fit(x[fit], labels[fit])
        majority = pd.Series(labels[train]).mode()[0]
        predicted = np.where(has[test], model.predict(x[test]), majority)
        accuracy.append(accuracy_score(labels[test], predicted))
        f1.append(f1_score(labels[test], predicted, average="weighted"))
    return {"accuracy": float(np.mean(accuracy)), "f1_weighted": float(np.mean(f1)),
            "chance_accuracy": float(pd.Series(labels).value_counts(normalize=True).max())}


def run(data_dir: Path) -> dict:
    encoder = make_encoder("fer", {}, batch_size=64)
    result = {}
    for corpus, detectors in DETECTORS.items():
        manifest = corpus_manifest(data_dir, corpus)
        if manifest is None:
            result[corpus] = {"skipped": f"{data_dir / corpus}/labels.csv not found"}
            continue
        rows = {}
        for label, detector, options in detectors:
            with tempfile.TemporaryDirectory() as scratch:
                store = Path(scratch) / "media.zarr"
                stats = extract_with(manifest, data_dir / corpus, store, detector, options)
                row = {"detector": detector, "options": options, "items": stats["items"],
                       "items_with_face": 1 - stats["no_face"] / stats["items"],
                       "frames_with_face": stats["face_found_rate"], "no_face_items": stats["no_face_items"]}
                if corpus == "fer2013-dev":
                    row["visual_only"] = half_split_scores(face_vectors(store, manifest, encoder),
                                                           manifest["label"].to_numpy())
            rows[label] = row
        result[corpus] = rows
    return result


def markdown(result: dict) -> str:
    parts = []
    for corpus, rows in result.items():
        if "skipped" in rows:
            parts.append(f"{corpus}: skipped ({rows['skipped']})\n")
            continue
        table = pd.DataFrame([{"detector": label, "items": r["items"], "items with a face": r["items_with_face"],
                               "frames with a face": r["frames_with_face"],
                               **({"visual-only accuracy": r["visual_only"]["accuracy"],
                                   "visual-only weighted F1": r["visual_only"]["f1_weighted"]} if "visual_only" in r else {})}
                              for label, r in rows.items()])
        parts.append(f"**{corpus}**\n\n{markdown_table(table)}")
        chance = next((r["visual_only"]["chance_accuracy"] for r in rows.values() if "visual_only" in r), None)
        if chance is not None:
            parts.append(f"Visual-only: `fer` encoder on each detector's crops, logistic regression trained on one "
                         f"stratified half and tested on the other (mean of both ways); an image without a face "
                         f"counts as the majority class. Chance (majority) accuracy {chance:.4f}.\n")
    return "\n".join(parts)
