"""The `encode` stage's logic: run one feature's encoder over every view's items not yet in its store.

Pending items are sorted by input length and cut into parts (the unit of commit and resume); the
encoder batches within a part with padding masks. In one process a reader thread prefetches parts
and a writer thread commits them while the model runs; with several workers or Dask, each task
reads, encodes and writes its own part. A run with nothing pending never loads the model.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import interrupts
from pipeline.config import EncoderSpec, RunConfig
from pipeline.encoders import config_key
from pipeline.executors import run_tasks
from pipeline.modalities import MODALITIES
from pipeline.progress import progress
from pipeline.store.features import FeatureStore, Identity
from pipeline.store.media import MediaStore

# Missing inputs (silence, empty transcript, no face) are properties of the data; this is the encoder failing.
ENCODER_FAILED = "NaN/inf output, or input too short for the encoder"


@dataclass(frozen=True)
class EncodeTask:
    spec: EncoderSpec
    runtime: tuple[tuple[str, object], ...]
    store: str
    rows: list[dict]          # media rows: cache_key, media_store, plus the media index fields
    identity: str = ""        # the encoder's identity key: new weights at the same path load anew


_LOADED: dict[tuple, object] = {}   # the last two encoders built in this process


def build_encoder(spec: EncoderSpec, runtime: dict, identity: str = ""):
    """One encoder per (spec, runtime, identity key) and process: tasks of a run share the loaded model,
    and weights replaced at the same path (a new identity) are loaded again. Runtime knobs in the spec's
    options (batch_size, ...) give way to `runtime`."""
    knobs = {k: v for k, v in spec.options.items() if k in spec.encoder.cls.RUNTIME} | runtime
    # options hold lists (layers) and mappings (audio-concat): JSON text is their hashable form
    key = (spec.encoder, json.dumps(spec.options, sort_keys=True), tuple(sorted(knobs.items())), identity)
    if key not in _LOADED:
        while len(_LOADED) >= 2:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = spec.encoder.make(**knobs)
    return _LOADED[key]


def identity_of(encoder) -> Identity:
    return identity_for(type(encoder), encoder.config)


def identity_for(cls, config) -> Identity:
    return Identity(cls.name, cls.version, cls.modality, config_key(config), cls.library_versions(config))


def spec_identity(spec: EncoderSpec) -> Identity:
    """The identity a spec's encoder will have, without loading its model."""
    return identity_for(spec.encoder.cls, spec.encoder.config)


def pending(views: list[Path], store: FeatureStore, identity: Identity) -> pd.DataFrame:
    """Media rows of every view whose cache key the feature store lacks, one per distinct key."""
    frames = []
    for view in views:
        rows = MediaStore(view).view()
        rows["cache_key"] = identity.cache_keys(rows[identity.column])
        rows["media_store"] = str(view)
        frames.append(rows[rows["cache_key"].notna()])
    todo = pd.concat(frames, ignore_index=True).drop_duplicates("cache_key")
    done = set(store.index()["cache_key"])
    todo = todo[~todo["cache_key"].isin(done)]
    # length buckets across the whole run: each part, and each batch in it, holds similar lengths
    lengths = MODALITIES[identity.modality].sizes(todo)
    return todo.assign(length=lengths).sort_values(["length", "cache_key"]).drop(columns="length")


def encode_feature(spec: EncoderSpec, views: list[Path], store_path: Path, batch_size: int = 16,
                   device: str = "cpu", executor=None, workers: int = 1, items_per_part: int = 256) -> dict:
    """device: resolved (encode.device, pipeline.config); executor: a resolved run.executor (None: local)."""
    executor = executor or RunConfig().executor
    identity = spec_identity(spec)
    store = FeatureStore(store_path)
    todo = pending(views, store, identity)   # committed parts only: uncommitted ones never count
    if todo.empty and store.holds(identity):
        return {"encoded": 0, "missing": 0, "failed": 0, "dim": store.meta()["dim"]}   # no model loaded
    runtime = {"batch_size": batch_size, "device": device}
    encoder = build_encoder(spec, runtime, identity.key)
    store.create(identity, encoder.probe_dim())
    store.parts.remove_uncommitted()
    tasks = [EncodeTask(spec, tuple(sorted(runtime.items())), str(store_path), chunk.to_dict("records"), identity.key)
             for chunk in (todo.iloc[i:i + items_per_part] for i in range(0, len(todo), items_per_part))]
    desc = f"encode {store_path.stem}"
    if executor == "local" and workers == 1:
        results = run_pipelined(tasks, desc)
    else:
        results = run_tasks(encode_part, tasks, executor.make(), workers, desc)
    missing = failed = 0
    for result in results:
        missing, failed = missing + result["missing"], failed + result["failed"]
    return {"encoded": len(todo), "missing": missing, "failed": failed, "dim": store.meta()["dim"]}


def encode_part(task: EncodeTask) -> dict:
    """Runs in a worker: read the inputs from the media store, encode, write one feature part."""
    inputs = read_inputs(task)
    return write_part(task, inputs, build_encoder(task.spec, dict(task.runtime), task.identity).encode(inputs))


def run_pipelined(tasks: list[EncodeTask], desc: str, prefetch: int = 2) -> Iterator[dict]:
    """One process: while part i encodes (torch over all cores), a reader thread loads the media of
    the next parts and a writer thread commits the previous ones, so I/O hides behind compute."""
    bar = progress(len(tasks), desc, "part")
    with ThreadPoolExecutor(1, "encode-read") as reader, ThreadPoolExecutor(1, "encode-write") as writer:
        reads = deque(reader.submit(read_inputs, t) for t in tasks[:prefetch])
        writes: deque[Future] = deque()
        for i, task in enumerate(tasks):
            inputs = reads.popleft().result()
            if i + prefetch < len(tasks):
                reads.append(reader.submit(read_inputs, tasks[i + prefetch]))
            vectors = build_encoder(task.spec, dict(task.runtime), task.identity).encode(inputs)
            interrupts.check()   # an item the interrupt hit may hold a NaN: it is not written
            writes.append(writer.submit(write_part, task, inputs, vectors))
            while writes and (writes[0].done() or len(writes) > prefetch):
                bar.update(1)
                yield writes.popleft().result()
        for write in writes:
            bar.update(1)
            yield write.result()
    bar.close()


def read_inputs(task: EncodeTask) -> list:
    modality = task.spec.encoder.cls.modality
    stores: dict[str, MediaStore] = {}
    return [_input(row, modality, stores) for row in task.rows]


def write_part(task: EncodeTask, inputs: list, vectors: list) -> dict:
    modality = task.spec.encoder.cls.modality
    reasons = ["" if v is not None else why_missing(x, modality) for x, v in zip(inputs, vectors)]
    store = FeatureStore(task.store)
    store.write([r["cache_key"] for r in task.rows], vectors, reasons, int(store.meta()["dim"]))
    return {"missing": sum(v is None for v in vectors), "failed": reasons.count(ENCODER_FAILED)}


def why_missing(item, modality: str) -> str:
    """Why an encoder gave no vector for this input."""
    return MODALITIES[modality].absent if MODALITIES[modality].is_empty(item) else ENCODER_FAILED


def _input(row: dict, modality: str, stores: dict[str, MediaStore]):
    field = MODALITIES[modality].field
    if field in row:   # text: the transcript is in the view's index, no store read
        return row[field]
    path = row["media_store"]
    store = stores.setdefault(path, MediaStore(path))
    return getattr(store.load(pd.Series(row)), field)
