"""MER-NOISE views: what the `corrupt` stage makes of corrupt.*.

One CorruptedView per view (`noisy`, MER 2023's per-clip draw; `snr<S>` and `blur<r>`, the points of the
robustness curves), the pool of clips babble noise is made of, and the per-clip corruption extraction
applies between decoding and face detection. Each view is extracted as the clean one is
(pipeline.extract); the signal processing is pipeline.corrupt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import CorruptConfig, ExtractConfig, RunConfig
from pipeline.corrupt import NOISE_SOURCES, CorruptedView, corrupt_clip, draw_params, make_source
from pipeline.environment import versions
from pipeline.extract import extract
from pipeline.media.decode import reencode
from pipeline.store.media import MediaItem, MediaStore, digest

CONTROL_SNR = math.inf
CONTROL_VIEW = f"snr{CONTROL_SNR:g}"


def view_specs(cfg: CorruptConfig, seed: int) -> dict[str, CorruptedView]:
    views = {"noisy": CorruptedView(cfg, seed)}
    # With the SNR views comes their control, `snrinf`: their path (noise drawn, mixed in at +inf dB, blur 1),
    # which must give the clean view's items bit for bit. Its figures equal the clean ones exactly, so a gap
    # between the clean line and the SNR curve is the noise's doing, not the path's.
    for snr in (*cfg.robustness_snr_db, CONTROL_SNR) if cfg.robustness_snr_db else ():
        views[f"snr{snr:g}"] = CorruptedView(cfg, seed, snr=snr, blur=1)
    for r in cfg.robustness_blur:
        views[f"blur{r}"] = CorruptedView(cfg, seed, blur=r, noise=False)
    return views


def babble_pool(clean: Path, manifest: pd.DataFrame) -> tuple[str, ...]:
    """Training clips with audio: babble never mixes test speech into test clips."""
    view = MediaStore(clean).view()
    train = set(manifest.loc[manifest["split"] == "train", "sample_id"])
    return tuple(sorted(view.loc[view["sample_id"].isin(train) & (view["audio_len"] > 0), "sample_id"]))


def extract_views(rows: pd.DataFrame, manifest: pd.DataFrame, root: Path, clean: Path, out: Path,
                  cfg: CorruptConfig, extract_cfg: ExtractConfig, seed: int,
                  run: RunConfig | None = None) -> tuple[dict, list[dict]]:
    """Bring every view's store under `out` up to date with `rows` (the corrupt.splits items of
    `manifest`); returns (summary per view, failures tagged with their view)."""
    pool = babble_pool(clean, manifest)
    summaries, failed = {}, []
    # a corpus with none of corrupt.splits (e.g. train and test1 only) has nothing to corrupt
    for name, view in (view_specs(cfg, seed) if len(rows) else {}).items():
        summaries[name], view_failures = extract(rows, root, out / name, extract_cfg, Corruption(view, str(clean), pool),
                                                  run)
        failed += [f | {"view": name} for f in view_failures]
    return summaries, failed


@dataclass(frozen=True)
class Corruption:
    """How a corrupted view alters each clip between decoding and face detection (sent to the workers)."""
    view: CorruptedView
    babble_store: str        # media store whose clean audio makes babble noise
    babble_ids: tuple[str, ...]

    def params(self) -> dict:
        """Hashed with the extraction params into each item's params hash: a change re-extracts the view."""
        return {"corruption": self.view.key(), "babble_ids": digest(*self.babble_ids)}

    def libraries(self) -> dict[str, str]:
        """Blurring's and the rng's libraries, and the noise source's."""
        found = versions("numpy", "opencv-python-headless")
        if self.view.noise:
            source, config = NOISE_SOURCES.config(self.view.cfg.noise_source, self.view.cfg.noise_options)
            found |= source.library_versions(config)
        return found

    def corrupter(self) -> Corrupter:
        return Corrupter(self)


class Corrupter:
    """(sample_id, audio, frames, fps) -> corrupted (audio, frames, meta), noise drawn per clip; one per worker."""

    def __init__(self, corruption: Corruption):
        self.corruption = corruption
        self.store = MediaStore(corruption.babble_store)
        self.rows = {r["sample_id"]: r for r in self.store.view().to_dict("records")}
        self.clean_audio = lru_cache(maxsize=64)(self._clean_audio)  # babble mixes 3-5 clips per pick

    def _clean_audio(self, sample_id: str) -> np.ndarray:
        return self.store.load(pd.Series(self.rows[sample_id])).audio

    @cached_property
    def source(self):
        """Built on first use: a corpus without audio needs no noise (nor a babble pool). None for
        views that leave the audio clean."""
        return make_source(self.corruption.view, self.corruption.babble_ids, self.clean_audio)

    def __call__(self, sample_id, audio, frames, fps):
        noise = self.source if audio is not None else None
        audio, frames, meta = corrupt_clip(sample_id, audio, frames, self.corruption.view, noise)
        if frames is not None and self.corruption.view.cfg.reencode:
            frames = reencode(frames, fps)
        return audio, frames, meta

    def reuse_clean(self, row: dict, item: MediaItem) -> bool:
        """When this clip's frames come out unchanged (blur factor 1, no re-encoding), fill `item` with the
        clean view's faces and its corrupted audio instead of decoding and detecting faces again."""
        clean = self.rows.get(row["sample_id"])
        if (clean is None or clean["source_hash"] != row["source_hash"] or self.corruption.view.cfg.reencode
                or draw_params(self.corruption.view, row["sample_id"])["blur"] != 1):
            return False
        clean = self.store.load(pd.Series(clean))
        item.audio, _, item.meta["corruption"] = self(item.sample_id, clean.audio, None, None)
        item.faces, item.found, item.boxes, item.frame_time = clean.faces, clean.found, clean.boxes, clean.frame_time
        item.face_codes = clean.face_codes
        item.meta |= {k: clean.meta[k] for k in ("warnings", "no_face") if k in clean.meta}
        return True
