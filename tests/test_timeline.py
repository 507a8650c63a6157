"""`mer predict --segments` on long recordings the tests build: generated talking-face clips joined with
silences, through segmentation, one streaming pass, the checkpoint's extraction and encoders, and the
timeline's files."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from checkpoint_fixtures import train_checkpoint
from PIL import Image
from recording_fixtures import join_clips, read_clip
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import DemoConfig, PrepareConfig
from pipeline.datasets.prepare import prepare
from pipeline.demo import generate_corpus
from pipeline.errors import InputError
from pipeline.predict import predict_clips
from pipeline.recordings import (
    Segment,
    SegmentConfig,
    find_segments,
    read_subtitles,
    segment_media,
    shape,
    speech_spans,
)
from pipeline.timeline import predict_recording, subtitles, write_timeline

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PARAMS = {
    "extract": {"workers": 1},
    "encode": {"features": {"egemaps": {"encoder": "egemaps", "options": {}}, "fer": {"encoder": "fer", "options": {}}}},
    "train": {"features": {"audio": "egemaps", "visual": "fer"}, "folds": 2, "fusion": {"epochs": 3, "hidden": [16, 8]},
              "feature_norm": "standard", "ablation": [], "seeds": [0]},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint trained on 12 demo clips, and 3 held-out demo clips joined into one recording."""
    work = tmp_path_factory.mktemp("timeline")
    corpus = work / "demo"
    generate_corpus(corpus, DemoConfig(n_train=12, n_test1=3, n_test2=0, n_test3_labelled=0, n_unlabelled=0),
                    progress=False, workers=1)
    manifest = prepare(PrepareConfig(root=str(corpus)), work / "manifest.parquet", work / "rejects.csv").manifest
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    train_checkpoint(work, corpus, params)
    clips = [corpus / p for p in manifest.loc[manifest["split"] == "test1", "path"]]
    spans = join_clips(clips, work / "recording.mp4", gap=1.0)
    return {"work": work, "checkpoint": work / "checkpoint", "clips": clips, "spans": spans,
            "recording": work / "recording.mp4", "params": params}


def test_vad_segments_start_and_end_where_each_clip_speaks(trained):
    found = find_segments(trained["recording"], "vad", SegmentConfig())
    assert len(found) == len(trained["spans"])
    for segment, (start, _), clip in zip(found, trained["spans"], trained["clips"]):
        # where speech starts and ends inside the clip, found in that clip alone: its own silence is no error
        alone = speech_spans(clip)
        speech = (start + alone[0][0], start + alone[-1][1])
        assert abs(segment.start - speech[0]) < 0.5 and abs(segment.end - speech[1]) < 0.5, (segment, speech)


def test_spans_are_merged_across_pauses_and_cut_to_length():
    cfg = SegmentConfig(min_seconds=1.0, max_seconds=4.0, merge_gap=0.3)
    spans = [(0.0, 1.5), (1.7, 2.5), (5.0, 5.3), (5.4, 6.0), (10.0, 19.0), (30.0, 30.2)]
    got = [(s.start, s.end) for s in shape(spans, cfg)]
    assert got[0] == (0.0, 2.5)                       # a 0.2 s pause is one utterance
    assert got[1] == (5.0, 6.0)                       # short spans joined up to min_seconds
    assert got[2:5] == [(10.0, 13.0), (13.0, 16.0), (16.0, 19.0)]   # 9 s cut into equal parts <= 4 s
    assert len(got) == 5                              # the isolated 0.2 s blip is dropped
    windows = [s.window for s in shape(spans, cfg)]   # an utterance is read with up to 1 s of the pauses around it
    assert windows[0] == (0.0, 3.5) and windows[1] == (4.0, 7.0)   # half of the 2.5 s pause before the second
    assert windows[2:5] == [(9.0, 13.0), (13.0, 16.0), (16.0, 20.0)]   # a cut inside speech adds nothing


