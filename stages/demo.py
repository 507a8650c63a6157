"""demo: generate the embedded demo corpus (params: demo.*)."""

from dataclasses import asdict
from pathlib import Path

from pipeline.config import load_section


def run(params: Path, *, out: Path, workers: int = 0) -> Path:
    from pipeline.demo import DemoSpec, generate_corpus

    spec = DemoSpec(**asdict(load_section("demo", params)))
    return generate_corpus(out, spec, workers=workers or None)
