"""Synthetic talking-face corpus (scikit-image's astronaut, procedural speech, template transcripts)."""

from pipeline.demo.corpus import generate_corpus

__all__ = ["generate_corpus"]
