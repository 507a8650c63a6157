"""Encoder registry: the feature name in params.yaml names an encoder here plus its options.

Importing this package imports no model library; each encoder imports its own when built.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pipeline.config import ConfigError
from pipeline.registry import Registry

from .base import Encoder
from .concat import AudioConcatEncoder
from .e5_text import E5Encoder
from .fer_tflite import FEREncoder
from .hf_audio import HFAudioEncoder
from .hf_image import HFImageEncoder
from .hf_text import HFTextEncoder, MiniLMEncoder
from .opensmile_enc import EgemapsEncoder, OpenSmileEncoder
from .projection import AudioProjection, TextProjection, VisualProjection
from .whisper_enc import WhisperEncoder

ENCODERS = Registry("encode.features.<name>.encoder",
                    EgemapsEncoder, OpenSmileEncoder, WhisperEncoder, AudioConcatEncoder, MiniLMEncoder, E5Encoder,
                    FEREncoder, HFAudioEncoder, HFTextEncoder, HFImageEncoder, AudioProjection, TextProjection,
                    VisualProjection, options_key="encode.features.<name>.options", runtime_keys=tuple(Encoder.RUNTIME))

__all__ = ["ENCODERS", "Encoder", "config_key", "make_config", "make_encoder"]


def make_encoder(name: str, options: dict[str, Any] | None = None, **runtime) -> Encoder:
    """Build encoder `name` from its options; runtime knobs (batch_size, device, ...) may come in
    either `options` or `runtime` (the latter wins) and never reach the Config."""
    cls, config, in_options = make_config(name, options)
    runtime = in_options | runtime
    unknown = sorted(set(runtime) - set(Encoder.RUNTIME))
    if unknown:
        raise ConfigError(f"encoder {name}: unknown runtime key(s) {unknown}; valid: {list(Encoder.RUNTIME)}")
    return cls(config, **runtime)


def make_config(name: str, options: dict[str, Any] | None = None) -> tuple[type[Encoder], Any, dict[str, Any]]:
    """(encoder class, its Config from options, the runtime knobs found in options); loads no model."""
    options = dict(options or {})
    runtime = {k: options.pop(k) for k in Encoder.RUNTIME if k in options}
    return *ENCODERS.config(name, options), runtime


def config_key(config) -> dict[str, Any]:
    """The options of an encoder Config that differ from their defaults, as JSON-ready values: part
    of a cache key, so adding an option with a default later leaves existing keys unchanged."""
    key = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value != _default(f):
            key[f.name] = _plain(value, f.name)
    return dict(sorted(key.items()))


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _plain(value: Any, where: str) -> Any:
    """value with tuples as lists; TypeError for anything JSON has no exact form of."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(value[k], f"{where}.{k}") for k in sorted(value)}
    raise TypeError(f"config_key: {where}={value!r} ({type(value).__name__}) is not a JSON primitive")
