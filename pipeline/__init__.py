"""Multimodal emotion recognition pipeline (MER 2023 protocol): library code behind the DVC stages."""

__version__ = "0.1.0"
