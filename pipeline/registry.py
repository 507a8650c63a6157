"""The one idiom for every pluggable thing (encoders, face detectors, ASR engines, corpus adapters,
noise sources, executors): a class per implementation with a `name`, a frozen `Config` dataclass of
its options and `available(config) -> (ok, why)` saying how to install what is missing, all of one
kind in one `Registry`, looked up by the name params.yaml gives.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import ConfigError, build


class Registry(dict):
    """name -> implementation class, for one kind of thing chosen by the params key `key`."""

    def __init__(self, kind: str, key: str, *classes: type, options_key: str = ""):
        super().__init__((cls.name, cls) for cls in classes)
        self.kind = kind    # "face detector", "noise source", ...: how messages and `mer doctor` name it
        self.key = key      # the params.yaml key that chooses one, e.g. extract.face_detector
        self.options_key = options_key   # the config attribute holding its options, e.g. extract.face_options

    def lookup(self, name: str) -> type:
        if name not in self:
            raise ConfigError(f"{self.key}: unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name]

    def config(self, name: str, options: dict[str, Any] | None = None) -> tuple[type, Any]:
        """(class, its Config built from options); loads nothing."""
        cls = self.lookup(name)
        return cls, build(cls.Config, dict(options or {}), where=f"{self.kind} {name}")

    def make(self, name: str, options: dict[str, Any] | None = None, **runtime):
        """An instance of `name` built from its options (each class checks it can run in __init__);
        runtime knobs that never shape an output go to the constructor beside the Config."""
        cls, config = self.config(name, options)
        return cls(config, **runtime)

    def available(self, name: str, options: dict[str, Any] | None = None) -> tuple[bool, str]:
        try:
            cls, config = self.config(name, options)
        except ConfigError as err:
            return False, str(err)
        return cls.available(config)

    def rows(self, chosen: str = "", options: dict[str, Any] | None = None) -> list[tuple[str, bool, str]]:
        """`mer doctor` rows: each entry, whether it can run here and why not (the chosen one with
        its options)."""
        rows = []
        for name, cls in self.items():
            ok, why = self.available(name, options if name == chosen else None)
            label = f"{self.kind} {name}" + (f" ({self.key})" if name == chosen else "")
            rows.append((label, ok, why if not ok or why else summary(cls)))
        return rows


def summary(cls: type) -> str:
    """The first line of a class's docstring, or what its own `summary()` says."""
    if hasattr(cls, "summary"):
        return cls.summary()
    return (cls.__doc__ or "").strip().split("\n")[0]

