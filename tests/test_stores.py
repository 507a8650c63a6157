"""Zarr part stores: commit by index file, interrupted parts dropped, content-addressed features."""

import numpy as np
import pandas as pd

from pipeline.store.features import FeatureStore, Identity
from pipeline.store.media import INDEX_COLUMNS, MediaItem, MediaStore, content_keys, to_int16
from pipeline.store.parts import PartStore


def item(sample_id: str, transcript: str = "hello", seconds: float = 0.5, frames: int = 3) -> MediaItem:
    rng = np.random.default_rng(abs(hash(sample_id)) % 2**32)
    found = np.array([True, False, True][:frames])
    return MediaItem(sample_id, "src", "prm", audio=rng.uniform(-0.5, 0.5, int(16000 * seconds)).astype(np.float32),
                     faces=rng.integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8), found=found,
                     frame_time=np.arange(frames, dtype=np.float32), boxes=np.zeros((frames, 4), np.float32),
                     transcript=transcript, transcript_source="given", meta={"no_face": False})


def test_items_round_trip_through_a_part(tmp_path):
    store = MediaStore(tmp_path / "media.zarr").create()
    items = [item("a"), item("b", transcript=""), item("c", frames=2)]
    store.write(items)
    index = store.index().set_index("sample_id", drop=False)
    loaded = store.load(index.loc["c"])
    np.testing.assert_array_equal(loaded.audio, to_int16(items[2].audio) / np.float32(32768))  # FLAC is lossless
    np.testing.assert_array_equal(loaded.faces, items[2].faces)
    assert pd.isna(index.loc["b", "text_key"]) and isinstance(index.loc["a", "text_key"], str)
    assert index.loc["a", "faces_key"] != index.loc["c", "faces_key"]


def face_item(sample_id: str, frames: int = 4) -> MediaItem:
    """Smooth crops, as faces are, so that the codec's loss is small but not nothing."""
    ramp = np.linspace(0, 255, 32)
    faces = np.array([np.stack([np.add.outer(ramp, ramp * (k + 1) / frames) / 2, np.add.outer(ramp, ramp)[::-1] / 2,
                                np.full((32, 32), 40.0 * k)], -1) for k in range(frames)]).round().astype(np.uint8)
    faces = faces.reshape(frames, 32, 32, 3)
    return MediaItem(sample_id, "src", "prm", faces=faces, found=np.arange(frames) % 3 != 1,
                     frame_time=np.arange(frames, dtype=np.float32), boxes=np.zeros((frames, 4), np.float32))


def test_face_crops_are_stored_as_images_lossless_at_quality_0_and_keyed_as_read(tmp_path):
    items = [face_item("a"), face_item("b", frames=0), face_item("c", frames=5)]
    stores = {q: MediaStore(tmp_path / f"q{q}.zarr").create() for q in (0, 90)}
    for quality, store in stores.items():
        store.write(items, face_quality=quality)
    read = {q: {r.sample_id: (r, s.load(r)) for r in s.index().itertuples()} for q, s in stores.items()}
    for item in items[::2]:
        row, lossless = read[0][item.sample_id]
        np.testing.assert_array_equal(lossless.faces, item.faces)
        assert row.faces_key == content_keys(item)["faces_key"]   # lossless: the key raw pixels had
        row, lossy = read[90][item.sample_id]
        assert lossy.faces.shape == item.faces.shape and np.abs(lossy.faces.astype(int) - item.faces).mean() < 3
        assert row.faces_key == content_keys(lossy)["faces_key"]  # the key of what an encoder will read
        assert not np.array_equal(lossy.faces, item.faces) and row.faces_key != read[0][item.sample_id][0].faces_key
    for quality in stores:   # an item with no frames keeps its empty crops of the store's size
        assert read[quality]["b"][1].faces.shape == (0, 32, 32, 3) and pd.isna(read[quality]["b"][0].faces_key)


