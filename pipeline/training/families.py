"""Model-family registry: train.model names a family here; each cross-validates, saves, loads and predicts
its fold ensembles, and a checkpoint records its family by name.

The registry idiom of pipeline/registry.py: a class per family with a `name` and a frozen `Config` (its
params.yaml section), all in one Registry, an unknown name a ConfigError listing the known ones. A family
is used as a class (its methods take the Config), never instantiated. Importing this module imports no
model library; each family imports its own when used.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import FusionParams, LightGBMParams, TrainConfig
from pipeline.environment import versions
from pipeline.registry import Component, Registry
from pipeline.training.cv import CVResult, TestPrediction, TestSet
from pipeline.training.folds import CVJob


class ModelFamily(Component):
    kind = "model family"
    FILE: str   # what `save` writes beside checkpoint.json

    @classmethod
    def section(cls, train: TrainConfig):
        """The family's Config in the train section."""

    @classmethod
    def cross_validate(cls, jobs: list[CVJob], train: TrainConfig, n_classes: int) -> list[CVResult]:
        """Each job's K-fold CV (same folds, metrics and result shape in every family), with the family's
        section of `train` and the run knobs it uses."""

    @classmethod
    def save(cls, ensemble, folder: Path) -> dict:
        """Write the fold ensemble into `folder`; returns what checkpoint.json must record to load it."""

    @classmethod
    def load(cls, folder: Path, meta: dict):
        """The fold ensemble `save` wrote, from the folder and its checkpoint.json."""

    @classmethod
    def predict(cls, ensemble, ts: TestSet, modalities: tuple[str, ...]) -> TestPrediction:
        """The fold ensemble's prediction on a test set: the mean of the folds' logits and valences."""


class Fusion(ModelFamily):
    """The MER 2023 attention fusion, folds (and ablation subsets) stacked into one model."""
    name = "fusion"
    Config = FusionParams
    packages = ("torch", "safetensors")
    install = "pip install 'torch>=2.6,<3' 'safetensors>=0.4,<1'"
    FILE = "weights.safetensors"

    @classmethod
    def section(cls, train: TrainConfig) -> FusionParams:
        return train.fusion

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return versions("torch", "numpy", "safetensors")

    @classmethod
    def cross_validate(cls, jobs, train: TrainConfig, n_classes: int) -> list[CVResult]:
        from pipeline.training import fusion

        return fusion.cross_validate(jobs, fusion.FusionRun(cls.section(train), n_classes=n_classes, device=train.device))

    @classmethod
    def save(cls, ensemble, folder: Path) -> dict:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in ensemble.state_dict().items()}, str(folder / cls.FILE))
        return {"architecture": ensemble.architecture()}

    @classmethod
    def load(cls, folder: Path, meta: dict):
        from safetensors.torch import load_file

        from pipeline.models.fusion import AttentionFusion

        model = AttentionFusion(**meta["architecture"])
        model.load_state_dict(load_file(str(folder / cls.FILE)))
        return model.eval()

    @classmethod
    def predict(cls, ensemble, ts: TestSet, modalities: tuple[str, ...]) -> TestPrediction:
        from pipeline.training.fusion import predict_folds

        return predict_folds(ensemble, ts, modalities)


class LightGBM(ModelFamily):
    """Early-fusion LightGBM on the concatenated modality vectors, one booster pair per fold."""
    name = "lightgbm"
    Config = LightGBMParams
    packages = ("lightgbm",)
    install = "pip install 'lightgbm>=4.0,<5'"
    FILE = "lightgbm.json"

    @classmethod
    def section(cls, train: TrainConfig) -> LightGBMParams:
        return train.lightgbm

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return versions("lightgbm", "numpy")

    @classmethod
    def cross_validate(cls, jobs, train: TrainConfig, n_classes: int) -> list[CVResult]:
        from pipeline.training import lgbm

        return lgbm.cross_validate(jobs, lgbm.LightGBMRun(cls.section(train), n_classes=n_classes))

    @classmethod
    def save(cls, ensemble, folder: Path) -> dict:
        (folder / cls.FILE).write_text(json.dumps([m.to_dict() for m in ensemble]))
        return {}

    @classmethod
    def load(cls, folder: Path, meta: dict):
        from pipeline.training.lgbm import FoldModel

        return [FoldModel.from_dict(d, len(meta["labels"])) for d in json.loads((folder / cls.FILE).read_text())]

    @classmethod
    def predict(cls, ensemble, ts: TestSet, modalities: tuple[str, ...]) -> TestPrediction:
        from pipeline.training.lgbm import predict_folds

        return predict_folds(ensemble, ts, modalities)


FAMILIES = Registry("train.model", Fusion, LightGBM)


def family(name: str) -> type[ModelFamily]:
    return FAMILIES.lookup(name)
