"""What a feature store knows without reading media or features: so that a rerun over 100k
files starts in seconds.

- :class:`HashCache` (``index/hashes.json``): each media file's content hash by its resolved
  path, size and modification time; a file is hashed again whenever one of them changes (or
  with ``verify``).
- :class:`StoreIndex` (``index/<extractor key>.json``): a summary of every entry under a key
  (frames, size, frame times, what its record says) and the entry file's size and modification
  time, written when the entry is made or first read. An entry file changed since (cut short,
  written over) is read again, its checksum checked. Training gets clip lengths and which
  modalities a clip has from the index, and reads the features themselves batch by batch.

Both are caches of what the entries and the media say: written atomically, rebuilt from the
entries when missing or damaged, and never trusted over a checksum (an entry read for training
is checked as it is read).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.features.store import EntryRecord, FeatureStore, StoredFeatures
from vavl.files import write_text_atomically

logger = logging.getLogger("vavl")

INDEX_FOLDER = "index"
HASHES = "hashes.json"
FILE = "file"  # an index record's entry file: size and modification time when indexed


@dataclass(frozen=True)
class EntrySummary:
    """One entry as the index knows it."""

    frames: int
    dim: int
    finite: bool  # no NaN or infinite value among its valid frames
    first_time: float | None  # of its first frame (None: no frames)
    rate: float | None  # frames/s when its times are first + k / rate exactly (audio), else None
    first_valid: int | None  # the number of its first valid frame (None: none is)
    missing: str | None  # why the file has no features of this modality
    record: EntryRecord

    @classmethod
    def of(cls, stored: StoredFeatures) -> EntrySummary:
        found = stored.features
        if found is None or len(found.features) == 0:
            return cls(0, 0, True, None, None, None, stored.missing_reason, stored.record)
        valid = np.asarray(found.valid, bool)
        return cls(
            frames=len(found.features),
            dim=int(found.features.shape[1]),
            finite=bool(np.isfinite(found.features[valid]).all()),
            first_time=float(found.times[0]),
            rate=_even_rate(np.asarray(found.times, np.float32)),
            first_valid=int(np.argmax(valid)) if valid.any() else None,
            missing=stored.missing_reason,
            record=stored.record,
        )

    def times(self) -> NDArray[np.float32] | None:
        """Its frame times, as stored (None: not evenly spaced, so unknown here)."""
        if self.first_time is None or self.rate is None:
            return None
        return _rebuilt(self.first_time, self.rate, self.frames)

    def frames_before(self, seconds: float | None) -> int:
        """How many of its frames start before ``seconds``, as the cut of the stored times
        counts them (all of them for None, and for frames not evenly spaced: video is never
        cut)."""
        times = None if seconds is None else self.times()
        return self.frames if times is None else int((times < np.float32(seconds)).sum())

    def has_valid_before(self, seconds: float | None) -> bool:
        return self.first_valid is not None and self.first_valid < self.frames_before(seconds)

    def to_json(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return values | {"record": self.record.to_json()}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> EntrySummary:
        return cls(**(saved | {"record": EntryRecord.from_json(saved["record"])}))


def _read(path: Path) -> dict[str, Any]:
    """A cache file's mapping; an unreadable one is empty (it is rebuilt)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        logger.warning("%s: unreadable, rebuilt", path)
        return {}
    return value if isinstance(value, dict) else {}


def _write(path: Path, value: dict[str, Any]) -> None:
    # ASCII JSON: a file name that is not UTF-8 round-trips as its escaped surrogates.
    write_text_atomically(path, json.dumps(value, separators=(",", ":")))


def _rebuilt(first: float, rate: float, frames: int) -> NDArray[np.float32]:
    """Frame times as the extractors make them: first + k / rate in float64, kept as float32."""
    return (first + np.arange(frames) / rate).astype(np.float32)


def _even_rate(times: NDArray[np.float32]) -> float | None:
    """The frame rate that gives back ``times`` exactly, if there is one (audio frames; video
    frames come when they come)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    estimate = (len(times) - 1) / (float(times[-1]) - float(times[0]))
    for rate in (round(estimate), round(estimate, 2)):
        if rate > 0 and np.array_equal(_rebuilt(float(times[0]), rate, len(times)), times):
            return float(rate)
    return None


def file_identity(path: Path) -> list[int] | None:
    """A file's size and modification time (None: it cannot be read)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


class HashCache:
    """Content hashes by (resolved path, size, modification time)."""

    def __init__(self, store: FeatureStore) -> None:
        self.path = store.root / INDEX_FOLDER / HASHES
        self.known: dict[str, list[Any]] = _read(self.path)
        self.changed = False

    def lookup(self, path: Path) -> str | None:
        """The hash of ``path``'s content when it is unchanged since it was remembered."""
        saved = self.known.get(os.path.realpath(path))
        identity = file_identity(path)
        return str(saved[2]) if saved and identity is not None and saved[:2] == identity else None

    def remember(self, path: Path, identity: list[int], content_hash: str) -> None:
        """``path`` had ``content_hash`` while its size and time were ``identity`` (taken
        before hashing, and the same after)."""
        self.known[os.path.realpath(path)] = [*identity, content_hash]
        self.changed = True

    def save(self) -> None:
        """Write what was learnt, merged with what another process wrote meanwhile."""
        if self.changed:
            _write(self.path, _read(self.path) | self.known)
            self.changed = False


class StoreIndex:
    """Summaries of the entries under some extractor keys of a store."""

    def __init__(self, store: FeatureStore, keys: Iterable[str]) -> None:
        self.store = store
        self.summaries: dict[str, dict[str, Any]] = {
            key: _read(self._path(key)) for key in set(keys)
        }
        self.changed: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.store.root / INDEX_FOLDER / f"{key}.json"

    def _identity(self, key: str, entry_id: str) -> list[int] | None:
        return file_identity(self.store.entry_path(key, entry_id))

    def get(self, key: str, entry_id: str) -> EntrySummary | None:
        """The entry's summary, when indexed and its file is as it was then (a file cut short
        or written over is read again, and its checksum decides)."""
        saved = self.summaries.get(key, {}).get(entry_id)
        if saved is None or saved.get(FILE) != self._identity(key, entry_id):
            return None
        try:
            return EntrySummary.from_json(saved["summary"])
        except (TypeError, KeyError):  # written by another version: read the entry again
            return None

    def put(self, key: str, entry_id: str, summary: EntrySummary) -> None:
        identity = self._identity(key, entry_id)
        if identity is None:
            return
        self.summaries.setdefault(key, {})[entry_id] = {
            "summary": summary.to_json(),
            FILE: identity,
        }
        self.changed.add(key)

    def summarise(self, key: str, entry_id: str) -> EntrySummary | None:
        """The entry's summary, from the index or (checked by its checksum) from the entry
        itself, then indexed; None when the entry is missing or damaged."""
        found = self.get(key, entry_id)
        if found is not None:
            return found
        stored = self.store.load(key, entry_id)
        if stored is None:
            return None
        summary = EntrySummary.of(stored)
        self.put(key, entry_id, summary)
        return summary

    def save(self) -> None:
        for key in sorted(self.changed):
            _write(self._path(key), _read(self._path(key)) | self.summaries[key])
        self.changed.clear()