def test_fixed_windows_and_user_files(trained, tmp_path):
    fixed = find_segments(trained["recording"], "fixed:4", SegmentConfig())
    total = trained["spans"][-1][1] + 1.0   # the last clip, then a second of silence
    assert [s.start for s in fixed] == [0.0, 4.0, 8.0] and fixed[-1].end == pytest.approx(total, abs=0.1)
    csv = tmp_path / "mine.csv"
    csv.write_text("start,end,text\n1.0,4.0,hello there\n5.0,8.0,\n")
    assert find_segments(trained["recording"], str(csv), SegmentConfig()) == [Segment(1.0, 4.0, "hello there"),
                                                                             Segment(5.0, 8.0)]
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:04,000\n<i>I am</i> fine\n\n2\n00:00:05,500 --> 00:00:08,000\nreally\n")
    assert read_subtitles(srt) == [Segment(1.0, 4.0, "I am fine"), Segment(5.5, 8.0, "really")]
    vtt = tmp_path / "subs.vtt"
    vtt.write_text("WEBVTT\n\n00:01.000 --> 00:04.000\nI am fine\n")
    assert read_subtitles(vtt) == [Segment(1.0, 4.0, "I am fine")]
    for bad, why in (("fixed:0", "positive number"), ("nothing.csv", "use vad, fixed:SECONDS")):
        with pytest.raises(InputError, match=why):
            find_segments(trained["recording"], bad, SegmentConfig())
    (tmp_path / "bad.csv").write_text("start,end\n3,2\n")
    with pytest.raises(InputError, match="line 2: need 0 <= start < end"):
        find_segments(trained["recording"], str(tmp_path / "bad.csv"), SegmentConfig())


def test_each_segment_gets_its_own_stretch_and_no_more(trained):
    """Memory holds one segment: its audio is its own length and its frames at most max_frames, however
    long the recording; short windows make many segments from one pass."""
    windows = find_segments(trained["recording"], "fixed:0.5", SegmentConfig())
    got = list(segment_media(trained["recording"], windows, fps=5.0, max_frames=3))
    assert [m.segment for m in got] == windows
    for media in got:
        span = media.segment.end - media.segment.start
        assert abs(len(media.audio) / 16000 - span) < 0.02
        assert 1 <= len(media.frames) <= 3
        assert np.all((media.times >= media.segment.start - 1e-6) & (media.times < media.segment.end))


def test_segments_predict_as_the_same_clips_alone(trained):
    spans = trained["spans"]
    csv = trained["work"] / "clips.csv"
    csv.write_text("start,end\n" + "".join(f"{a},{b}\n" for a, b in spans))
    timeline = predict_recording(trained["recording"], trained["checkpoint"], str(csv))
    alone = predict_clips(trained["clips"], trained["checkpoint"])
    assert (timeline["error"] == "").all() and list(timeline["start"]) == [a for a, _ in spans]
    probs = [c for c in timeline.columns if c.startswith("prob_")]
    # the joined recording was re-encoded (MPEG-4, AAC): close to the clips' own figures, not the same bytes
    np.testing.assert_allclose(timeline[probs].to_numpy(float), alone[probs].to_numpy(float), atol=0.15)
    assert (timeline["modalities"] == "audio,visual").all() and (timeline["face_found_rate"] > 0.9).all()
    assert list(timeline["face_track"]) == [1, 1, 1] and (timeline["face_choice"] == "the only face").all()


def test_a_stretch_without_media_is_recorded_and_the_rest_goes_on(trained, tmp_path):
    csv = tmp_path / "segments.csv"
    csv.write_text("start,end\n1.0,4.0\n40.0,44.0\n")    # the second lies past the recording's end
    timeline = predict_recording(trained["recording"], trained["checkpoint"], str(csv))
    assert timeline["error"].iloc[0] == "" and timeline["label"].iloc[0] in load_labels(trained)
    assert timeline["error"].iloc[1].startswith("no usable modality") and pd.isna(timeline["label"].iloc[1])
    assert "no decodable video frame" in timeline["warnings"].iloc[1]


def load_labels(trained) -> list[str]:
    return json.loads((trained["work"] / "cv.json").read_text())["labels"]


