"""The community's encoders (recipes/community-encoders.yaml): a hidden layer range for the speech, text
and image transformers, CLIP's vision tower and image embedding, each checked against the model run
by hand, on tiny random models of the same classes saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import SECTIONS, ConfigError, EncoderSpec, build
from pipeline.encode import spec_identity
from pipeline.encoders import make_encoder

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from encode_fixtures import (  # noqa: E402 (they need torch and transformers)
    SR,
    SUBTITLES,
    faces,
    noise,
    save_chinese_bert,
    save_clip,
    save_clip_vision,
    save_hubert,
    save_resnet,
)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "community-encoders.yaml"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("community")
    return {"hubert": save_hubert(root / "hubert", layers=4), "bert": save_chinese_bert(root / "bert"),
            "clip-vision": save_clip_vision(root / "clip-vision"), "clip": save_clip(root / "clip"),
            "resnet": save_resnet(root / "resnet")}


def hidden_states(path: str, **inputs):
    with torch.inference_mode():
        return transformers.AutoModel.from_pretrained(path)(**inputs, output_hidden_states=True).hidden_states


def mean_of(hidden, layers) -> torch.Tensor:
    return torch.stack([hidden[i] for i in layers]).mean(0)


def pixels(path: str, frames: np.ndarray) -> dict:
    processor = transformers.AutoImageProcessor.from_pretrained(path, backend="pil")
    return processor(images=list(frames), return_tensors="pt")


# ---------------------------------------------------------------- speech: a hidden layer range

def test_hubert_layer_range_is_the_time_mean_of_those_layers_mean(models):
    wave = noise(1.2, seed=4)
    inputs = transformers.AutoFeatureExtractor.from_pretrained(models["hubert"])(wave, sampling_rate=SR,
                                                                                 return_tensors="pt")
    hidden = hidden_states(models["hubert"], **inputs)   # embeddings + 4 layers
    (vec,) = make_encoder("hf-audio", {"model_path": models["hubert"], "layer_range": [1, 2]}).encode([wave])
    np.testing.assert_allclose(vec, mean_of(hidden, [1, 2])[0].mean(0).numpy(), atol=1e-5)
    (from_end,) = make_encoder("hf-audio", {"model_path": models["hubert"], "layer_range": [-4, -3]}).encode([wave])
    np.testing.assert_array_equal(from_end, vec)          # [-4, -3] is [1, 2] in a 4-layer model
    (first,) = make_encoder("hf-audio", {"model_path": models["hubert"], "layers": [1]}).encode([wave])
    np.testing.assert_allclose(first, hidden[1][0].mean(0).numpy(), atol=1e-5)
    assert not np.allclose(first, vec)


@pytest.mark.parametrize("options, message", [
    ({"layer_range": [2, 1]}, "first <= last"),
    ({"layer_range": [1, -1]}, "both counted from the start"),
    ({"layer_range": [1]}, r"not \[first, last\]"),
    ({"layer_range": [1, 2], "last_k": 2}, "give one of them"),
])
def test_a_malformed_layer_range_is_refused_at_load(options, message):
    with pytest.raises(ConfigError, match=message):
        make_encoder("hf-audio", options)


def test_a_layer_range_beyond_the_model_is_refused(models):
    with pytest.raises(ConfigError, match=r"layers \[5\] out of range"):
        make_encoder("hf-audio", {"model_path": models["hubert"], "layer_range": [4, 5]})


# ---------------------------------------------------------------- text: Chinese subtitles

def test_chinese_bert_reads_subtitles_per_character_over_a_layer_range(models):
    path = models["bert"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    tokens = tokenizer(SUBTITLES[1], return_tensors="pt")
    assert tokenizer.unk_token_id not in tokens["input_ids"][0].tolist()  # every character is in the vocabulary
    hidden = hidden_states(path, **tokens)
    enc = make_encoder("hf-text", {"model_path": path, "layer_range": [2, 4], "layer_reduce": "mean"}, batch_size=3)
    out = enc.encode(list(SUBTITLES))
    np.testing.assert_allclose(out[1], mean_of(hidden, [2, 3, 4])[0, 1:-1].mean(0).numpy(), atol=1e-5)  # no CLS/SEP
    np.testing.assert_allclose(enc.encode([SUBTITLES[1]])[0], out[1], atol=1e-5)   # the same alone as in a batch
    (baseline,) = make_encoder("hf-text", {"model_path": path}).encode([SUBTITLES[1]])  # the last four, summed
    np.testing.assert_allclose(baseline, torch.stack(hidden[-4:]).sum(0)[0, 1:-1].mean(0).numpy(), atol=1e-4)


# ---------------------------------------------------------------- faces: CLIP vision

def test_clip_vision_model_pooled_output_and_chosen_layers(models):
    path, frames = models["clip-vision"], faces(3, size=40)
    inputs = pixels(path, frames)
    with torch.inference_mode():
        out = transformers.AutoModel.from_pretrained(path)(**inputs, output_hidden_states=True)
    assert type(transformers.AutoModel.from_pretrained(path)).__name__ == "CLIPVisionModel"
    expected = [({"pooling": "pooler"}, out.pooler_output),
                ({"pooling": "mean", "layer_range": [-2, -1]}, mean_of(out.hidden_states, [-2, -1]).mean(1)),
                ({"pooling": "cls", "layers": [1]}, out.hidden_states[1][:, 0]),
                ({"pooling": "mean"}, out.last_hidden_state.mean(1))]
    for options, per_frame in expected:
        enc = make_encoder("hf-image", {"model_path": path, **options}, batch_size=2)
        (frame_level,) = enc.encode_frames([frames])
        np.testing.assert_allclose(frame_level, per_frame.numpy(), atol=1e-5, err_msg=str(options))
        np.testing.assert_allclose(enc.encode([frames])[0], per_frame.numpy().mean(0), atol=1e-5)


def test_clip_projection_is_clips_image_embedding(models):
    path, frames = models["clip"], faces(2, size=40)
    with torch.inference_mode():
        embedded = transformers.CLIPModel.from_pretrained(path).get_image_features(**pixels(path, frames)).pooler_output
    enc = make_encoder("hf-image", {"model_path": path, "pooling": "projection"})
    assert enc.probe_dim() == 16   # the projection's size, not the tower's 32
    np.testing.assert_allclose(enc.encode([frames])[0], embedded.numpy().mean(0), atol=1e-5)


def test_image_options_that_cannot_apply_are_refused(models):
    with pytest.raises(ConfigError, match="needs a CLIP checkpoint with its visual projection"):
        make_encoder("hf-image", {"model_path": models["clip-vision"], "pooling": "projection"})
    with pytest.raises(ConfigError, match="pooling 'pooler' takes the model's pooled output"):
        make_encoder("hf-image", {"layer_range": [-2, -1]})
    with pytest.raises(ConfigError, match="no stack of transformer layers"):
        make_encoder("hf-image", {"model_path": models["resnet"], "pooling": "mean", "layers": [1]})
    with pytest.raises(ConfigError, match=r"layers \[4\] out of range"):
        make_encoder("hf-image", {"model_path": models["clip-vision"], "pooling": "cls", "layers": [4]})


# ---------------------------------------------------------------- cache identity

@pytest.mark.parametrize("encoder, changes", [
    ("hf-audio", [{"layer_range": [1, 2]}, {"layer_range": [-2, -1]}, {"layers": [1]}]),
    ("hf-text", [{"layer_range": [2, 4]}, {"layer_range": [2, 4], "layer_reduce": "mean"}]),
    ("hf-image", [{"pooling": "projection"}, {"pooling": "mean", "layer_range": [-2, -1]},
                  {"pooling": "mean", "layers": [-2]}, {"pooling": "mean", "last_k": 2}]),
])
def test_every_new_option_is_part_of_the_cache_identity(encoder, changes):
    base = {"model_path": "/models/x"}
    keys = [spec_identity(EncoderSpec(encoder, base | change)).key for change in [{}, *changes]]
    assert len(set(keys)) == len(keys)
    assert spec_identity(EncoderSpec(encoder, base | changes[0])).config == base | changes[0]


# ---------------------------------------------------------------- the recipe

def test_the_recipe_runs_on_tiny_models_of_the_same_classes(models):
    """Each entry of the recipe, with its model_path pointed at a tiny model of the checkpoint's class:
    HubertModel, CLIPModel, BertModel (the Chinese MacBERT and RoBERTa-wwm checkpoints are BertModels)."""
    raw = yaml.safe_load(RECIPE.read_text())
    encode = build(SECTIONS["encode"], raw["encode"], "encode")   # valid params, as `mer` loads them
    train = build(SECTIONS["train"], raw["train"], "train")
    assert set(train.features.values()) == set(encode.features)
    tiny = {"hf-audio": models["hubert"], "hf-image": models["clip"], "hf-text": models["bert"]}
    inputs = {"audio": noise(0.8), "visual": faces(2, size=40), "text": SUBTITLES[0]}
    for name, spec in encode.features.items():
        assert spec.options["model_path"].startswith("/path/to/"), name   # a placeholder to replace
        enc = make_encoder(spec.encoder, spec.options | {"model_path": tiny[spec.encoder]})
        assert train.features[enc.modality] == name
        (vec,) = enc.encode([inputs[enc.modality]])
        assert vec is not None and vec.shape == (enc.probe_dim(),) and np.isfinite(vec).all()
