"""The one idiom for every pluggable thing (encoders, face detectors, ASR engines, corpus adapters,
noise sources, executors, model families, protocols): a `Component` subclass per implementation with a
`name`, a frozen `Config` dataclass of its options and the `packages` it imports (from which
`available(config) -> (ok, why)` says how to install what is missing, and `library_versions(config)`
what a cache key records), all of one kind in one `Registry`, looked up by the name params.yaml gives.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from pipeline.config import ConfigError, build
from pipeline.environment import distributions, missing_packages, versions
from pipeline.errors import MerError


class Unavailable(MerError, RuntimeError):
    """A component cannot run here; the message says why and how to fix it."""


class Component:
    """One implementation of a kind of thing (each kind's base class sets `kind`).

    The whole shell lives here: a subclass declares its `name`, `Config`, the `packages` it imports and
    how to `install` them, and only overrides `available` or `library_versions` to say more than that."""

    kind: ClassVar[str]          # "face detector", "noise source", ...: how messages and `mer doctor` name it
    name: ClassVar[str]
    Config: ClassVar[type]       # a frozen dataclass of the options that shape its output
    packages: ClassVar[tuple[str, ...]] = ()   # import names of the optional libraries it runs
    install: ClassVar[str] = ""                # how to install them, e.g. "pip install 'opensmile>=2.5,<3'"
    RUNTIME: ClassVar[dict[str, Any]] = {}     # knobs that steer a run but never its output, with defaults

    def __init__(self, config=None, **runtime):
        config = self.Config() if config is None else config
        ok, why = self.available(config)
        if not ok:
            raise Unavailable(f"{self.kind} {self.name}: {why}")
        self.config = config
        unknown = sorted(set(runtime) - set(self.RUNTIME))
        if unknown:
            raise TypeError(f"{self.kind} {self.name}: unknown runtime knob(s) {unknown}; valid: {list(self.RUNTIME)}")
        for key, default in self.RUNTIME.items():
            setattr(self, key, runtime.get(key, default))

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        """Whether it can run here with this config; if not, why and how to fix it."""
        missing = missing_packages(*cls.packages)
        if missing:
            return False, f"needs {', '.join(missing)}: {cls.install}"
        return True, ""

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        """Installed versions of the libraries this config runs: part of a cache key, so a component
        whose config picks its libraries (a concatenation's parts, a model's backend) names those."""
        return versions(*distributions(cls.packages))


class Registry(dict):
    """name -> Component class, for one kind of thing chosen by the params key `key`."""

    def __init__(self, key: str, *classes: type[Component], options_key: str = "", runtime_keys: tuple = ()):
        super().__init__((cls.name, cls) for cls in classes)
        (self.kind,) = {cls.kind for cls in classes}
        self.key = key      # the params.yaml key that chooses one, e.g. extract.face_detector
        self.options_key = options_key   # the config attribute holding its options, e.g. extract.face_options
        self.runtime_keys = runtime_keys  # options that steer the run, never the output: kept out of the Config

    def add(self, cls: type[Component]) -> type[Component]:
        """Register one more entry (a plugin's, or a test's): `ENCODERS.add(MyEncoder)`, or as a decorator."""
        if cls.kind != self.kind or cls.name in self:
            why = "the name is taken" if cls.kind == self.kind else f"it is a {cls.kind}"
            raise ValueError(f"{self.key}: {cls.name!r} cannot join the {self.kind}s: {why}")
        self[cls.name] = cls
        return cls

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

