"""encode: one feature (an encoder and its options) over every media view (params: encode.features.<name>)."""

from pathlib import Path

from pipeline.config import ConfigError, load_section
from pipeline.encode import encode_feature
from pipeline.failures import check_failure_rate
from pipeline.registry import check_available
from pipeline.store.lock import store_lock
from pipeline.store.media import corrupted_views


def run(params: Path, *, feature: str, clean: Path, corrupted: Path | None, out: Path) -> dict:
    cfg = load_section("encode", params)
    if feature not in cfg.features:
        raise ConfigError(f"encode.features has no feature {feature!r}; defined: {sorted(cfg.features)}")
    check_available(cfg.features[feature])   # the encoders of other features need not be installed here
    run = load_section("run", params)
    with store_lock(out):
        summary = encode_feature(cfg.features[feature], [clean, *corrupted_views(corrupted).values()], out, cfg.batch_size,
                                 cfg.device, run.executor, cfg.workers, cfg.items_per_part)
    check_failure_rate(summary["failed"], summary["encoded"], cfg.max_failure_rate, "encode",
                       f"{out} (encoder {cfg.features[feature].encoder!r}; its index gives each missing item's reason)")
    return summary
