"""A content-addressed feature store that survives being killed.

Features are filed under ``STORE/features/<extractor key>/<ab>/<sha256 of the media file>.npz``:
the key names the extractor, its version and every setting that changes its output (for visual
features, the face settings too), and the media file is identified by its content, not its
name (a span of a longer file by the hash and the span: :mod:`vavl.spans`). Each entry is
written atomically and carries a checksum of its arrays; a damaged entry is detected when read
and recomputed. A modality a file lacks is stored as a missing entry with its
reason, so that a second run does no work at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vavl.errors import DataError
from vavl.features.base import ExtractorDescription
from vavl.features.records import FaceSummary, FileFeatures, ModalityFeatures
from vavl.files import read_json, write_atomically, write_json_atomically


def _checksum(features: ModalityFeatures) -> str:
    digest = hashlib.sha256()
    for array in (features.features, features.times, features.valid):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EntryRecord:
    """What an entry says of its file besides the features. Each entry describes its own
    modality only (an entry redone alone must not carry zeros for the one not looked at):
    ``audio_seconds`` in audio entries, the frame and face fields in visual ones."""

    source: str = ""
    duration_s: float | None = None
    notes: tuple[str, ...] = ()
    audio_seconds: float | None = None
    frames_sampled: int | None = None
    frames_with_face: int | None = None
    faces: tuple[FaceSummary, ...] = ()
    face_used: int | None = None

    @classmethod
    def of(cls, features: FileFeatures, modality: str) -> EntryRecord:
        duration = None if features.duration is None else round(features.duration, 3)
        common = cls(str(features.path), duration, tuple(features.notes))
        if modality == "audio":
            return replace(common, audio_seconds=round(features.audio_seconds, 3))
        return replace(
            common,
            frames_sampled=features.frames_sampled,
            frames_with_face=features.frames_with_face,
            faces=tuple(features.faces),
            face_used=features.face_used,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"notes": list(self.notes)}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> EntryRecord:
        known = {name: saved[name] for name in cls.__dataclass_fields__ if name in saved}
        known["notes"] = tuple(known.get("notes", ()))
        known["faces"] = tuple(
            FaceSummary(**face | {"centre": tuple(face.get("centre", (0.5, 0.5)))})
            for face in known.get("faces", ())
        )
        return cls(**known)

    def fill(self, features: FileFeatures) -> None:
        """Put what this entry knows of its file into ``features`` (one file's record)."""
        features.duration = features.duration or self.duration_s
        features.notes += [n for n in self.notes if n not in features.notes]
        if self.frames_sampled is not None:
            features.frames_sampled = self.frames_sampled
            features.frames_with_face = self.frames_with_face or 0
            features.faces = list(self.faces)
            features.face_used = self.face_used


@dataclass
class StoredFeatures:
    """An entry: the features of one modality of one file, or the reason it has none."""

    features: ModalityFeatures | None
    missing_reason: str | None
    record: EntryRecord


# The temporary files of ``write_atomically``: ``.<name>.<pid of the writer>.tmp``.
TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class FeatureStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def remove_stale_temporaries(self, older_than: float) -> int:
        """Delete half-written entries that a killed writer left: files of the atomic-write
        pattern whose writer process is gone and that are older than ``older_than`` (a
        timestamp: when this run started). Returns how many were removed."""
        removed = 0
        for path in self.root.rglob(".*.tmp"):
            match = TEMPORARY.match(path.name)
            if match is None or _alive(int(match.group(1))):
                continue
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another process cleaned it first
                continue
        return removed

    def entry_path(self, key: str, content_hash: str) -> Path:
        return self.root / "features" / key / content_hash[:2] / f"{content_hash}.npz"

    def register_extractor(self, description: ExtractorDescription) -> None:
        """Record what produced the features filed under its key (read by training later)."""
        path = self.root / "extractors" / f"{description.key}.json"
        if not path.exists():
            write_json_atomically(path, description.to_dict())

    def extractor_description(self, key: str) -> ExtractorDescription | None:
        path = self.root / "extractors" / f"{key}.json"
        return ExtractorDescription.from_saved(read_json(path)) if path.exists() else None

    def resolve_key(self, extractor_id: str) -> str:
        """The key of the features ``extractor_id`` wrote here (there must be exactly one)."""
        keys = sorted(
            path.stem
            for path in (self.root / "extractors").glob("*.json")
            if json.loads(path.read_text()).get("id") == extractor_id
        )
        if not keys:
            raise DataError(
                f"{self.root}: holds no '{extractor_id}' features; run `vavl extract ... "
                f"--out {self.root}` with that extractor first"
            )
        if len(keys) > 1:
            raise DataError(
                f"{self.root}: holds '{extractor_id}' features made with different settings "
                f"({', '.join(keys)}); name the one you want by its key"
            )
        return keys[0]

    def save(
        self,
        key: str,
        content_hash: str,
        features: ModalityFeatures | None,
        missing_reason: str | None = None,
        record: EntryRecord | None = None,
        sync: bool = True,
    ) -> Path:
        metadata = (record or EntryRecord()).to_json()
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
        return write_atomically(
            self.entry_path(key, content_hash), lambda h: h.write(payload), sync
        )

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
        record = EntryRecord.from_json(metadata)
        return StoredFeatures(None if missing else features, missing, record)

    def save_file(
        self,
        keys: Mapping[str, str],
        content_hash: str,
        features: FileFeatures,
        modalities: Iterable[str],
    ) -> None:
        """File ``modalities`` of what the pipeline gave for one file, under ``keys``."""
        for modality in modalities:
            found = features.audio if modality == "audio" else features.visual
            reason = features.missing.get(modality, "no features")
            record = EntryRecord.of(features, modality)
            self.save(keys[modality], content_hash, found, reason, record)

    def load_file(
        self, keys: Mapping[str, str], features: FileFeatures, content_hash: str
    ) -> list[str]:
        """Fill ``features`` (one file's record, as the pipeline gives it) from the file's
        entries under ``keys``; returns the modalities the store lacks (or holds damaged)."""
        lacking = []
        for modality, key in keys.items():
            entry = self.load(key, content_hash)
            if entry is None:
                lacking.append(modality)
                continue
            features.set_modality(modality, entry.features)
            if entry.missing_reason:
                features.missing[modality] = entry.missing_reason
            entry.record.fill(features)
        return lacking
