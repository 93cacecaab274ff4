"""vavl's vocabulary: the modalities, the prediction paths and the modalities each path needs.
Imported everywhere; imports nothing of vavl."""

from __future__ import annotations

from typing import Literal

Modality = Literal["audio", "visual"]
MODALITIES: tuple[Modality, Modality] = ("audio", "visual")
PathName = Literal["audio", "visual", "audiovisual"]
PATHS: tuple[PathName, PathName, PathName] = ("audio", "visual", "audiovisual")
# What each path reads.
PATH_MODALITIES: dict[PathName, tuple[Modality, ...]] = {
    "audio": ("audio",),
    "visual": ("visual",),
    "audiovisual": MODALITIES,
}
# One emotion class per clip, attribute values, or every class present (with intensities).
TaskKind = Literal["classification", "regression", "multilabel"]
CREMA_D_EMOTIONS = ("angry", "sad", "disgust", "fear", "neutral", "happy")