def test_cli_writes_the_timeline_files(trained, tmp_path):
    outs = [tmp_path / f"timeline.{s}" for s in ("csv", "json", "srt", "vtt", "html")]
    done = CliRunner().invoke(app, ["predict", str(trained["recording"]), "--checkpoint", str(trained["checkpoint"]),
                                    "--segments", "vad", *sum((["--timeline", str(o)] for o in outs), [])])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(outs[0])
    assert len(table) == len(trained["spans"]) and {"start", "end", "label", "valence", "transcript"} <= set(table)
    assert [r["start"] for r in json.loads(outs[1].read_text())] == list(table["start"])
    srt = outs[2].read_text()
    assert srt.startswith("1\n00:00:01,") and srt.count(" --> ") == len(table)
    assert outs[3].read_text().startswith("WEBVTT\n\n00:00:01.")
    page = outs[4].read_text()
    assert page.count('<img src="data:image/png;base64,') == 1 + len(table)   # the chart, a face per segment
    plotted = json.loads(html.unescape(re.search(r'data-plotted="([^"]*)"', page).group(1)))
    assert plotted[1]["ylabel"] == "valence" and plotted[0]["ylim"] == [0.0, 1.0]
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); apt-get install chromium")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,900",
                    outs[4].as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    colour = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert colour.mean() > 0.02, colour.mean()   # the stacked probabilities are drawn, not a blank page


def test_subtitle_cues_say_why_a_segment_has_no_label():
    frame = pd.DataFrame({"start": [0.0, 3600.5], "end": [2.25, 3602.0], "label": ["happy", None],
                          "prob_happy": [0.8, None], "prob_sad": [0.2, None], "valence": [0.5, None],
                          "error": ["", "no usable modality: silent audio"]})
    assert subtitles(frame) == ("1\n00:00:00,000 --> 00:00:02,250\nhappy 80%, valence +0.50\n\n"
                                "2\n01:00:00,500 --> 01:00:02,000\n(no prediction: no usable modality: silent audio)\n")


def test_an_unknown_timeline_suffix_is_refused(tmp_path):
    with pytest.raises(InputError, match="write .csv, .json, .srt, .vtt or .html"):
        write_timeline(pd.DataFrame(), tmp_path / "t.txt")


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """Two demo clips' frames and audio (talking faces at 15 fps)."""
    root = tmp_path_factory.mktemp("talking")
    generate_corpus(root, DemoConfig(n_train=2, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0),
                    progress=False, workers=1)
    return [read_clip(p) for p in sorted(root.rglob("*.mp4"))]


@pytest.mark.parametrize("speaker_left", [True, False])
def test_of_two_faces_in_frame_the_one_that_speaks_is_taken(talking, speaker_left):
    from pipeline.demo import face as demo_face
    from pipeline.media.faces import make_detector
    from pipeline.media.speakers import choose_speaker, link

    frames, audio, fps = talking[0]
    rng = np.random.default_rng(0)   # a listener: a demo face with head motion and a closed mouth
    quiet = demo_face.render(demo_face.speaker_look(rng), "neutral", 0.5, 0.0, np.zeros(len(frames)), 160, fps, rng)
    pairs = [(f, q) if speaker_left else (q, f) for f, q in zip(frames, quiet)]
    both = np.stack([np.concatenate(pair, axis=1) for pair in pairs])
    tracks = link([make_detector("blazeface").detect(f) for f in both])
    assert len(tracks) == 2
    choice = choose_speaker(tracks, both, np.arange(len(both)) / fps, audio / 32768.0, 0.0, 16000)
    assert choice.reason.startswith("speaking: mouth opens with the speech"), choice.reason
    x = np.mean([face.box[0] for face in tracks[choice.track].faces.values()])
    assert (x < 160) == speaker_left


def test_when_the_speaker_cannot_be_told_apart_the_largest_steadiest_face_is_taken_and_said(talking):
    from pipeline.media.faces import make_detector
    from pipeline.media.speakers import choose_speaker, link

    (a, audio, fps), (b, _, _) = talking
    small = [np.pad(f[40:120, 40:120], ((40, 40), (40, 40), (0, 0))) for f in b]   # the second face, smaller
    both = np.stack([np.concatenate(pair, axis=1) for pair in zip(a, small)])
    tracks = link([make_detector("blazeface").detect(f) for f in both])
    silence = np.zeros(len(audio), np.float32)   # nothing to match a mouth against
    choice = choose_speaker(tracks, both, np.arange(len(both)) / fps, silence, 0.0, 16000)
    assert choice.reason.startswith("largest and steadiest of 2 faces: the speaker could not be told apart")
    assert np.mean([f.box[0] for f in tracks[choice.track].faces.values()]) < 160


