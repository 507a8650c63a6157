"""corrupt: corrupted views of the MER-NOISE splits, one media store per view (params: corrupt.*).

View `noisy` follows MER 2023 (per clip an SNR drawn from corrupt.snr_db and a blur factor from
corrupt.blur); views `snr<S>` add noise at one fixed SNR and no blur, views `blur<r>` blur by one
fixed factor and leave the audio clean: the points of the robustness curves.
"""

from pathlib import Path

import pandas as pd
import zarr

from pipeline.config import ConfigError, CorruptConfig, load_section
from pipeline.errors import require
from pipeline.corrupt import NOISE_SOURCES, CorruptedView
from pipeline.extract import Corruption, extract
from pipeline.failures import write_failures
from pipeline.store.lock import store_lock
from pipeline.store.media import MediaStore


def corrupted_views(cfg: CorruptConfig, seed: int) -> dict[str, CorruptedView]:
    found = {"noisy": CorruptedView(cfg, seed)}
    for snr in cfg.robustness_snr_db:
        found[f"snr{snr:g}"] = CorruptedView(cfg, seed, snr=snr, blur=1)
    for r in cfg.robustness_blur:
        found[f"blur{r}"] = CorruptedView(cfg, seed, blur=r, noise=False)
    return found


def babble_pool(clean: Path, manifest: pd.DataFrame) -> tuple[str, ...]:
    """Training clips with audio: babble never mixes test speech into test clips."""
    view = MediaStore(clean).view()
    train = set(manifest.loc[manifest["split"] == "train", "sample_id"])
    return tuple(sorted(view.loc[view["sample_id"].isin(train) & (view["audio_len"] > 0), "sample_id"]))


def run(params: Path, manifest: Path, clean: Path, out: Path, failures: Path) -> dict:
    cfg = load_section("corrupt", params)
    extract_cfg = load_section("extract", params)
    seed = load_section("base", params).seed
    ok, why = NOISE_SOURCES.available(cfg.noise_source, cfg.noise_options)   # fails here, not per clip
    if not ok:
        raise ConfigError(why if why.startswith("corrupt.") else f"corrupt.noise_source {cfg.noise_source}: {why}")
    root = Path(load_section("prepare", params).root)
    rows = pd.read_parquet(require(manifest, "`mer prepare` (dvc repro prepare)"))
    rows = rows[rows["split"].isin(cfg.splits)]
    pool = babble_pool(clean, pd.read_parquet(manifest))
    summaries, failed = {}, []
    with store_lock(out):   # one lock for the whole store of views
        zarr.open_group(str(out), mode="a")
        # a corpus with none of corrupt.splits (e.g. train and test1 only) has nothing to corrupt
        for name, view in (corrupted_views(cfg, seed) if len(rows) else {}).items():
            corruption = Corruption(view, str(clean), pool)
            summaries[name], view_failures = extract(rows, root, out / name, extract_cfg, corruption)
            failed += [f | {"view": name} for f in view_failures]
    write_failures(failed, len(rows) * len(summaries), failures, extract_cfg.max_failure_rate, "corrupt")
    return summaries
