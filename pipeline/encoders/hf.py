"""What the transformers encoders share: where the weights come from, loading, devices, pooling.

Weights are named by `model_path` (a local Hugging Face-layout directory) or `model_id` (a hub id,
usable only where it is cached or a hub is reachable). Nothing here trusts remote code, and weights
load from .safetensors when present, else from .bin through torch.load(weights_only=True).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipeline.config import ConfigError

from .base import Encoder, Unavailable, check_choice, folder_digest

AUTOCAST = {"fp16": "float16", "bf16": "bfloat16"}
NOT_CACHED = "not cached"


@dataclass(frozen=True)
class HFConfig:
    model_id: str = ""        # hub id, e.g. "TencentGameMate/chinese-hubert-large"
    model_path: str = ""      # local directory; wins over model_id
    autocast: str = ""        # "" | "fp16" | "bf16": mixed precision, applied on CUDA only

    def __post_init__(self):
        check_choice("autocast", self.autocast, ("", *AUTOCAST))


@dataclass(frozen=True)
class LayerPooling:
    """Which hidden states make the output: hidden_states[layers] (or the last k, or a range), summed or
    averaged. hidden_states[0] is the embedding output, [i] layer i's output."""
    layers: tuple[int, ...] = (-1,)
    layer_reduce: str = "mean"    # "mean" | "sum"
    last_k: int = 0               # > 0: the last k hidden states, instead of `layers`
    layer_range: tuple[int, ...] = ()  # (first, last), both included, e.g. (12, 18): instead of `layers`

    def __post_init__(self):
        if not self.layers:
            raise ConfigError("layers: give at least one layer index")
        if self.last_k < 0:
            raise ConfigError(f"last_k: {self.last_k} must be >= 0 (0 = use layers)")
        check_choice("layer_reduce", self.layer_reduce, ("mean", "sum"))
        if self.layer_range:
            check_range(self.layer_range)
            if self.last_k:
                raise ConfigError("last_k and layer_range both choose the layers: give one of them")

    @property
    def selected_layers(self) -> tuple[int, ...]:
        if self.last_k:
            return tuple(range(-self.last_k, 0))
        if self.layer_range:
            return tuple(range(self.layer_range[0], self.layer_range[1] + 1))
        return self.layers


def check_range(span: tuple[int, ...]) -> None:
    """(first, last) of one sign (both from the start, or both from the end), first <= last."""
    if len(span) != 2 or not (span[0] <= span[1] and (span[0] < 0) == (span[1] < 0)):
        raise ConfigError(f"layer_range: {list(span)} is not [first, last] with first <= last, both counted "
                          f"from the start (e.g. [12, 18]) or both from the end (e.g. [-8, -5])")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def not_cached_message(model_id: str) -> str:
    return (f"model {model_id!r} is not in the local Hugging Face cache and no hub is reachable: "
            f"download it on a connected machine (hf download {model_id} --local-dir DIR), copy DIR "
            f"here and set model_path to it")


class HFEncoder(Encoder):
    """Loads one transformers model (plus its preprocessor) and runs it under inference_mode."""

    family = "transformers"
    example_model: ClassVar[str]
    packages = ("torch", "transformers")
    install = "pip install 'torch==2.13.0' 'transformers>=5,<6'"

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        import torch
        if self.num_threads:
            torch.set_num_threads(self.num_threads)  # process-wide: torch has no per-model thread pool
        self.torch_device = torch.device(self.device)   # resolved when params load (pipeline.config)
        self.model = self._load_model()

    @classmethod
    def local_dir(cls, config) -> str:
        return config.model_path

    @classmethod
    def source(cls, config) -> str:
        return cls.local_dir(config) or config.model_id

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        ok, why = super().available(config)
        if not ok:
            return ok, why
        if not cls.source(config):
            return False, (f"{cls.name} needs model_path (a local Hugging Face model directory) or "
                           f"model_id (a hub id such as {cls.example_model!r})")
        local = cls.local_dir(config)
        if local:
            if not (Path(local) / "config.json").is_file():
                return False, (f"model_path {local!r} is not a Hugging Face model directory "
                               f"(no config.json): point it at a directory written by save_pretrained "
                               f"or by hf download --local-dir")
            return True, ""
        if hub_snapshot(config.model_id) != NOT_CACHED:
            return True, ""
        if hub_offline():
            return False, not_cached_message(config.model_id)
        return True, f"model {config.model_id!r} is not cached: it will be downloaded on first use"

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        """The libraries, and the weights: a local folder's content, or the hub snapshot a model id is at."""
        weights = {}
        if config.model_path:
            weights = {"weights": folder_digest(config.model_path)}
        elif config.model_id:
            weights = {"weights": hub_snapshot(config.model_id)}
        return super().library_versions(config) | weights

    def load(self, auto_cls, **kwargs):
        """`auto_cls.from_pretrained` on this encoder's source, failing with how to get the weights."""
        src = self.source(self.config)
        try:
            return auto_cls.from_pretrained(src, local_files_only=hub_offline(), **kwargs)
        except OSError as err:
            if self.local_dir(self.config):
                raise Unavailable(f"encoder {self.name}: cannot load {auto_cls.__name__} from "
                                         f"model_path {src!r}: {err}") from err
            raise Unavailable(f"encoder {self.name}: {not_cached_message(src)} ({err})") from err

    def _load_model(self):
        import torch
        from transformers import AutoModel
        model = self.load(AutoModel, dtype=torch.float32,
                          use_safetensors=None)  # .safetensors if present, else .bin (weights_only)
        return model.to(self.torch_device).eval()

    def check_layers(self, layers: tuple[int, ...], n_layers: int) -> None:
        """hidden_states holds the embedding output plus one entry per layer."""
        n = n_layers + 1
        bad = [i for i in layers if not -n <= i < n]
        if bad:
            raise ConfigError(f"{self.name}: layers {bad} out of range for a model with {n} hidden "
                              f"states (embeddings + {n_layers} layers): use indices in [{-n}, {n - 1}]")

    @contextmanager
    def inference(self):
        """inference_mode, plus autocast on CUDA when the config asks for it."""
        import torch
        autocast = nullcontext()
        if self.config.autocast and self.torch_device.type == "cuda":
            autocast = torch.autocast("cuda", dtype=getattr(torch, AUTOCAST[self.config.autocast]))
        with torch.inference_mode(), autocast:
            yield


def hub_snapshot(model_id: str) -> str:
    """The commit of the cached snapshot of a hub model ("not cached" before its first download)."""
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(model_id, "config.json")
    return Path(found).parent.name if isinstance(found, str) else NOT_CACHED


def pool_layers(hidden_states, layers: tuple[int, ...], reduce: str):
    """[B, T, D]: the chosen hidden states, summed (MER 2023 text) or averaged."""
    import torch
    stacked = torch.stack([hidden_states[i] for i in layers]).float()
    return stacked.sum(0) if reduce == "sum" else stacked.mean(0)


def masked_pool(x, keep, how: str = "mean"):
    """[B, D]: mean or max of x [B, T, D] over the positions where keep [B, T] is true."""
    if how == "max":
        return x.masked_fill(~keep.unsqueeze(-1), float("-inf")).amax(1)
    keep = keep.to(x.dtype).unsqueeze(-1)
    return (x * keep).sum(1) / keep.sum(1).clamp(min=1)
