"""Export to / import from the MER 2023 feature layout and HDF5: exact round trips, training lookup."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store.exchange import export_hdf5, export_npy, import_npy
from pipeline.store.features import FeatureStore


def write_folder(root, name: str, arrays: dict[str, np.ndarray]):
    folder = root / "features" / name
    folder.mkdir(parents=True)
    for sample, array in arrays.items():
        np.save(folder / f"{sample}.npy", array)
    return folder


@pytest.fixture
def utterance_files():
    rng = np.random.default_rng(0)
    return {f"sample_{i:05d}": rng.normal(size=24).astype(np.float32) for i in range(7)}


@pytest.fixture
def frame_files():
    rng = np.random.default_rng(1)
    return {f"sample_{i:05d}": rng.normal(size=(int(rng.integers(1, 9)), 16)).astype(np.float32)
            for i in range(5)}


def read_folder(folder) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted(folder.glob("*.npy"))}


def assert_same_files(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        assert got[name].tobytes() == array.tobytes(), name


def test_utterance_folder_round_trip_is_exact(tmp_path, utterance_files):
    folder = write_folder(tmp_path / "in", "chinese-hubert-large-UTT", utterance_files)
    summary = import_npy(folder, "audio", tmp_path / "hubert.zarr", items_per_part=3)
    assert summary == {"imported": 7, "missing": 0, "dim": 24, "store": str(tmp_path / "hubert.zarr")}
    out = export_npy(FeatureStore(tmp_path / "hubert.zarr"), tmp_path / "out")
    assert out == tmp_path / "out" / "features" / "hubert-UTT"
    assert_same_files(read_folder(out), utterance_files)


def test_frame_folder_round_trip_is_exact_and_utterance_is_the_frame_mean(tmp_path, frame_files):
    folder = write_folder(tmp_path / "in", "manet-FRA", frame_files)
    import_npy(folder, "visual", tmp_path / "manet.zarr", items_per_part=2)
    store = FeatureStore(tmp_path / "manet.zarr")
    frames = export_npy(store, tmp_path / "out", level="frame", feature_name="manet-FRA")
    assert_same_files(read_folder(frames), frame_files)
    utt = read_folder(export_npy(store, tmp_path / "out", level="utterance"))
    for name, matrix in frame_files.items():
        np.testing.assert_array_equal(utt[name], matrix.mean(0))


def test_imported_features_load_by_sample_id_for_training(tmp_path, utterance_files):
    files = dict(utterance_files)
    files["sample_bad"] = np.full(24, np.nan, np.float32)
    import_npy(write_folder(tmp_path, "f-UTT", files), "text", tmp_path / "f.zarr")
    store = FeatureStore(tmp_path / "f.zarr")
    assert store.identity().modality == "text"
    rows = pd.DataFrame({"sample_id": ["sample_00003", "sample_bad", "unknown", "sample_00000"]})
    X, present = store.load(rows)
    assert present.tolist() == [True, False, False, True]
    np.testing.assert_array_equal(X[0], files["sample_00003"])
    np.testing.assert_array_equal(X[3], files["sample_00000"])
    assert np.isnan(X[1]).all() and np.isnan(X[2]).all()  # missing, never zeros
    _, _, missing = store.matrix()
    assert list(missing.values()) == ["NaN or inf in the file"]


def test_hdf5_export_matches_the_store(tmp_path, frame_files):
    import_npy(write_folder(tmp_path, "x-FRA", frame_files | {"empty": np.zeros((0, 16), np.float32)}),
               "visual", tmp_path / "x.zarr")
    path = export_hdf5(FeatureStore(tmp_path / "x.zarr"), tmp_path / "x.h5")
    with h5py.File(path) as h5:
        names = [n.decode() for n in h5["names"][...]]
        assert names == sorted(frame_files)
        offsets = h5["frame_offsets"][...]
        for i, name in enumerate(names):
            np.testing.assert_array_equal(h5["frames"][offsets[i]:offsets[i + 1]], frame_files[name])
            np.testing.assert_array_equal(h5["utterance"][i], frame_files[name].mean(0))
        assert [n.decode() for n in h5["missing_names"][...]] == ["empty"]
        assert h5["missing_reasons"][0].decode() == "no frames"
        assert '"encoder": "imported"' in h5.attrs["identity"]


def test_import_rejects_mixed_dims_naming_the_file(tmp_path):
    folder = write_folder(tmp_path, "bad", {"a": np.zeros(4, np.float32), "b": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"b\.npy: shape \(5,\).*D = 4"):
        import_npy(folder, "audio", tmp_path / "s.zarr")
    with pytest.raises(FileNotFoundError, match="no .npy files"):
        import_npy(tmp_path / "features", "audio", tmp_path / "s.zarr")


def test_cli_import_then_export_round_trip(tmp_path, utterance_files):
    folder = write_folder(tmp_path / "in", "feat-UTT", utterance_files)
    runner = CliRunner()
    result = runner.invoke(app, ["import-features", str(folder), "--modality", "audio",
                                 "--out", str(tmp_path / "feat.zarr")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export-features", str(tmp_path / "feat.zarr"), "--out", str(tmp_path / "out"),
                                 "--name", "feat-UTT"])
    assert result.exit_code == 0, result.output
    assert_same_files(read_folder(tmp_path / "out" / "features" / "feat-UTT"), utterance_files)
