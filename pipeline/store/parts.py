"""A Zarr store made of immutable parts, each committed by its Parquet index file.

Every writer (a pool process or a Dask worker) writes whole parts of its own, so no two writers ever
touch the same chunk. A part's arrays are written first, then its index is renamed into place: the
rename is the commit. A part without an index was interrupted and is ignored (and removed on the next
run), so killing a stage at any point leaves a consistent store. Each array of a part is one shard
file holding many compressed chunks, which keeps the file count low for DVC and the file system.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from pipeline import interrupts

INDEX_DIR = "index"
PARTS_DIR = "parts"


class PartStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._open: dict[tuple[str, str], zarr.Array] = {}   # committed parts never change

    def create(self) -> PartStore:
        """Create the group skeleton once, before writers start (writers then only add parts)."""
        group = zarr.open_group(str(self.root), mode="a")
        group.require_group(PARTS_DIR)
        (self.root / INDEX_DIR).mkdir(parents=True, exist_ok=True)
        return self

    @staticmethod
    def part_id(keys: list[str]) -> str:
        """Deterministic from the items in the part, so any executor makes the same store."""
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]

    def write_part(self, part: str, arrays: dict[str, np.ndarray], index: pd.DataFrame, chunk_rows: dict[str, int]):
        self._open = {k: v for k, v in self._open.items() if k[0] != part}
        group = zarr.open_group(str(self.root / PARTS_DIR / part), mode="w")
        for name, data in arrays.items():
            rows = max(1, min(chunk_rows.get(name, 64), len(data)))
            chunks = (rows, *data.shape[1:])
            shard = (max(rows, -(-len(data) // rows) * rows), *data.shape[1:])
            array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, shards=shard)
            if data.size:
                array[...] = data
        tmp = self.root / INDEX_DIR / f".{part}.parquet.tmp"
        index.assign(part=part).to_parquet(tmp, index=False)
        interrupts.check()   # nothing computed after a Ctrl-C is committed (a C library may have swallowed it)
        os.replace(tmp, self.root / INDEX_DIR / f"{part}.parquet")

    def committed(self) -> list[str]:
        folder = self.root / INDEX_DIR
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []

    def index(self) -> pd.DataFrame:
        """Index rows of all committed parts (empty frame when there are none)."""
        files = [self.root / INDEX_DIR / f"{p}.parquet" for p in self.committed()]
        if not files:
            return pd.DataFrame()
        # one pandas conversion for all parts: per-file read_parquet dominates on 100k-item stores
        tables = list(parallel_map(pq.read_table, files))
        return pa.concat_tables(tables, promote_options="default").to_pandas()

    def remove_uncommitted(self) -> list[str]:
        """Drop parts an interrupted writer left without an index; returns their ids."""
        parts_dir = self.root / PARTS_DIR
        done = set(self.committed())
        stale = [p.name for p in parts_dir.iterdir() if p.is_dir() and p.name not in done] if parts_dir.is_dir() else []
        for name in stale:
            shutil.rmtree(parts_dir / name)
        for tmp in (self.root / INDEX_DIR).glob(".*.tmp"):
            tmp.unlink()
        return stale

    def array(self, part: str, name: str) -> zarr.Array:
        if (part, name) not in self._open:
            self._open[part, name] = zarr.open_array(str(self.root / PARTS_DIR / part / name), mode="r")
        return self._open[part, name]

    def read(self, part: str, name: str, start: int, stop: int) -> np.ndarray:
        return self.array(part, name)[start:stop]

    def read_all(self, parts: list[str], name: str) -> list[np.ndarray]:
        """Array `name` of each part, whole, read concurrently (decompression releases the GIL)."""
        return list(parallel_map(lambda part: self.array(part, name)[...], parts))


def parallel_map(fn, items: list, threads: int = 8):
    """fn over items in `threads` threads, in order; in the calling thread when one would do."""
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))
