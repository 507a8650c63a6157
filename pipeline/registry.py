"""The one idiom for every pluggable thing (encoders, face detectors, ASR engines, corpus adapters,
noise sources, executors): a `Component` subclass per implementation with a `name`, a frozen
`Config` dataclass of its options and `available(config) -> (ok, why)` saying how to install what is
missing, all of one kind in one `Registry`, looked up by the name params.yaml gives.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from pipeline.config import ConfigError, build
from pipeline.errors import MerError


class Unavailable(MerError, RuntimeError):
    """A component cannot run here; the message says why and how to fix it."""


class Component:
    """One implementation of a kind of thing (each kind's base class sets `kind`)."""

    kind: ClassVar[str]          # "face detector", "noise source", ...: how messages and `mer doctor` name it
    name: ClassVar[str]
    Config: ClassVar[type]       # a frozen dataclass of the options that shape its output

    def __init__(self, config):
        ok, why = self.available(config)
        if not ok:
            raise Unavailable(f"{self.kind} {self.name}: {why}")
        self.config = config

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        """Whether it can run here with this config; if not, why and how to fix it."""
        return True, ""

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        """Versions of the libraries (and weights) this config runs, which shape its output: part of the
        fingerprint of what it makes (pipeline.fingerprint)."""
        return {}


class Registry(dict):
    """name -> Component class, for one kind of thing chosen by the params key `key`."""

    def __init__(self, key: str, *classes: type[Component], options_key: str = "", runtime_keys: tuple = ()):
        super().__init__((cls.name, cls) for cls in classes)
        (self.kind,) = {cls.kind for cls in classes}
        self.key = key      # the params.yaml key that chooses one, e.g. extract.face_detector
        self.options_key = options_key   # the config attribute holding its options, e.g. extract.face_options
        self.runtime_keys = runtime_keys  # options that steer the run, never the output: kept out of the Config

    def lookup(self, name: str) -> type:
        if name not in self:
            raise ConfigError(f"{self.key}: unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name]

    def config(self, name: str, options: dict[str, Any] | None = None) -> tuple[type, Any]:
        """(class, its Config built from options); loads nothing."""
        cls = self.lookup(name)
        options = {k: v for k, v in (options or {}).items() if k not in self.runtime_keys}
        return cls, build(cls.Config, options, where=self.options_key or f"{self.kind} {name}")

    def make(self, name: str, options: dict[str, Any] | None = None, **runtime):
        """An instance of `name` built from its options (Unavailable when it cannot run here);
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


def check_available(config) -> None:
    """Each component a loaded config chooses can run here, else Unavailable with how to install it: the
    stage that runs them calls it at start, so loading another stage's section never needs them."""
    for choice in config.choices():
        ok, why = choice.cls.available(choice.config)
        if not ok:
            raise Unavailable(f"{choice.cls.kind} {choice}: {why}")


def loaded(choice) -> Component:
    """The component a config's resolved Choice names, built once per process (its Config keys the cache)."""
    return _loaded(choice.cls, choice.config)


@lru_cache(maxsize=8)
def _loaded(cls: type[Component], config) -> Component:
    return cls(config)


def summary(cls: type) -> str:
    """The first line of a class's docstring, or what its own `summary()` says."""
    if hasattr(cls, "summary"):
        return cls.summary()
    return (cls.__doc__ or "").strip().split("\n")[0]

