"""Synthetic talking-face corpus (scikit-image's astronaut, procedural speech, template transcripts)."""

from pipeline.demo.corpus import DemoSpec, generate_corpus

__all__ = ["DemoSpec", "generate_corpus"]
