"""Zarr part stores: commit by index file, interrupted parts dropped, content-addressed features."""

import numpy as np
import pandas as pd

from pipeline.store.features import FeatureStore, Identity
from pipeline.store.media import MediaItem, MediaStore


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
    np.testing.assert_allclose(loaded.audio, items[2].audio, atol=1 / 32768)
    np.testing.assert_array_equal(loaded.faces, items[2].faces)
    assert pd.isna(index.loc["b", "text_key"]) and isinstance(index.loc["a", "text_key"], str)
    assert index.loc["a", "faces_key"] != index.loc["c", "faces_key"]


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
