"""demo: generate the embedded demo corpus (params: demo.*)."""

from pathlib import Path

from pipeline.config import load_section


def run(params: Path, *, out: Path, workers: int = 0) -> Path:
    from pipeline.demo import generate_corpus

    return generate_corpus(out, load_section("demo", params), workers=workers or None)
