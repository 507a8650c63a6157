"""corrupt: corrupted views of the MER-NOISE splits, one media store per view (params: corrupt.*).

View `noisy` follows MER 2023 (per clip an SNR drawn from corrupt.snr_db and a blur factor from
corrupt.blur); views `snr<S>` add noise at one fixed SNR and no blur, views `blur<r>` blur by one
fixed factor and leave the audio clean: the points of the robustness curves; view `snrinf`, their
control, mixes the noise in at +inf dB with no blur and must give the clean items (pipeline.corrupt_views).
"""

from pathlib import Path

import zarr

from pipeline.config import load_section
from pipeline.corrupt_views import extract_views
from pipeline.failures import write_failures
from pipeline.inputs import read_manifest
from pipeline.registry import check_available
from pipeline.store.lock import store_lock


def run(params: Path, *, manifest: Path, clean: Path, out: Path, failures: Path) -> dict:
    cfg = load_section("corrupt", params)
    extract_cfg = load_section("extract", params)
    seed = load_section("base", params).seed
    check_available(cfg)   # fails here, not per clip
    root = Path(load_section("prepare", params).root)
    every = read_manifest(manifest)
    rows = every[every["split"].isin(cfg.splits)]
    with store_lock(out):   # one lock for the whole store of views
        zarr.open_group(str(out), mode="a")
        summaries, failed = extract_views(rows, every, root, clean, out, cfg, extract_cfg, seed,
                                          load_section("run", params))
    write_failures(failed, len(rows) * len(summaries), failures, cfg.max_failure_rate, "corrupt")
    return summaries