def test_crops_read_back_and_written_again_keep_their_bytes(tmp_path):
    first = MediaStore(tmp_path / "first.zarr").create()
    first.write([item("a")], face_quality=75)   # noisy crops: a second JPEG pass would change them
    again = first.load(next(first.index().itertuples()))
    copy = MediaStore(tmp_path / "copy.zarr").create()
    copy.write([again], face_quality=75)   # as a corrupted view reuses the clean view's crops
    np.testing.assert_array_equal(copy.load(next(copy.index().itertuples())).faces, again.faces)
    assert copy.index()["faces_key"].tolist() == first.index()["faces_key"].tolist()


def test_the_store_names_the_pipelines_audio_rate():
    from pipeline.media.decode import SAMPLE_RATE
    from pipeline.store.media import AUDIO_RATE

    assert AUDIO_RATE == SAMPLE_RATE


def test_the_same_items_make_the_same_store_bytes(tmp_path):
    def files(root):
        MediaStore(root).create().write([face_item("a"), face_item("c", frames=5)], face_quality=90)
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert files(tmp_path / "one.zarr") == files(tmp_path / "two.zarr")


def test_a_store_of_int16_audio_and_raw_pixel_crops_written_before_still_reads(tmp_path):
    item = face_item("a")
    parts = PartStore(tmp_path / "old.zarr").create()
    row = {"sample_id": "a", "source_hash": "src", "params_hash": "prm", "audio_start": 0, "audio_len": 3,
           "frame_start": 0, "n_frames": len(item.faces), "n_faces": int(item.found.sum()), "transcript": None,
           "transcript_source": "missing", **content_keys(item), "meta": "{}"}
    arrays = {"audio": to_int16(np.full(3, 0.5, np.float32)), "faces": item.faces, "face_found": item.found,
              "frame_time": item.frame_time, "boxes": item.boxes}
    parts.write_part("old", arrays, pd.DataFrame([row], columns=INDEX_COLUMNS[:-3]), {})
    store = MediaStore(tmp_path / "old.zarr")
    store.write([face_item("b")], face_quality=90)   # a new part beside the old one
    loaded = {r.sample_id: store.load(r) for r in store.index().itertuples()}
    np.testing.assert_array_equal(loaded["a"].faces, item.faces)
    np.testing.assert_allclose(loaded["a"].audio, 0.5)
    assert loaded["b"].faces.shape == item.faces.shape


def test_a_part_without_its_index_is_not_in_the_store_and_is_removed(tmp_path):
    store = MediaStore(tmp_path / "media.zarr").create()
    store.write([item("a")])
    part = store.write([item("b")])
    (tmp_path / "media.zarr" / "index" / f"{part}.parquet").unlink()  # as if killed before the commit
    fresh = MediaStore(tmp_path / "media.zarr")
    assert list(fresh.index()["sample_id"]) == ["a"]
    assert fresh.parts.remove_uncommitted() == [part]
    assert not (tmp_path / "media.zarr" / "parts" / part).exists()


def test_features_are_found_by_content_in_any_view(tmp_path):
    ident = Identity("enc", "1", "text", {"layers": [-1]}, {"torch": "x"})
    store = FeatureStore(tmp_path / "f.zarr").create(ident, dim=4)
    keys = ident.cache_keys(pd.Series(["k1", "k2", "k3"]))
    store.write(list(keys), [np.ones(4), None, np.full(4, 2.0)], ["", "empty", ""], dim=4)
    view = pd.DataFrame({"text_key": ["k3", None, "k2", "k1", "k9"]})  # another view, other order
    X, present = store.load(view)
    assert present.tolist() == [True, False, False, True, False]
    np.testing.assert_array_equal(X[0], 2.0)
    np.testing.assert_array_equal(X[3], 1.0)
    assert np.isnan(X[1]).all()
    other = Identity("enc", "1", "text", {"layers": [-2]}, {"torch": "x"})
    assert set(other.cache_keys(pd.Series(["k1"]))).isdisjoint(keys)  # a new layer is a new key
