"""Fold-ensemble checkpoints: the trained models plus everything needed to feed them the right inputs.

A checkpoint is a folder:
- `checkpoint.json`: model family, modalities, the feature each modality was encoded with (feature
  name, encoder, version, config, library versions, identity key, dim), the label set, the feature
  normalisation statistics, model hyperparameters and the library versions of training;
- what the model family (`model`, a name in training.families.FAMILIES) saves: the attention fusion's
  stacked fold weights at their best epochs (`weights.safetensors`), LightGBM's boosters (`lightgbm.json`).

Loading checks the features a caller will feed against the recorded ones and refuses a mismatch,
naming the modality and what differs: predictions from features of another encoder are meaningless.
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from pipeline.config import TrainConfig
from pipeline.environment import versions
from pipeline.errors import InputError, MerError, MissingInput
from pipeline.fingerprint import file_sha256, fingerprint, source_digest
from pipeline.store.features import FeatureStore
from pipeline.training.cv import CVResult, TestPrediction, TestSet
from pipeline.training.data import NormStats
from pipeline.training.families import FAMILIES, family
from pipeline.training.metrics import CV_FIGURES

FORMAT = 1
META = "checkpoint.json"
LIBRARIES = ("torch", "numpy", "lightgbm", "safetensors", "scikit-learn", "mer-pipeline")
CODE = ("training", "models")   # the sources that shape a checkpoint: their digest is its code version
FEATURE_FIELDS = ("encoder", "version", "config", "libraries", "dim")  # what must match, in report order
RETRAIN = "train it again (`mer train` or `dvc repro train`)"
DAMAGED = f"the checkpoint is damaged or incomplete: {RETRAIN}"


class FeatureMismatch(MerError, ValueError):
    """The features offered to a checkpoint are not the ones it was trained on."""


def feature_record(feature: str, store: Path) -> dict:
    """What a checkpoint records of one modality's features, from the feature store's metadata."""
    meta = FeatureStore(store).meta()
    ident = meta["identity"]
    return {"feature": feature, "encoder": ident["encoder"], "version": ident["version"], "config": ident["config"],
            "libraries": ident["libraries"], "identity_key": meta["identity_key"], "dim": int(meta["dim"])}


def checkpoint_fingerprint(cfg: TrainConfig, subset: str, seed: int, features: dict[str, dict],
                           labels: tuple[str, ...], manifest_sha256: str) -> str:
    """The checkpoint's fingerprint (pipeline.fingerprint): the training code; what shapes the model (its
    family's hyperparameters but the device, folds, grouping, normalisation, ablation subset, seed, the
    features' own fingerprints, the label set, the training manifest); the family's libraries."""
    chosen = family(cfg.model)
    section = chosen.section(cfg)
    config = {"model": cfg.model, "params": {f.name: getattr(section, f.name) for f in fields(chosen.Config)
                                             if f.name != "device"},
              "folds": cfg.folds, "group_by": cfg.group_by, "feature_norm": cfg.feature_norm, "subset": subset,
              "seed": seed, "features": {m: r["identity_key"] for m, r in sorted(features.items())},
              "labels": list(labels), "manifest_sha256": manifest_sha256}
    return fingerprint(("checkpoint", source_digest(*CODE)), config, chosen.library_versions(section))


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **versions(*LIBRARIES)}


def save(out: Path, result: CVResult, features: dict[str, dict], norm: dict[str, NormStats] | None,
         labels: tuple[str, ...], extra: dict | None = None) -> Path:
    """Write `result`'s fold ensemble to folder `out`; `features`: modality -> feature_record();
    `labels`: the label set in class-index order."""
    missing = [m for m in result.modalities if m not in features]
    if missing:
        raise ValueError(f"no feature record for modalities {missing}")
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT, "model": result.model, "modalities": list(result.modalities),
        "features": {m: features[m] for m in result.modalities}, "labels": list(labels),
        "folds": int(len(result.fold_scores)), "cv": result.cv,
        "feature_norm": None if norm is None else {m: {"mean": norm[m].mean.tolist(), "std": norm[m].std.tolist()}
                                                   for m in result.modalities},
        "libraries": library_versions(), **(extra or {}),
    }
    chosen = family(result.model)
    meta.update(chosen.save(result.ensemble, out))
    meta["sha256"] = {chosen.FILE: file_sha256(out / chosen.FILE)}
    (out / META).write_text(json.dumps(meta, indent=1))
    return out


@dataclass
class Checkpoint:
    meta: dict
    ensemble: object

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.meta["modalities"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    @property
    def features(self) -> dict[str, dict]:
        return self.meta["features"]

    @property
    def norm(self) -> dict[str, NormStats] | None:
        stats = self.meta["feature_norm"]
        if stats is None:
            return None
        return {m: NormStats(np.asarray(s["mean"], np.float32), np.asarray(s["std"], np.float32)) for m, s in stats.items()}

    def check_features(self, offered: dict[str, dict]) -> None:
        """Refuse features (modality -> feature_record()) that differ from the training features."""
        problems = []
        for m, want in self.features.items():
            have = offered.get(m)
            if have is None:
                problems.append(f"{m}: the checkpoint needs feature {want['feature']!r} (encoder {want['encoder']}), none given")
                continue
            diffs = [f"{key} {have.get(key)!r} != trained {want[key]!r}" for key in FEATURE_FIELDS if have.get(key) != want[key]]
            if diffs or have.get("identity_key") != want["identity_key"]:
                problems.append(f"{m}: encoder {have.get('encoder')!r} (feature {have.get('feature')!r}) differs from the "
                                f"trained {want['encoder']!r} (feature {want['feature']!r}): "
                                + ("; ".join(diffs) or "identity key differs"))
        if problems:
            raise FeatureMismatch("features do not match the checkpoint:\n  " + "\n  ".join(problems))

    def predict(self, ts: TestSet) -> TestPrediction:
        return family(self.meta["model"]).predict(self.ensemble, ts, self.modalities)


def load(path: Path) -> Checkpoint:
    """The checkpoint in folder `path`; a damaged or cut-short one is an InputError naming its files."""
    path = Path(path)
    if not (path / META).is_file():
        raise MissingInput(f"{path} is not a checkpoint (no {META}): run the train stage")
    try:
        meta = json.loads((path / META).read_text())
    except (ValueError, OSError) as err:   # cut short, not UTF-8, not JSON
        raise InputError(f"{path / META}: not readable JSON ({err}); {DAMAGED}") from err
    if not isinstance(meta, dict):
        raise InputError(f"{path / META}: holds a JSON {type(meta).__name__}, not a checkpoint's record; {DAMAGED}")
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: checkpoint format {meta.get('format')!r}, this code reads format {FORMAT}: "
                         f"{RETRAIN}")
    chosen = FAMILIES.get(meta["model"]) if isinstance(meta.get("model"), str) else None
    if chosen is None:
        raise InputError(f"{path / META}: model {meta.get('model')!r} is not a model family here "
                         f"({', '.join(FAMILIES)}); {DAMAGED}")
    check_digest(path, meta, chosen.FILE)
    try:
        warn_library_changes(path, meta.get("libraries", {}))
        return _answering(Checkpoint(meta, chosen.load(path, meta)))
    except MerError:
        raise
    except Exception as err:   # files a user can damage, read by several libraries: any failure means damage
        raise InputError(f"{path}: {META} and {chosen.FILE} do not load as one checkpoint "
                         f"({type(err).__name__}: {err}); {DAMAGED}") from err


def check_digest(path: Path, meta: dict, name: str) -> None:
    """The model file must hold the bytes training wrote: a damaged one can abort the library reading it
    (LightGBM's parser does), beyond any except clause."""
    digests = meta.get("sha256")
    if digests is None:
        return   # written before checkpoints recorded digests
    if not (path / name).is_file():
        raise InputError(f"{path / name}: missing; {DAMAGED}")
    if not isinstance(digests, dict) or digests.get(name) != file_sha256(path / name):
        raise InputError(f"{path / name}: not the file {META} records (cut short or changed since training); {DAMAGED}")


def _answering(ckpt: Checkpoint) -> Checkpoint:
    """The checkpoint, once every field a caller reads is there and the model answers one all-zero item
    with a logit per label: a damaged checkpoint fails at load, never midway through a prediction."""
    for m in ckpt.modalities:
        missing = {"feature", "identity_key", *FEATURE_FIELDS} - set(ckpt.features[m])
        if missing:
            raise KeyError(f"the {m} feature record lacks {sorted(missing)}")
    dims = {m: int(ckpt.features[m]["dim"]) for m in ckpt.modalities}
    if ckpt.norm is not None and {m: (len(s.mean), len(s.std)) for m, s in ckpt.norm.items()} != {
            m: (d, d) for m, d in dims.items()}:
        raise ValueError("the feature normalisation does not fit the checkpoint's features")
    zeros = TestSet({m: np.zeros((1, d), np.float32) for m, d in dims.items()})
    if ckpt.predict(zeros).logits.shape != (1, len(ckpt.labels)):
        raise ValueError(f"the model does not answer with one logit per label of {list(ckpt.labels)}")
    return ckpt


def warn_library_changes(path: Path, recorded: dict) -> None:
    """Warn when the libraries that trained the checkpoint differ from those here: its predictions may
    then differ slightly from the ones train wrote (a warning, not a refusal: patch releases are common)."""
    here = library_versions()
    changed = {k: (v, here.get(k, "missing")) for k, v in recorded.items() if here.get(k, "missing") != v}
    if changed:
        warnings.warn(f"{path} was trained with other library versions (trained -> here): "
                      + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items()))
                      + "; predictions may differ slightly from train's", stacklevel=2)


def model_card(extract_cfg, rows, coverage: dict[str, int], summary: dict, manifest_sha256: str) -> dict:
    """What a checkpoint says of its making: the extraction settings `mer predict` repeats (ExtractConfig's
    output keys), the training corpus (the adapter and root prepare recorded in the manifest, the
    manifest's sha256, its rows), the digest of the training code (not a git commit: an unrelated commit
    leaves the checkpoint's bytes alone) and the CV figures."""
    labelled = rows[(rows["split"] == "train") & rows["label"].notna()]
    source = {"adapter": None, "root": None, "generated": False} | rows.attrs.get("corpus", {})
    corpus = {**source, "manifest_sha256": manifest_sha256,
              "splits": {str(k): int(v) for k, v in rows["split"].value_counts().sort_index().items()},
              "train_labels": {str(k): int(v) for k, v in labelled["label"].value_counts().sort_index().items()},
              "train_speakers": int(labelled["speaker"].nunique()) if "speaker" in labelled else 0,
              "train_items_with": coverage}
    return {"extract": {k: getattr(extract_cfg, k) for k in extract_cfg.OUTPUT_KEYS}, "corpus": corpus,
            "code": source_digest(*CODE), "metrics": {k: summary[k] for k in CV_FIGURES if k in summary}}
