import warnings
from collections import Counter

import cv2
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from pipeline.config import ConfigError, CorruptConfig
from pipeline.corrupt import (
    NOISE_SOURCES,
    PEAK,
    BabbleSource,
    CorruptedView,
    FolderSource,
    PinkSource,
    WhiteSource,
    blur_frames,
    build_noise,
    clip_rng,
    corrupt_audio,
    corrupt_clip,
    draw_params,
    make_source,
    measure_snr_db,
    mix_at_snr,
    rms,
)
from pipeline.media.decode import SAMPLE_RATE as SR
from pipeline.registry import Unavailable


def speech_like(seconds=2.0, amplitude=0.1, seed=0):
    """Amplitude-modulated harmonics plus a little noise: speech-ish level fluctuations."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = envelope * voiced + 0.05 * rng.standard_normal(t.size)
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def textured_frames(t=2, h=64, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def laplacian_var(frames):
    return np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for f in frames])


def residual_snr(speech, mix, rescale):
    clean = rescale * speech.astype(np.float64)
    return measure_snr_db(clean, mix - clean)


# ---------------------------------------------------------------- SNR and mixing


@pytest.mark.parametrize("snr", [5, 6, 7.5, 10, 0, 20])
def test_measured_snr_matches_target(snr):
    speech = speech_like()
    mix, info = corrupt_audio(speech, PinkSource(), snr, np.random.default_rng(1))
    assert info["rescale"] == 1.0
    assert abs(residual_snr(speech, mix, info["rescale"]) - snr) < 0.1
    assert abs(info["measured_snr_db"] - snr) < 0.1
    assert mix.dtype == np.float32 and mix.shape == speech.shape


@pytest.mark.parametrize("snr", [5, 10])
def test_anti_clipping_rescale_keeps_snr(snr):
    speech = speech_like(amplitude=0.99)
    noise = np.random.default_rng(2).standard_normal(speech.size)
    mix, gain, rescale = mix_at_snr(speech, noise, snr)
    assert rescale < 1.0  # the guard did fire
    assert np.max(np.abs(mix)) <= PEAK
    assert np.max(np.abs(mix)) == pytest.approx(PEAK, rel=1e-6)
    assert abs(residual_snr(speech, mix, rescale) - snr) < 0.1


def test_mix_rejects_silent_noise():
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.ones(10, np.float32), np.zeros(10, np.float32), 5)


# ---------------------------------------------------------------- noise building


def fixed_pool(*lengths):
    """pick() over recordings whose samples are their global positions, so crops can be checked."""
    recordings = [(f"r{i}", np.arange(n, dtype=np.float32) + 1000 * i) for i, n in enumerate(lengths)]
    return lambda rng: recordings[rng.integers(len(recordings))]


def test_noise_is_strictly_longer_before_crop():
    # 100-sample recordings and length 200: two (exactly 200) are not enough, a third is needed.
    noise, names, offset = build_noise(200, fixed_pool(100), np.random.default_rng(0))
    assert len(names) == 3 and 0 <= offset <= 100 and len(noise) == 200
    expected = np.concatenate([np.arange(100, dtype=np.float32)] * 3)[offset : offset + 200]
    np.testing.assert_array_equal(noise, expected)


def test_clip_shorter_than_one_recording():
    noise, names, offset = build_noise(30, fixed_pool(1000), np.random.default_rng(0))
    assert names == ["r0"] and 0 <= offset <= 970
    np.testing.assert_array_equal(noise, np.arange(offset, offset + 30, dtype=np.float32))


def test_clip_longer_than_whole_pool_reuses_recordings():
    noise, names, offset = build_noise(1000, fixed_pool(100, 150), np.random.default_rng(0))
    assert len(noise) == 1000 and set(names) == {"r0", "r1"}
    lengths = sum(100 if n == "r0" else 150 for n in names)
    assert lengths > 1000 and lengths - (100 if names[-1] == "r0" else 150) <= 1000


def test_offset_covers_whole_range():
    offsets = {build_noise(95, fixed_pool(100), np.random.default_rng(s))[2] for s in range(300)}
    assert offsets == set(range(6))


def test_empty_recording_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        build_noise(10, lambda rng: ("void", np.zeros(0, np.float32)), np.random.default_rng(0))


# ---------------------------------------------------------------- sources


def babble_pool(n=8, seconds=1.0):
    clips = {f"s{i:02d}": speech_like(seconds + 0.1 * i, seed=i) for i in range(n)}
    loaded = []

    def load(sample_id):
        loaded.append(sample_id)
        return clips[sample_id]

    return BabbleSource(ids=tuple(clips), load=load), loaded


def test_babble_never_uses_the_clip_itself():
    source, loaded = babble_pool()
    spec = CorruptedView(seed=3)
    for sample_id in source.ids:
        loaded.clear()
        _, _, meta = corrupt_clip(sample_id, speech_like(5.0), None, spec, source)
        assert loaded and sample_id not in loaded
        assert all(sample_id not in name for name in meta["noise"])


def test_babble_mixes_three_to_five_other_clips():
    source, _ = babble_pool()
    counts = set()
    for s in range(50):
        name, wave = source.for_clip("s00").pick(np.random.default_rng(s))
        talkers = name.removeprefix("babble:").split("+")
        assert len(set(talkers)) == len(talkers) and "s00" not in talkers
        assert wave.dtype == np.float32 and rms(wave) == pytest.approx(1.0, rel=1e-5)
        counts.add(len(talkers))
    assert counts == {3, 4, 5}


def test_babble_is_deterministic_and_order_free():
    source, _ = babble_pool()
    shuffled = BabbleSource(ids=tuple(reversed(source.ids)), load=source.load)
    a = source.pick(np.random.default_rng(7))
    b = shuffled.pick(np.random.default_rng(7))
    assert a[0] == b[0] and a[1].tobytes() == b[1].tobytes()


def test_babble_needs_enough_clips():
    with pytest.raises(ValueError, match="more than 5"):
        BabbleSource(ids=("a", "b", "c", "d", "e"), load=lambda i: np.ones(10))


def test_pink_noise_slope_is_minus_10_db_per_decade():
    _, wave = PinkSource().pick(np.random.default_rng(0))
    freqs, power = welch(wave, fs=SR, nperseg=4096)
    band = (freqs >= 50) & (freqs <= 5000)
    slope = np.polyfit(np.log10(freqs[band]), 10 * np.log10(power[band]), 1)[0]
    assert -11 < slope < -9
    _, white = WhiteSource().pick(np.random.default_rng(0))
    freqs, power = welch(white, fs=SR, nperseg=4096)
    assert abs(np.polyfit(np.log10(freqs[band]), 10 * np.log10(power[band]), 1)[0]) < 1


def test_folder_source_reads_and_resamples(tmp_path):
    sr = 44_100
    t = np.arange(sr // 2) / sr
    tone = np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "b.wav", np.stack([0.5 * tone, 0.3 * tone], axis=1), sr)  # stereo, 44.1 kHz
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "a.flac", tone[:1000], sr)
    (tmp_path / "notes.txt").write_text("not audio")

    source = FolderSource(NOISE_SOURCES.config("folder", {"dir": str(tmp_path)})[1])
    assert source.files == ["b.wav", "sub/a.flac"]
    picks = dict(source.pick(np.random.default_rng(s)) for s in range(20))
    assert set(picks) == {"b.wav", "sub/a.flac"}
    wave = picks["b.wav"]
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == round(len(t) * SR / sr)
    peak_hz = np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(np.abs(np.fft.rfft(wave)))]
    assert peak_hz == pytest.approx(440, abs=3)
    assert rms(wave) == pytest.approx(0.4 / np.sqrt(2), rel=0.02)  # channels averaged


def test_folder_source_errors(tmp_path):
    with pytest.raises(Unavailable, match="does not exist"):
        NOISE_SOURCES.make("folder", {"dir": str(tmp_path / "missing")})
    with pytest.raises(Unavailable, match="no .wav/.flac"):
        NOISE_SOURCES.make("folder", {"dir": str(tmp_path)})
    with pytest.raises(Unavailable, match=r"needs corrupt.noise_options: \{dir: FOLDER\}"):
        NOISE_SOURCES.make("folder")


def test_make_source(tmp_path):
    sf.write(tmp_path / "n.wav", np.ones(100) * 0.1, SR)
    folder = CorruptConfig(noise_source="folder", noise_options={"dir": str(tmp_path)})
    assert isinstance(make_source(CorruptedView(folder)), FolderSource)
    assert isinstance(make_source(CorruptedView(CorruptConfig(noise_source="pink"))), PinkSource)
    assert make_source(CorruptedView(folder, blur=2, noise=False)) is None
    babble = make_source(CorruptedView(CorruptConfig(noise_source="babble")), "abcdef", lambda i: np.ones(5))
    assert isinstance(babble, BabbleSource)
    with pytest.raises(ValueError, match="loader"):
        make_source(CorruptedView())
    with pytest.raises(ConfigError, match="corrupt.noise_source: unknown noise source 'music'; known: babble, folder"):
        make_source(CorruptedView(CorruptConfig(noise_source="music")))


# ---------------------------------------------------------------- blur


@pytest.mark.parametrize("h, w", [(64, 48), (37, 53), (112, 112), (21, 15)])
@pytest.mark.parametrize("r", [1, 2, 4])
def test_blur_keeps_exact_size(h, w, r):
    frames = textured_frames(h=h, w=w)
    out = blur_frames(frames, r)
    assert out.shape == frames.shape and out.dtype == np.uint8


def test_blur_r1_is_an_identical_copy():
    frames = textured_frames()
    out = blur_frames(frames, 1)
    assert out is not frames and np.array_equal(out, frames)


@pytest.mark.parametrize("h, w", [(64, 48), (37, 53)])
def test_stronger_blur_removes_more_high_frequencies(h, w):
    frames = textured_frames(h=h, w=w)
    sharp, r2, r4 = (laplacian_var(blur_frames(frames, r)) for r in (1, 2, 4))
    assert r4 < 0.5 * r2 < 0.5 * sharp


def test_blur_rejects_bad_factor():
    with pytest.raises(ValueError):
        blur_frames(textured_frames(), 3)


# ---------------------------------------------------------------- clip entry point


def test_corrupt_clip_is_deterministic():
    speech, frames = speech_like(), textured_frames(h=37, w=53)
    spec = CorruptedView(CorruptConfig(blur=(2, 4)), seed=11)

    def run(spec, sample_id="sample_00000001"):
        source, _ = babble_pool()  # a fresh pool object: only its contents may matter
        return corrupt_clip(sample_id, speech, frames, spec, source)

    a, b = run(spec), run(spec)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    for other in (run(CorruptedView(CorruptConfig(blur=(2, 4)), seed=12)), run(spec, "sample_00000002")):
        assert other[0].tobytes() != a[0].tobytes()
        assert other[2]["noise"] != a[2]["noise"] or other[2]["noise_offset"] != a[2]["noise_offset"]


def test_clip_rng_depends_only_on_seed_and_id():
    assert clip_rng(0, "x").integers(1 << 62) == clip_rng(0, "x").integers(1 << 62)
    assert clip_rng(0, "x").integers(1 << 62) != clip_rng(1, "x").integers(1 << 62)
    assert clip_rng(0, "x").integers(1 << 62) != clip_rng(0, "y").integers(1 << 62)


def test_corrupt_clip_meta_records_everything():
    speech = speech_like()
    spec = CorruptedView(CorruptConfig(noise_source="white"))
    audio, frames, meta = corrupt_clip("sample_1", speech, textured_frames(), spec, WhiteSource())
    drawn = draw_params(spec, "sample_1")
    assert (meta["snr_db"], meta["blur"]) == (drawn["snr_db"], drawn["blur"])
    for key in ("noise", "noise_offset", "noise_gain", "rescale", "measured_snr_db"):
        assert key in meta
    assert abs(meta["measured_snr_db"] - meta["snr_db"]) < 0.1


def test_silent_clip_is_left_alone():
    silent = np.zeros(SR, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio, _, meta = corrupt_clip("quiet", silent, None, CorruptedView(), WhiteSource())
    assert np.array_equal(audio, silent) and audio is not silent
    assert meta["skipped"] == "silent audio" and "noise" not in meta


def test_short_clip():
    speech = speech_like(seconds=0.01)  # 160 samples, far shorter than any recording
    audio, _, meta = corrupt_clip("short", speech, None, CorruptedView(), PinkSource())
    assert audio.shape == speech.shape and meta["noise"] == ["pink"]
    assert abs(meta["measured_snr_db"] - meta["snr_db"]) < 0.1


def test_only_existing_modalities_are_corrupted():
    spec = CorruptedView(CorruptConfig(blur=(4,)))
    audio, frames, meta = corrupt_clip("v", None, textured_frames(), spec, WhiteSource())
    assert audio is None and frames.shape == textured_frames().shape and "noise" not in meta
    audio, frames, meta = corrupt_clip("v", speech_like(), None, spec, WhiteSource())
    assert frames is None and audio is not None and "noise" in meta
    # A clip's blur draw does not depend on whether it has audio.
    assert meta["blur"] == draw_params(spec, "v")["blur"]


def test_draw_params_cover_all_values_uniformly():
    spec = CorruptedView()
    draws = [draw_params(spec, f"sample_{i:08d}") for i in range(6000)]
    snrs = Counter(d["snr_db"] for d in draws)
    blurs = Counter(d["blur"] for d in draws)
    assert set(snrs) == set(range(5, 11)) and set(blurs) == {1, 2, 4}
    assert all(abs(c - 1000) < 150 for c in snrs.values())
    assert all(abs(c - 2000) < 200 for c in blurs.values())
    assert all(isinstance(d["snr_db"], int) and isinstance(d["blur"], int) for d in draws[:10])


def test_views_fix_one_draw_and_key_only_what_shapes_them():
    cfg = CorruptConfig(robustness_snr_db=(0.0,))
    assert {draw_params(CorruptedView(cfg, snr=0.0, blur=1), f"c{i}")["snr_db"] for i in range(20)} == {0.0}
    assert {draw_params(CorruptedView(cfg, blur=4, noise=False), f"c{i}")["snr_db"] for i in range(20)} == {None}
    # another view's params (a robustness SNR) leave the noisy view's key, and so its items, alone
    white = CorruptedView(CorruptConfig(noise_source="white"))
    assert CorruptedView(cfg).key() == CorruptedView(CorruptConfig()).key() != white.key()
