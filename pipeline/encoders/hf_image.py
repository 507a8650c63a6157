"""Image backbones through transformers over face crops: CLIP vision, ViT, DINOv2, ConvNeXt ...

Each frame is embedded on its own (the processor resizes and normalises it) and the item's vector is
the mean over its frames. For a dual-encoder checkpoint (CLIP, SigLIP) only the vision tower runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import ConfigError

from .base import VisualEncoder
from .hf import HFConfig, HFEncoder, check_choice


@dataclass(frozen=True)
class HFImageConfig(HFConfig):
    # pooler: the model's pooled output (CLIP: layer-normed CLS); cls: last hidden state at CLS;
    # mean: last hidden state averaged over tokens (or over space for conv nets)
    pooling: str = "pooler"

    def __post_init__(self):
        HFConfig.__post_init__(self)
        check_choice("pooling", self.pooling, ("pooler", "cls", "mean"))


class HFImageEncoder(HFEncoder, VisualEncoder):
    """A transformers image backbone (CLIP vision, ViT, DINOv2, ...) over face crops, averaged over frames."""

    name = "hf-image"
    version = "1"
    Config = HFImageConfig
    example_model = "openai/clip-vit-base-patch32"

    def __init__(self, config, device="cpu", batch_size=32, num_threads=None, progress=False):
        super().__init__(config, device, batch_size, num_threads, progress)
        from transformers import AutoImageProcessor
        # the PIL backend gives the same pixels whether or not torchvision is installed
        self.processor = self.load(AutoImageProcessor, backend="pil")
        self.backbone = getattr(self.model, "vision_model", self.model)

    def embed_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        pixels = self.processor(images=frames, return_tensors="pt")["pixel_values"]
        with self.inference():
            out = self.backbone(pixel_values=pixels.to(self.torch_device))
        return self._pool(out).float().cpu().numpy()

    def _pool(self, out):
        how = self.config.pooling
        if how == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(f"{self.name}: this model has no pooler output: set pooling to "
                                  f"'cls' or 'mean'")
            return out.pooler_output.flatten(1)   # conv nets pool to [B, C, 1, 1]
        hidden = out.last_hidden_state
        if hidden.ndim == 4:                      # conv nets: [B, C, H, W], no tokens
            if how == "cls":
                raise ConfigError(f"{self.name}: a convolutional model has no CLS token: use "
                                  f"pooling 'pooler' or 'mean'")
            return hidden.mean((2, 3))
        return hidden[:, 0] if how == "cls" else hidden.mean(1)
