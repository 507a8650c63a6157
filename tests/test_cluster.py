"""A real Dask cluster: a scheduler and workers started as separate processes with Dask's own CLI
(`dask scheduler`, `dask worker`), as a user starts them on plain machines or in a batch job, write the
same store bytes as the local executor, for extract and for encode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from bench_cluster import dask_cluster  # noqa: E402

from pipeline.config import DemoConfig, EncoderSpec, ExtractConfig, PrepareConfig, RunConfig
from pipeline.datasets.prepare import prepare
from pipeline.demo import generate_corpus
from pipeline.encode import encode_feature
from pipeline.extract import extract
from pipeline.registry import Unavailable
from pipeline.store.features import FeatureStore
from pipeline.store.media import MediaStore

pytestmark = pytest.mark.slow

N_CLIPS = 8
CFG = ExtractConfig(workers=1, clips_per_part=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    spec = DemoConfig(n_train=N_CLIPS, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0)
    generate_corpus(root, spec, progress=False, workers=1)
    return root, prepare(PrepareConfig(root=str(root)), root / "manifest.parquet", root / "rejects.csv").manifest


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("cluster"), workers=2) as options:
        yield options


def store_bytes(store: Path) -> dict[str, bytes]:
    """Every file of a store's committed parts, by path inside the store."""
    return {str(f.relative_to(store)): f.read_bytes() for f in sorted((store / "parts").rglob("*")) if f.is_file()}


def test_extract_on_a_cli_started_cluster_writes_the_local_bytes(corpus, cluster, tmp_path):
    root, manifest = corpus
    local, remote = tmp_path / "local.zarr", tmp_path / "dask.zarr"
    extract(manifest, root, local, CFG)
    summary, failures = extract(manifest, root, remote, CFG, run=RunConfig("dask", cluster))
    assert failures == [] and summary["processed"] == N_CLIPS
    assert MediaStore(remote).parts.committed() == MediaStore(local).parts.committed()
    assert store_bytes(remote) == store_bytes(local)


def test_encode_on_a_cli_started_cluster_writes_the_local_bytes(corpus, cluster, tmp_path):
    root, manifest = corpus
    media = tmp_path / "media.zarr"
    extract(manifest, root, media, CFG)
    spec = EncoderSpec("egemaps", {})   # openSMILE: one thread, the same floats in any process
    local, remote = tmp_path / "local.zarr", tmp_path / "dask.zarr"
    encode_feature(spec, [media], local, items_per_part=3, workers=2)
    dask = RunConfig("dask", cluster).executor
    result = encode_feature(spec, [media], remote, items_per_part=3, executor=dask)
    assert result["encoded"] == N_CLIPS and result["failed"] == 0
    assert store_bytes(remote) == store_bytes(local) and len(FeatureStore(remote).index()) == N_CLIPS
    np.testing.assert_array_equal(FeatureStore(remote).index()["cache_key"], FeatureStore(local).index()["cache_key"])


def test_a_missing_scheduler_file_says_how_to_start_one(corpus, tmp_path):
    root, manifest = corpus
    missing = tmp_path / "scheduler.json"
    with pytest.raises(Unavailable, match=f"dask scheduler --scheduler-file {missing}"):
        extract(manifest.iloc[:1], root, tmp_path / "media.zarr",
                CFG, run=RunConfig("dask", {"scheduler_file": str(missing)}))


def test_the_scheduler_file_is_what_dask_writes(cluster):
    info = json.loads(Path(cluster["scheduler_file"]).read_text())
    assert info["address"].startswith("tcp://127.0.0.1:")
