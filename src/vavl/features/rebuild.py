"""The feature extractors a trained model needs, rebuilt from what its checkpoint recorded.

A model never sees features from another extractor: the rebuilt extractors must describe
exactly what the model was trained on (:func:`~vavl.features.base.check_extractors`). How faces
are found (the detector, say) is the user's choice; what is made of a face stays the model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vavl.config import FaceSettings
from vavl.errors import CheckpointError, MediaError
from vavl.features.base import Descriptions, FeatureExtractor, check_extractors
from vavl.features.pipeline import EVERYONE, SPEAKER, FaceChoice, FeaturePipeline
from vavl.features.records import FileFeatures
from vavl.features.store import FeatureStore
from vavl.files import sha256_file
from vavl.spans import WHOLE, Span
from vavl.speakers import SpeakerFinder, SyncModel
from vavl.types import MODALITIES


@dataclass
class ModelFeatures:
    """A model's feature pipeline, the store keys of what it makes and its extractors' ids."""

    pipeline: FeaturePipeline
    keys: dict[str, str]
    extractors: dict[str, str | None]

    def of_file(
        self, path: Path, store: FeatureStore | None = None, span: Span = WHOLE
    ) -> FileFeatures:
        """A file's features (or those of a ``span`` of it): from ``store`` where it holds
        them, the rest extracted now."""
        if store is None:
            return self.pipeline.extract(path, span=span)
        if not path.is_file():
            raise MediaError(f"{path}: file not found")
        content, features = span.entry_id(sha256_file(path)), FileFeatures(path, None)
        lacking = store.load_file(self.keys, features, content)
        if lacking:
            features = self.pipeline.extract(path, tuple(lacking), span)
            kept = {m: key for m, key in self.keys.items() if m not in lacking}
            store.load_file(kept, features, content)
        return features


def rebuild_features(
    trained: Descriptions,
    model_name: str,
    extractor_options: Mapping[str, Mapping[str, Any]] | None = None,
    faces_override: Mapping[str, Any] | None = None,
    preview_crops: int = 0,
    face: FaceChoice = 0,
) -> ModelFeatures:
    """The pipeline of the extractors in ``trained`` (modality -> description), with
    ``extractor_options`` changes that leave the features as they are (threads, say)."""
    faces = FaceSettings()
    built: dict[str, FeatureExtractor | None] = {}
    for modality in MODALITIES:
        description = trained.get(modality)
        if description is not None and not description.rebuildable:
            raise CheckpointError(
                f"{model_name}: was trained on '{description.id}' {modality} features, which "
                "cannot be computed from media (only full extractor descriptions can)"
            )
        if description is not None and description.faces is not None:
            faces = FaceSettings.model_validate(description.faces)
        changes = (extractor_options or {}).get(modality, {})
        built[modality] = None if description is None else description.build(**changes)
    made = {m: None if e is None else e.describe(faces.model_dump()) for m, e in built.items()}
    check_extractors(trained, made, model_name)
    if faces_override:
        faces = FaceSettings.model_validate(faces.model_dump() | dict(faces_override))
    audio, visual = built["audio"], built["visual"]
    speakers = SpeakerFinder(SyncModel.load()) if face in (SPEAKER, EVERYONE) else None
    pipeline = FeaturePipeline(audio, visual, faces, preview_crops, face, speakers)  # type: ignore[arg-type]
    return ModelFeatures(
        pipeline=pipeline,
        keys=pipeline.store_keys(),
        extractors={m: (e.id if e is not None else None) for m, e in built.items()},
    )
