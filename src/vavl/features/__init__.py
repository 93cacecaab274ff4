"""Feature extractors (registry, audio, visual), the extraction pipeline and the feature store."""

from __future__ import annotations

from vavl.features import audio as audio, visual as visual
from vavl.features.base import (
    EXTRACTORS,
    AudioExtractor,
    FeatureExtractor,
    VisualExtractor,
    create_extractor,
    preload_extractor,
    registered_dim,
)

__all__ = [
    "EXTRACTORS",
    "AudioExtractor",
    "FeatureExtractor",
    "VisualExtractor",
    "create_extractor",
    "preload_extractor",
    "registered_dim",
]
