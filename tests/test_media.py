"""pipeline.media: single-pass decoding and face extraction, on clips written by tests/media_fixtures.py."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import skimage.data
from media_fixtures import TONE_AMPLITUDE, TONE_HZ, truncate, write_clip

from pipeline.media.decode import MediaError, decode_clip, read_audio_file, read_image
from pipeline.media.faces import (
    ARCFACE_TEMPLATE,
    DETECTORS,
    TEMPLATE_4,
    TRACK_PATIENCE,
    Face,
    choose_face,
    extract_faces,
    make_detector,
)

SECONDS, FPS, SIZE = 2.0, 15, 160
SR = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Each clip written once per module (x264 encoding dominates the test time)."""
    root = tmp_path_factory.mktemp("clips")
    specs = {
        "clip.mp4": {}, "vfr.mp4": {"vfr": True}, "noface.mp4": {"face": False},
        "two.mp4": {"size": (400, 200), "two_faces": True, "with_audio": False},
        "audio.mp4": {"with_video": False}, "audio.m4a": {"with_video": False},
        "audio.wav": {"with_video": False}, "video.mp4": {"with_audio": False},
        "index_last.mp4": {"faststart": False},
    }
    return {name: write_clip(root / name, SECONDS, FPS, spec.pop("size", SIZE), **spec)
            for name, spec in specs.items()}


@pytest.fixture(scope="module")
def haar():
    return make_detector("haar")


