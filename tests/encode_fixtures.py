"""Tiny transformers models built from a config and saved with save_pretrained (so encoders load them
through their real model_path code), and small media stores for the encode stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.store.media import MediaItem, MediaStore

SR = 16000
WORDS = "the a man woman is are playing plays guitar piano music happy sad angry today very".split()
TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37)
CONV = dict(conv_dim=(16, 16), conv_stride=(5, 5), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * SR)).astype(np.float32)


def faces(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def save_wav2vec2(path: Path, norm: str = "layer", model_cls=None, seed: int = 0, **sizes) -> str:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    config = Wav2Vec2Config(**(TINY | dict(num_hidden_layers=3) | CONV | sizes), feat_extract_norm=norm,
                            do_stable_layer_norm=norm == "layer")
    torch.manual_seed(seed)
    (model_cls or Wav2Vec2Model)(config).save_pretrained(path)
    # HF's rule: an attention mask only for layer-norm models (group norm sees the padding anyway)
    Wav2Vec2FeatureExtractor(return_attention_mask=norm == "layer", do_normalize=True).save_pretrained(path)
    return str(path)


def save_hubert(path: Path, layers: int = 2) -> str:
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor
    config = HubertConfig(**TINY, **CONV, num_hidden_layers=layers, feat_extract_norm="layer",
                          do_stable_layer_norm=True)
    torch.manual_seed(1)
    HubertModel(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(path)
    return str(path)


def save_bert(path: Path, seed: int = 0, nan_word: str = "") -> str:
    """nan_word: that word's embedding is NaN, so any text containing it encodes to NaN."""
    from transformers import BertConfig, BertModel, BertTokenizer
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]
    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(path)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(WORDS) + 6, num_hidden_layers=4, max_position_embeddings=64,
                                 **TINY))
    if nan_word:
        with torch.no_grad():
            model.embeddings.word_embeddings.weight[5 + WORDS.index(nan_word)] = float("nan")
    model.save_pretrained(path)
    return str(path)


SUBTITLES = ("我今天很开心。", "他为什么这么生气？", "别担心，没事的。")  # Chinese subtitles, one token per character


def save_chinese_bert(path: Path) -> str:
    """A BertModel with a character vocabulary, as the Chinese RoBERTa-wwm and MacBERT checkpoints are
    (BertModel + BertTokenizer, which splits Chinese into characters)."""
    from transformers import BertConfig, BertModel, BertTokenizer
    chars = sorted(set("".join(SUBTITLES)))
    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])},
                  tokenize_chinese_chars=True).save_pretrained(path)
    torch.manual_seed(2)
    BertModel(BertConfig(vocab_size=len(chars) + 5, num_hidden_layers=4, max_position_embeddings=64,
                         **TINY)).save_pretrained(path)
    return str(path)


def save_vit(path: Path) -> str:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, **TINY)).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def save_clip(path: Path) -> str:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    tiny = TINY | dict(num_hidden_layers=2)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=dict(tiny, vocab_size=50), projection_dim=16,
                         vision_config=dict(tiny, image_size=32, patch_size=8))).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(path)
    return str(path)


def save_clip_vision(path: Path) -> str:
    """CLIP's vision tower alone (CLIPVisionModel), 3 layers."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel
    torch.manual_seed(3)
    CLIPVisionModel(CLIPVisionConfig(**TINY, num_hidden_layers=3, image_size=32, patch_size=8)).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(path)
    return str(path)


def save_resnet(path: Path) -> str:
    """A ResNet (bottleneck blocks, as ResNet-50) with global-average pooling."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1],
                             layer_type="bottleneck")).save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(path)
    return str(path)


def media_item(sample_id: str, seconds: float = 0.5, transcript: str = "the man is happy",
               n_frames: int = 3, found: bool = True, silent: bool = False, face_size: int = 48) -> MediaItem:
    seed = int.from_bytes(sample_id.encode()[-4:].rjust(4, b"\0"), "little")
    audio = np.zeros(int(SR * seconds), np.float32) if silent else noise(seconds, seed)
    return MediaItem(sample_id, "src", "prm", audio=audio, faces=faces(n_frames, face_size, seed),
                     found=np.full(n_frames, found), frame_time=np.arange(n_frames, dtype=np.float32),
                     boxes=np.zeros((n_frames, 4), np.float32), transcript=transcript,
                     transcript_source="given", meta={})


def media_view(root: Path, items: list[MediaItem], parts: int = 1) -> Path:
    """A media store holding `items` (in `parts` parts) whose view lists them all."""
    store = MediaStore(root).create()
    for i in range(parts):
        store.write(items[i::parts])
    store = MediaStore(root)
    store.write_view(store.index())
    return root


def transcript(i: int) -> str:
    """A distinct short sentence per i."""
    rng = np.random.default_rng(i)
    return " ".join(rng.choice(WORDS, size=3 + i % 5))
