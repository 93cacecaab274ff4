"""A content-addressed feature store that survives being killed.

Features are filed under ``STORE/features/<extractor key>/<ab>/<sha256 of the media file>.npz``:
the key names the extractor, its version and every setting that changes its output (for visual
features, the face settings too), and the media file is identified by its content, not its
name. Each entry is written atomically and carries a checksum of its arrays; a damaged entry is
detected when read and recomputed. A modality a file lacks is stored as a missing entry with its
reason, so that a second run does no work at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vavl.config import FaceSettings
from vavl.features.base import FeatureExtractor, VisualExtractor
from vavl.features.pipeline import ModalityFeatures
from vavl.files import write_atomically, write_json_atomically


def feature_key(extractor: FeatureExtractor, faces: FaceSettings | None = None) -> str:
    """The store key of an extractor; visual keys also cover how faces were found and cropped."""
    if not isinstance(extractor, VisualExtractor) or faces is None:
        return extractor.key()
    description = json.dumps(
        {"extractor": extractor.key(), "faces": faces.model_dump()}, sort_keys=True
    )
    return f"{extractor.id}-{hashlib.sha256(description.encode()).hexdigest()[:12]}"


def _checksum(features: ModalityFeatures) -> str:
    digest = hashlib.sha256()
    for array in (features.features, features.times, features.valid):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass
class StoredFeatures:
    """An entry: the features of one modality of one file, or the reason it has none."""

    features: ModalityFeatures | None
    missing_reason: str | None
    metadata: dict[str, Any]


class FeatureStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry_path(self, key: str, content_hash: str) -> Path:
        return self.root / "features" / key / content_hash[:2] / f"{content_hash}.npz"

    def register_extractor(self, key: str, description: dict[str, Any]) -> None:
        """Record what produced the features filed under ``key`` (read by training later)."""
        path = self.root / "extractors" / f"{key}.json"
        if not path.exists():
            write_json_atomically(path, description)

    def extractor_description(self, key: str) -> dict[str, Any] | None:
        path = self.root / "extractors" / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save(
        self,
        key: str,
        content_hash: str,
        features: ModalityFeatures | None,
        missing_reason: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Path:
        metadata = dict(metadata or {})
        if features is None:
            features = ModalityFeatures(
                np.zeros((0, 0), np.float32), np.zeros(0, np.float32), np.zeros(0, bool)
            )
            metadata["missing"] = missing_reason or "missing"
        metadata["checksum"] = _checksum(features)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            features=features.features.astype(np.float32),
            times=features.times.astype(np.float32),
            valid=features.valid.astype(bool),
            metadata=np.array(json.dumps(metadata)),
        )
        payload = buffer.getvalue()
        return write_atomically(self.entry_path(key, content_hash), lambda h: h.write(payload))

    def load(self, key: str, content_hash: str) -> StoredFeatures | None:
        """The entry, or None when there is none or it is damaged (then it should be redone)."""
        path = self.entry_path(key, content_hash)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                features = ModalityFeatures(archive["features"], archive["times"], archive["valid"])
                metadata = json.loads(str(archive["metadata"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            return None
        if metadata.get("checksum") != _checksum(features):
            return None
        missing = metadata.get("missing")
        return StoredFeatures(None if missing else features, missing, metadata)
