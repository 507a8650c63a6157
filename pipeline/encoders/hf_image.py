"""Image backbones through transformers over face crops: CLIP vision, ViT, DINOv2, ConvNeXt ...

Each frame is embedded on its own (the processor resizes and normalises it) and the item's vector is
the mean over its frames. For a dual-encoder checkpoint (CLIP, SigLIP) only the vision tower runs, plus
CLIP's visual projection where pooling asks for CLIP's image embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import ConfigError

from .base import VisualEncoder, check_choice
from .hf import HFConfig, HFEncoder, LayerPooling, pool_layers


@dataclass(frozen=True)
class HFImageConfig(HFConfig, LayerPooling):
    # pooler: the model's pooled output (CLIP: layer-normed CLS); projection: CLIP's image embedding (the
    # pooled output through visual_projection, as CLIPModel.get_image_features); cls: the chosen hidden
    # state at CLS; mean: it averaged over tokens (or over space for conv nets). The layer options apply
    # to cls and mean; at their default that state is the model's last_hidden_state.
    pooling: str = "pooler"

    def __post_init__(self):
        HFConfig.__post_init__(self)
        LayerPooling.__post_init__(self)
        check_choice("pooling", self.pooling, ("pooler", "projection", "cls", "mean"))
        if self.pooling in ("pooler", "projection") and self.hidden_layers:
            raise ConfigError(f"pooling {self.pooling!r} takes the model's pooled output: choose layers "
                              f"(layers, last_k, layer_range) with pooling 'cls' or 'mean'")

    @property
    def hidden_layers(self) -> bool:
        """Whether hidden layers other than the last hidden state are chosen."""
        return self.selected_layers != (-1,)


class HFImageEncoder(HFEncoder, VisualEncoder):
    """A transformers image backbone (CLIP vision, ViT, DINOv2, ...) over face crops, averaged over frames."""

    name = "hf-image"
    version = "1"
    Config = HFImageConfig
    example_model = "openai/clip-vit-base-patch32"

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        from transformers import AutoImageProcessor
        # the PIL backend gives the same pixels whether or not torchvision is installed
        self.processor = self.load(AutoImageProcessor, backend="pil")
        self.backbone = getattr(self.model, "vision_model", self.model)
        if config.pooling == "projection" and not hasattr(self.model, "visual_projection"):
            raise ConfigError(f"{self.name}: pooling 'projection' needs a CLIP checkpoint with its visual "
                              f"projection (a CLIPModel, e.g. openai/clip-vit-large-patch14); this model has "
                              f"none: use pooling 'pooler'")
        if config.hidden_layers:
            n_layers = getattr(self.backbone.config, "num_hidden_layers", None)
            if n_layers is None:
                raise ConfigError(f"{self.name}: this model has no stack of transformer layers to choose "
                                  f"from: leave layers, last_k and layer_range at their defaults")
            self.check_layers(config.selected_layers, n_layers)

    def embed_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        pixels = self.processor(images=frames, return_tensors="pt")["pixel_values"]
        with self.inference():
            out = self.backbone(pixel_values=pixels.to(self.torch_device),
                                output_hidden_states=self.config.hidden_layers)
            pooled = self._pool(out)
        return pooled.float().cpu().numpy()

    def _pool(self, out):
        how = self.config.pooling
        if how in ("pooler", "projection"):
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(f"{self.name}: this model has no pooler output: set pooling to "
                                  f"'cls' or 'mean'")
            pooled = out.pooler_output.flatten(1)   # conv nets pool to [B, C, 1, 1]
            return self.model.visual_projection(pooled) if how == "projection" else pooled
        hidden = out.last_hidden_state
        if self.config.hidden_layers:
            hidden = pool_layers(out.hidden_states, self.config.selected_layers, self.config.layer_reduce)
        if hidden.ndim == 4:                      # conv nets: [B, C, H, W], no tokens
            if how == "cls":
                raise ConfigError(f"{self.name}: a convolutional model has no CLS token: use "
                                  f"pooling 'pooler' or 'mean'")
            return hidden.mean((2, 3))
        return hidden[:, 0] if how == "cls" else hidden.mean(1)