def test_a_corrupt_middle_is_recorded_on_its_segments_and_the_rest_is_predicted(trained, tmp_path):
    broken = tmp_path / "broken.mp4"
    data = bytearray(trained["recording"].read_bytes())
    middle = len(data) // 2
    data[middle:middle + 6000] = bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8))
    broken.write_bytes(bytes(data))
    timeline = predict_recording(broken, trained["checkpoint"], "fixed:1")
    assert len(timeline) >= 9 and (timeline["error"] == "").sum() >= len(timeline) - 3
    damaged = timeline[timeline["warnings"].str.contains("skipped|no decodable", regex=True)]
    assert len(damaged) >= 1, timeline[["start", "warnings"]]
    assert damaged["start"].between(1.0, len(timeline) - 2.0).all()   # only stretches in the middle


def test_a_recording_without_speech_says_to_use_fixed_windows(trained, tmp_path):
    silent = tmp_path / "silent.mp4"
    from recording_fixtures import _Writer

    with _Writer(silent) as writer:
        writer.pause(3.0, (160, 160, 3), 15.0)
    with pytest.raises(InputError, match="no speech found.*--segments fixed:SECONDS"):
        predict_recording(silent, trained["checkpoint"], "vad")
    timeline = predict_recording(silent, trained["checkpoint"], "fixed:1.5")
    assert len(timeline) == 2 and timeline["face_choice"].eq("no face").all()


def test_a_variable_frame_rate_is_recorded_on_its_segments(trained, tmp_path):
    from fractions import Fraction

    import av

    frames, _, _ = read_clip(trained["clips"][0])
    vfr = tmp_path / "vfr.mp4"
    with av.open(str(vfr), "w") as container:   # frames 120 ms and 40 ms apart in turn
        video = container.add_stream("mpeg4", rate=12)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames * 2):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = 80 * i + (40 if i % 2 else 0), Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    timeline = predict_recording(vfr, trained["checkpoint"], "fixed:1")
    assert timeline["warnings"].str.contains("variable frame rate").all(), timeline["warnings"]
    assert (timeline["modalities"] == "visual").all()   # no audio track: the faces alone


def test_a_resolution_change_is_recorded_on_the_segment_it_falls_in(trained, tmp_path):
    from fractions import Fraction

    import av
    import cv2

    frames, _, _ = read_clip(trained["clips"][0])   # 2 s at 15 fps, then the same frames at 1.5 times the size
    parts = [frames, [cv2.resize(f, (f.shape[1] * 3 // 2, f.shape[0] * 3 // 2)) for f in frames]]
    stream = tmp_path / "resized.ts"
    for n, images in enumerate(parts):   # MPEG-TS files joined byte for byte: one stream, a new size mid-way
        part = tmp_path / f"part{n}.ts"
        with av.open(str(part), "w", format="mpegts") as container:
            video = container.add_stream("mpeg4", rate=15)
            video.width, video.height, video.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
            video.codec_context.time_base = Fraction(1, 15)
            for i, image in enumerate(images):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = n * len(frames) + i, Fraction(1, 15)
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
        with stream.open("ab") as out:
            out.write(part.read_bytes())
    timeline = predict_recording(stream, trained["checkpoint"], "fixed:1.5")
    changed = timeline["warnings"].str.contains("resolution change")
    assert list(timeline.loc[changed, "start"]) == [1.5], timeline[["start", "warnings"]]   # 2.0 s falls in 1.5-3.0
    assert (timeline["error"] == "").all()


def test_a_file_longer_than_a_segment_is_a_recording_and_a_clip_stays_a_clip(trained):
    """`--segments auto` (the default): the 10 s recording is predicted per utterance, a 2 s clip whole."""
    args = ["--checkpoint", str(trained["checkpoint"])]
    long = CliRunner().invoke(app, ["predict", str(trained["recording"]), *args])
    assert long.exit_code == 0, long.output
    recording = json.loads(long.stdout[long.stdout.index("{"):])
    assert len(recording["segments"]) == len(trained["spans"])
    short = CliRunner().invoke(app, ["predict", str(trained["clips"][0]), *args])
    assert short.exit_code == 0, short.output
    rows = json.loads(short.stdout[short.stdout.index("["):])
    assert len(rows) == 1 and rows[0]["clip"] == str(trained["clips"][0]) and "segments" not in rows[0]