def _within(seconds: float, fn, *args, **kwargs):
    """fn's result, or fail if it runs longer than `seconds` (a hang must not stall the suite)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except Exception as e:  # re-raised in the test thread
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not finish within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


def _assert_tone(audio: np.ndarray, rate: int = SR) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SECONDS * rate) <= 0.03 * SECONDS * rate
    assert np.abs(audio).max() <= 1.0
    # Identical stereo channels downmix to the same tone, not +3 dB louder.
    assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(TONE_AMPLITUDE / np.sqrt(2), rel=0.1)
    assert _dominant_hz(audio, rate) == pytest.approx(TONE_HZ, abs=2)


# --- decoding ---------------------------------------------------------------------------------------

def test_decode_normal_clip(clips):
    clip = decode_clip(clips["clip.mp4"], fps=FPS, max_frames=100)
    assert clip.frames.shape == (SECONDS * FPS, SIZE, SIZE, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(clip.frame_times, np.arange(SECONDS * FPS) / FPS, atol=2e-3)
    _assert_tone(clip.audio)
    assert clip.sample_rate == SR
    assert clip.duration == pytest.approx(SECONDS, abs=0.05)
    assert clip.warnings == []


def test_decode_samples_at_lower_fps(clips):
    clip = decode_clip(clips["clip.mp4"], fps=5, max_frames=100)
    np.testing.assert_allclose(clip.frame_times, np.arange(10) / 5, atol=2e-3)


def test_max_frames_cap_spans_the_clip(clips):
    clip = decode_clip(clips["clip.mp4"], fps=FPS, max_frames=4)
    assert len(clip.frames) == 4
    # Interval stretched to duration / max_frames = 0.5 s, so the clip is covered, not just its start.
    np.testing.assert_allclose(clip.frame_times, [0.0, 0.5, 1.0, 1.5], atol=1 / FPS)
    video_only = decode_clip(clips["video.mp4"], fps=FPS, max_frames=4)
    assert video_only.duration == pytest.approx(SECONDS, abs=0.05) and video_only.warnings == []


def test_variable_frame_rate_sampling(clips):
    every = decode_clip(clips["vfr.mp4"], fps=1000, max_frames=1000).frame_times
    assert len(set(np.round(np.diff(every), 3))) > 1  # the fixture really is VFR
    clip = decode_clip(clips["vfr.mp4"], fps=5, max_frames=100)
    assert "variable frame rate" in clip.warnings
    target = 0.0
    for t in clip.frame_times:
        # Each kept frame is the first one at or after its grid target.
        assert t == every[np.argmax(every >= target - 1e-3)]
        target = 0.2 * (np.floor((t + 1e-3) / 0.2) + 1)
    assert "variable frame rate" not in decode_clip(clips["clip.mp4"], fps=5, max_frames=100).warnings


@pytest.mark.parametrize("name", ["audio.mp4", "audio.m4a", "audio.wav"])
def test_audio_only(clips, name):
    clip = decode_clip(clips[name], fps=FPS, max_frames=32)
    assert clip.frames is None and clip.frame_times is None
    _assert_tone(clip.audio)
    _assert_tone(read_audio_file(clips[name]))
    _assert_tone(read_audio_file(clips[name], sample_rate=8000), rate=8000)


def test_video_only(clips):
    clip = decode_clip(clips["video.mp4"], fps=FPS, max_frames=32)
    assert clip.audio is None
    assert clip.frames.shape == (SECONDS * FPS, SIZE, SIZE, 3)
    with pytest.raises(MediaError) as error:
        read_audio_file(clips["video.mp4"])
    assert error.value.step == "audio"


def test_truncated_clip_decodes_what_is_there(clips, tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes(clips["clip.mp4"].read_bytes())
    clip = _within(20, decode_clip, truncate(path, 0.5), fps=FPS, max_frames=100)
    assert 0 < len(clip.frames) < SECONDS * FPS
    assert any(w.startswith("truncated") for w in clip.warnings)
    assert clip.duration < SECONDS


@pytest.mark.parametrize("name, fraction", [("index_last.mp4", 0.5), ("clip.mp4", 0.02)])
def test_truncated_beyond_use_is_an_open_error(clips, tmp_path, name, fraction):
    # Without its index (written last by default) or past its header, an MP4 cannot be opened at all.
    path = tmp_path / name
    path.write_bytes(clips[name].read_bytes())
    with pytest.raises(MediaError) as error:
        _within(20, decode_clip, truncate(path, fraction), fps=FPS, max_frames=32)
    assert error.value.step == "open"


def test_corrupt_bytes_are_skipped(clips, tmp_path):
    data = bytearray(clips["clip.mp4"].read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(len(data) // 4, len(data), 200):
        data[i] ^= 0xFF
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    try:
        clip = _within(20, decode_clip, path, fps=FPS, max_frames=100)
    except MediaError as error:  # acceptable, as long as it is a clean error
        assert error.step in {"open", "decode"}
    else:
        assert clip.frames is not None or clip.audio is not None


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 50])
def test_not_media_is_an_open_error(tmp_path, content):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as error:
        decode_clip(path, fps=FPS, max_frames=32)
    assert error.value.step == "open" and str(path) in str(error.value)


def test_no_audio_or_video_stream(tmp_path):
    path = tmp_path / "subtitles.srt"  # FFmpeg opens this as a subtitle-only container
    path.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    with pytest.raises(MediaError) as error:
        decode_clip(path, fps=FPS, max_frames=32)
    assert error.value.step == "open"


def test_missing_file_and_bad_arguments(tmp_path, clips):
    with pytest.raises(MediaError):
        decode_clip(tmp_path / "absent.mp4", fps=FPS, max_frames=32)
    with pytest.raises(ValueError):
        decode_clip(clips["clip.mp4"], fps=0, max_frames=32)


def test_read_image(tmp_path):
    rgb = skimage.data.astronaut()
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(path), rgb[None])
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(MediaError):
        read_image(tmp_path / "bad.png")


# --- faces ------------------------------------------------------------------------------------------

def test_haar_finds_the_astronaut(clips, haar):
    frames = decode_clip(clips["clip.mp4"], fps=FPS, max_frames=100).frames
    track = extract_faces(frames, haar)
    assert track.crops.shape == (len(frames), 112, 112, 3) and track.crops.dtype == np.uint8
    assert track.found.mean() >= 0.8
    assert track.crops[track.found].mean() > 50  # real pixels, not the zero fill
    boxes = track.boxes[track.found]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all()


def test_no_face_gives_empty_track(clips, haar):
    frames = decode_clip(clips["noface.mp4"], fps=FPS, max_frames=100).frames
    track = extract_faces(frames, haar, size=64)
    assert track.crops.shape == (len(frames), 64, 64, 3)
    assert not track.found.any() and not track.crops.any() and np.isnan(track.boxes).all()


def test_two_faces_track_stays_on_one_face(clips, haar):
    frames = decode_clip(clips["two.mp4"], fps=FPS, max_frames=100).frames
    # The left face starts larger and ends smaller: a per-frame "largest face" rule would switch.
    last = sorted(haar.detect(frames[-1]), key=lambda f: f.box[0])
    assert len(last) == 2 and _area(last[1]) > _area(last[0])
    track = extract_faces(frames, haar)
    assert track.found.mean() >= 0.8
    centres = (track.boxes[track.found, 0] + track.boxes[track.found, 2]) / 2
    assert (centres < frames.shape[2] / 2).all()


def _area(face: Face) -> float:
    return (face.box[2] - face.box[0]) * (face.box[3] - face.box[1])


class _Scripted:
    """A detector returning prepared faces frame by frame."""

    name = "scripted"

    def __init__(self, per_frame):
        self.per_frame = iter(per_frame)

    def detect(self, rgb):
        return next(self.per_frame)


def test_track_holds_through_short_misses_then_falls_back():
    left, right = Face((30, 10, 70, 50), 1.0), Face((75, 15, 105, 45), 1.0)  # left: larger, central
    big_right = Face((72, 10, 108, 50), 1.0)
    short_gap = TRACK_PATIENCE
    script = [[left, right]] + [[big_right]] * short_gap + [[left, big_right]] + [[big_right]] * (short_gap + 1)
    track = extract_faces(np.zeros((len(script), 64, 112, 3), np.uint8), _Scripted(script), size=32)
    held = [True] + [False] * short_gap + [True] + [False] * short_gap + [True]
    np.testing.assert_array_equal(track.found, held)
    assert tuple(track.boxes[0 + short_gap + 1]) == left.box
    assert tuple(track.boxes[-1]) == big_right.box  # after a longer gap, the remaining face takes over


def test_first_choice_prefers_large_and_central():
    small_centre, large_edge = Face((45, 45, 55, 55), 1.0), Face((0, 0, 40, 40), 1.0)
    large_centre = Face((30, 30, 70, 70), 1.0)
    assert choose_face([small_centre, large_centre, large_edge], None, (100, 100, 3)) is large_centre
    weak_large_centre = Face((30, 30, 70, 70), 0.2)
    assert choose_face([small_centre, weak_large_centre], None, (100, 100, 3)) is small_centre
    negative = [Face(f.box, -1.0) for f in (small_centre, large_centre)]
    assert choose_face(negative, None, (100, 100, 3)) is negative[1]
    assert choose_face([], None, (100, 100, 3)) is None


def test_landmarks_align_to_the_arcface_template():
    rgb = skimage.data.astronaut()[:112, :112].copy()
    face = Face((0, 0, 112, 112), 0.9, ARCFACE_TEMPLATE.copy())
    crop = extract_faces(rgb[None], _Scripted([[face]]), size=112).crops[0]
    np.testing.assert_allclose(crop.astype(float), rgb.astype(float), atol=2)
    # Landmarks at twice the scale map back onto the same template.
    big = cv2.resize(rgb, (224, 224))
    crop = extract_faces(big[None], _Scripted([[Face((0, 0, 224, 224), 0.9, ARCFACE_TEMPLATE * 2)]])).crops[0]
    assert np.abs(crop.astype(float) - rgb.astype(float)).mean() < 8


def test_haar_downscales_large_frames_and_scales_boxes_back(clips, haar):
    rgb = decode_clip(clips["clip.mp4"], fps=FPS, max_frames=1).frames[0]
    (small,) = haar.detect(rgb)
    (large,) = haar.detect(cv2.resize(rgb, (5 * SIZE, 5 * SIZE)))  # detected at 384 px, boxes in 800 px
    np.testing.assert_allclose(large.box, 5 * np.array(small.box), rtol=0.1)
    assert small.score > 0


def test_weak_false_positive_does_not_start_the_track():
    rgb = skimage.data.astronaut()
    haar = make_detector("haar", min_face=0.15)  # searched at 320 px, where the cascade also fires on the suit
    assert len(haar.detect(rgb)) == 2  # her face, and a larger, weak hit on the suit
    box = extract_faces(rgb[None], haar).boxes[0]
    assert 150 < (box[0] + box[2]) / 2 < 300 and (box[1] + box[3]) / 2 < 200  # her face


def test_extract_faces_on_no_frames(haar):
    track = extract_faces(np.zeros((0, 32, 32, 3), np.uint8), haar)
    assert track.crops.shape == (0, 112, 112, 3) and track.found.shape == (0,) and track.boxes.shape == (0, 4)


def test_haar_min_face_skips_smaller_faces(clips):
    rgb = decode_clip(clips["clip.mp4"], fps=FPS, max_frames=1).frames[0]  # face ~0.55 of the frame side
    assert len(make_detector("haar", min_face=0.4).detect(rgb)) == 1
    assert make_detector("haar", min_face=0.8).detect(rgb) == []
    with pytest.raises(ValueError, match="min_face"):
        make_detector("haar", min_face=0)


def test_blazeface_finds_a_real_face_with_landmarks_that_align_it():
    rgb = skimage.data.astronaut()  # a real photograph; her face spans about x 175-280, y 70-175
    (face,) = make_detector("blazeface").detect(rgb)
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < 200 and 250 < x1 < 300 and 50 < y0 < 100 and 150 < y1 < 200 and face.score > 0.8
    left_eye, right_eye, nose, mouth = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and max(left_eye[1], right_eye[1]) < nose[1] < mouth[1]
    # aligned: the landmarks land on the template's eyes, nose and mouth centre
    crop = extract_faces(rgb[None], make_detector("blazeface"), size=112).crops[0]
    (aligned,) = make_detector("blazeface", retry_pad=0.0).detect(cv2.resize(crop, (448, 448)))
    np.testing.assert_allclose(aligned.landmarks / 4, TEMPLATE_4, atol=6)


def test_blazeface_finds_faces_that_fill_the_frame_by_padding_it():
    crop = cv2.resize(skimage.data.astronaut()[75:175, 175:275], (48, 48))  # a FER-2013-sized tight crop
    assert make_detector("blazeface", retry_pad=0.0).detect(crop) == []  # too large for the full-range model
    (face,) = make_detector("blazeface").detect(crop)
    assert face.landmarks[0][0] < 24 < face.landmarks[1][0]


def test_whole_frame_and_auto_take_small_stills_as_faces():
    ys, xs = np.mgrid[0:48, 0:40]
    still = np.stack([ys * 5, xs * 6, 255 - ys * 5], -1).astype(np.uint8)  # smooth, and no face in it
    (face,) = make_detector("whole_frame").detect(still)
    track = extract_faces(still[None], make_detector("whole_frame"), size=96)
    assert track.found[0] and face.box == (0, 0, 40, 48)
    # the longer side fills the crop, the shorter one is centred (edges blend with the black border)
    np.testing.assert_allclose(track.crops[0][1:-1, 10:86].astype(float), cv2.resize(still, (80, 96))[1:-1, 2:78], atol=12)
    assert track.crops[0][:, :7].max() == 0 and track.crops[0][:, 89:].max() == 0
    assert make_detector("auto").detect(still)[0].margin == 1.0
    assert make_detector("auto", crop_side=32).detect(still) == []  # larger than a crop: BlazeFace's answer
    photo = skimage.data.astronaut()
    assert make_detector("auto").detect(photo)[0].landmarks is not None  # 512 px: BlazeFace
    assert make_detector("blazeface").detect(still) == []


def test_detector_registry(tmp_path):
    with pytest.raises(ValueError, match=r"unknown face detector 'nope'; known: auto, blazeface, haar"):
        make_detector("nope")
    with pytest.raises(ValueError, match="unknown key"):
        make_detector("blazeface", min_face=0.1)
    with pytest.raises(ValueError, match="model"):
        make_detector("blazeface", model="long_range")
    assert DETECTORS.available("blazeface")[0]
    assert DETECTORS.available("haar")[0]
    ok, why = DETECTORS.available("insightface", {"model_dir": str(tmp_path)})
    assert not ok
    assert "insightface" in why or str(tmp_path) in why
