"""What a prediction is: each path's answer and a file's whole result (records only, shared by
the predictor, timelines, the CLI and the web page)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass
class PathPrediction:
    """One path's answer: a class with probabilities, or attribute values."""

    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    source: str
    duration: float | None
    modalities: dict[str, str]  # audio/visual -> "found" or "missing: <why>"
    frames_sampled: int
    frames_with_face: int
    faces_tracked: int  # distinct faces followed through the video
    face_used: str  # which one fed the visual path, and why
    paths: dict[str, PathPrediction]
    best_path: str | None
    best_reason: str  # which development figures made it the best path
    fallback: str | None  # which modality is missing and why, when one is
    model: str
    extractors: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    # For files longer than the model's max_clip_seconds: how the windows were combined.
    aggregated: dict[str, Any] | None = None
    face_crops: list[NDArray[np.uint8]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result.pop("face_crops")
        return result
