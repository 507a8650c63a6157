"""Self-supervised speech models through transformers: wav2vec 2.0, HuBERT, WavLM, data2vec-audio.

MER 2023 takes the last hidden state and averages it over time, one whole utterance per forward.
Batching pads the waveforms, so it is used only where the result cannot change: the feature
extractor returns an attention mask (layer-norm models) and the model maps sample lengths to frame
lengths, so padded frames are left out of the mean. Group-norm models (e.g. wav2vec2-base, whose
first conv normalises over the whole padded input) run one utterance at a time, as MER 2023 did.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np

from .base import SAMPLE_RATE, check_choice, finite_or_none, is_silent
from .hf import HFConfig, HFEncoder, LayerPooling, masked_pool, pool_layers


@dataclass(frozen=True)
class HFAudioConfig(HFConfig, LayerPooling):
    pooling: str = "mean"     # "mean" | "max" over time, padded frames excluded

    def __post_init__(self):
        HFConfig.__post_init__(self)
        LayerPooling.__post_init__(self)
        check_choice("pooling", self.pooling, ("mean", "max"))


class HFAudioEncoder(HFEncoder):
    """A transformers speech model (wav2vec 2.0, HuBERT, WavLM, ...): hidden states averaged over time."""

    name = "hf-audio"
    version = "1"
    modality = "audio"
    Config = HFAudioConfig
    example_model = "TencentGameMate/chinese-hubert-large"

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        from transformers import AutoFeatureExtractor
        self.extractor = self.load(AutoFeatureExtractor)
        self.check_layers(config.selected_layers, self.model.config.num_hidden_layers)
        self.frame_lengths = getattr(self.model, "_get_feat_extract_output_lengths", None)
        if self.frame_lengths and "add_adapter" in inspect.signature(self.frame_lengths).parameters:
            # hidden_states come from the encoder, before any adapter shortens the sequence
            self.frame_lengths = functools.partial(self.frame_lengths, add_adapter=False)
        self.masked = bool(getattr(self.extractor, "return_attention_mask", False)) and bool(self.frame_lengths)

    def encode(self, batch) -> list[np.ndarray | None]:
        return self._run_sorted(batch, self._usable, len, self._forward,
                                size=None if self.masked else 1)

    def _usable(self, wave) -> bool:
        """Not silent, and long enough for the conv front end to give at least one frame."""
        if is_silent(wave):
            return False
        return self.frame_lengths is None or int(self.frame_lengths(len(wave))) > 0

    def _forward(self, waves: list[np.ndarray]) -> list[np.ndarray | None]:
        import torch
        inputs = self.extractor([np.asarray(w, dtype=np.float32) for w in waves],
                                sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt",
                                return_attention_mask=self.masked).to(self.torch_device)
        with self.inference():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        x = pool_layers(hidden, self.config.selected_layers, self.config.layer_reduce)
        keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if self.masked:
            lengths = self.frame_lengths(inputs["attention_mask"].sum(-1))
            keep = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return [finite_or_none(v) for v in masked_pool(x, keep, self.config.pooling).cpu().numpy()]

    def _dummy(self):
        return np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
