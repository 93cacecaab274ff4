"""Items -> padded batches with masks: the data interface every model and recipe reads.

An :class:`Item` is one clip: its id, speaker, split, label, and frame-level features for each
modality it has (None when missing), in memory or left in the feature store
(:class:`StoredModality`: read, and checked, when a batch needs them; what the store's index
says of them answers everything else, so memory does not grow with the corpus). Batches pad
each modality to the longest clip that has it, with boolean masks True on real frames (a clip
that lacks a modality: an all-False row).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from vavl.config import ExperimentConfig, FeaturesConfig, TaskConfig
from vavl.errors import DataError
from vavl.features.index import INDEX_FOLDER, EntrySummary
from vavl.features.records import FileFeatures, ModalityFeatures
from vavl.features.store import FeatureStore
from vavl.files import write_atomically
from vavl.masks import trim_to_valid
from vavl.normalization import SOURCE, FeatureNormalizer, source_of
from vavl.types import MODALITIES, Modality

logger = logging.getLogger("vavl")
FloatArray = NDArray[np.float32]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class StoredModality:
    """One modality of a clip, left in the feature store: its entry and what the store's index
    says of it (kept small: a corpus has one per clip), with the cut of its frames
    (``max_seconds``: frames starting before it)."""

    store: str
    key: str
    entry: str
    frames: int  # after the cut
    has_valid: bool  # a real frame before the cut
    dim: int
    finite: bool
    max_seconds: float | None = None

    @classmethod
    def of(
        cls, store: str, key: str, entry: str, summary: EntrySummary, max_seconds: float | None
    ) -> StoredModality:
        return cls(
            store, key, entry, summary.frames_before(max_seconds),
            summary.has_valid_before(max_seconds), summary.dim, summary.finite, max_seconds,
        )  # fmt: skip

    def load(self) -> ModalityFeatures | None:
        """The features (cut), read from the store and checked against their checksum."""
        store = FeatureStore(self.store)
        stored = store.load(self.key, self.entry)
        if stored is None:
            raise DataError(
                f"{store.entry_path(self.key, self.entry)}: feature entry damaged or removed "
                "since it was indexed; run again with --set data.verify=true to make it again"
            )
        found = stored.features
        if found is None or self.max_seconds is None:
            return found
        kept = slice(0, self.frames)  # the frames before the cut, as the index counted them
        return ModalityFeatures(found.features[kept], found.times[kept], found.valid[kept])


@dataclass(eq=False)
class Item:
    """One clip. Features are (frames, dim) float32 arrays; ``visual_valid`` (frames,) marks the
    frames with a face and ``audio_valid`` those of speech (None: all frames are valid)."""

    id: str
    audio: FloatArray | None = None
    visual: FloatArray | None = None
    visual_valid: NDArray[np.bool_] | None = None
    audio_valid: NDArray[np.bool_] | None = None
    label: int | None = None
    soft_label: FloatArray | None = None
    attributes: FloatArray | None = None
    speaker: str | None = None
    split: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stored: dict[Modality, StoredModality] = field(default_factory=dict)  # read when needed

    @classmethod
    def from_modalities(
        cls,
        id: str,
        audio: ModalityFeatures | None,
        visual: ModalityFeatures | None,
        **fields: Any,
    ) -> Item:
        """The item of one clip's features (labels etc. in ``fields``): the one place where
        features become an item."""
        return cls(
            id=id,
            audio=None if audio is None else audio.features,
            visual=None if visual is None else visual.features,
            visual_valid=None if visual is None else visual.valid,
            audio_valid=None if audio is None else audio.valid,
            **fields,
        )

    @classmethod
    def from_features(cls, id: str, features: FileFeatures, **fields: Any) -> Item:
        """The item of what the feature pipeline gave for one file or window."""
        return cls.from_modalities(id, features.audio, features.visual, **fields)

    def frames(self, modality: Modality) -> tuple[FloatArray | None, BoolArray | None]:
        """A modality's features (None when the clip lacks it) and the mask of its real frames
        (None when it has no real frame), read from the store when left there."""
        if modality in self.stored:
            found = self.stored[modality].load()
            features, marked = (None, None) if found is None else (found.features, found.valid)
        elif modality == "audio":
            features, marked = self.audio, self.audio_valid
        else:
            features, marked = self.visual, self.visual_valid
        if features is None or len(features) == 0:
            return features, None
        if marked is None:
            return features, np.ones(len(features), dtype=bool)
        valid = np.asarray(marked, dtype=bool)
        return features, valid if valid.any() else None

    def features(self, modality: Modality) -> FloatArray | None:
        return self.frames(modality)[0]

    def valid_frames(self, modality: Modality) -> BoolArray | None:
        """Mask of real frames, or None when the clip lacks the modality (or has no valid frame)."""
        return self.frames(modality)[1]

    def has(self, modality: Modality) -> bool:
        if modality in self.stored:  # the index knows: nothing is read
            return self.stored[modality].has_valid
        return self.valid_frames(modality) is not None

    def frame_count(self, modality: Modality) -> int:
        if modality in self.stored:
            return self.stored[modality].frames
        features = self.audio if modality == "audio" else self.visual
        return 0 if features is None else len(features)

    def length(self) -> int:
        """Frames over both modalities: the cost that length bucketing balances."""
        return sum(self.frame_count(modality) for modality in MODALITIES)

    def loaded(self) -> Item:
        """This item with its features in memory (read from the store where they were left)."""
        if not self.stored:
            return self
        audio, visual = self.frames("audio"), self.frames("visual")
        return replace(
            self,
            audio=audio[0],
            audio_valid=audio[1] if audio[1] is not None else _none_valid(audio[0]),
            visual=visual[0],
            visual_valid=visual[1] if visual[1] is not None else _none_valid(visual[0]),
            stored={},
        )

    def with_modality_of(self, other: Item, modality: Modality) -> Item:
        """This item with ``other``'s ``modality`` (a pair of two clips)."""
        stored = {m: s for m, s in self.stored.items() if m != modality}
        if modality in other.stored:
            stored[modality] = other.stored[modality]
        if modality == "audio":
            return replace(self, audio=other.audio, audio_valid=other.audio_valid, stored=stored)
        return replace(self, visual=other.visual, visual_valid=other.visual_valid, stored=stored)


def fit_normalizer(items: Sequence[Item], features: FeaturesConfig) -> FeatureNormalizer:
    """The training statistics of ``items`` (global, and per source with ``normalise:
    source``): one streaming pass over their frames, or, for items left in a store, the
    statistics an earlier run computed over the very same entries (kept in the store's index)."""

    ordered = sorted(items, key=lambda item: item.id)  # the sums' order: the cache's

    def fit() -> FeatureNormalizer:
        fitted = FeatureNormalizer.fit(ordered, features.standardise)
        return fitted.for_items(ordered, features.normalise)

    path = statistics_path(items, features)
    if path is None:
        return fit()
    try:
        return FeatureNormalizer.from_state_dict(torch.load(path, weights_only=True))
    except FileNotFoundError:
        pass
    except Exception:  # a damaged cache: compute it again
        logger.warning("%s: unreadable statistics, computed again", path)
    normalizer = fit()
    write_atomically(path, lambda handle: torch.save(normalizer.state_dict(), handle))
    return normalizer


def statistics_path(items: Sequence[Item], features: FeaturesConfig) -> Path | None:
    """Where a store keeps the statistics of exactly these items' entries (None: some features
    are in memory, or in several stores)."""
    roots = {stored.store for item in items for stored in item.stored.values()}
    if len(roots) != 1 or any(item.audio is not None or item.visual is not None for item in items):
        return None
    digest = hashlib.sha256(f"{features.standardise}|{features.normalise}".encode())
    for item in sorted(items, key=lambda item: item.id):
        digest.update(f"\n{item.metadata.get(SOURCE)}".encode())
        for modality, stored in sorted(item.stored.items()):
            digest.update(f"|{modality}:{stored.key}:{stored.entry}:{stored.max_seconds}".encode())
    return Path(roots.pop()) / INDEX_FOLDER / f"statistics-{digest.hexdigest()[:32]}.pt"


def _none_valid(features: FloatArray | None) -> BoolArray | None:
    """The mask of features with no real frame (all False), or None without features."""
    return None if features is None else np.zeros(len(features), dtype=bool)


def _check_item(item: Item, config: ExperimentConfig, labelled: bool) -> str | None:
    """What is wrong with one item, or None."""
    if not any(item.has(modality) for modality in MODALITIES):
        return "has neither audio nor visual features"
    for modality in MODALITIES:
        if modality in item.stored:
            problem = _check_stored(item.stored[modality], config.model.dim(modality), modality)
            if problem:
                return problem
            continue
        features = item.features(modality)
        if features is None:
            continue
        expected = config.model.dim(modality)
        if features.ndim != 2:
            return f"{modality} features must be (frames, dim), got shape {features.shape}"
        if features.shape[1] != expected:
            return _wrong_size(features.shape[1], expected, modality)
        valid = item.valid_frames(modality)
        if valid is not None and len(valid) != len(features):
            return f"has {len(features)} {modality} frames but a mask of {len(valid)}"
        if valid is not None and not np.isfinite(features[valid]).all():
            return f"has NaN or infinite {modality} features"
    if not labelled:
        return None
    task = config.task
    if task.kind != "classification":
        if item.attributes is None or np.shape(item.attributes) != (task.output_dim,):
            return f"needs {task.output_dim} attribute values ({', '.join(task.labels)})"
        if task.kind == "multilabel" and (np.asarray(item.attributes) < 0).any():
            return f"has a negative intensity ({', '.join(task.labels)} must be 0 or more)"
        return None
    if item.label is None or not 0 <= item.label < task.output_dim:
        return f"has label {item.label!r}; expected a class index below {task.output_dim}"
    if item.soft_label is not None and np.shape(item.soft_label) != (task.output_dim,):
        return f"has {np.size(item.soft_label)} soft-label values for {task.output_dim} classes"
    return None


def _wrong_size(found: int, expected: int, modality: Modality) -> str:
    return (
        f"has {found}-d {modality} features but model.{modality}_dim is {expected}; set "
        f"model.{modality}_dim: {found} or use the extractor the model was built for"
    )


def _check_stored(stored: StoredModality, expected: int, modality: Modality) -> str | None:
    """What is wrong with a modality left in the store, from the index alone."""
    if stored.frames and stored.dim != expected:
        return _wrong_size(stored.dim, expected, modality)
    if not stored.finite:
        return f"has NaN or infinite {modality} features"
    return None


def check_items(
    items: Sequence[Item], config: ExperimentConfig, name: str, labelled: bool = True
) -> None:
    """Raise a one-line :class:`DataError` for the first item that does not fit the config."""
    if not items:
        raise DataError(f"the {name} is empty")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DataError(f"{name}: clip id '{item.id}' appears twice")
        seen.add(item.id)
        problem = _check_item(item, config, labelled)
        if problem:
            raise DataError(f"{name}: clip '{item.id}' {problem}")


class ItemDataset(Dataset[Item]):
    def __init__(self, items: Sequence[Item]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]


@dataclass
class Batch:
    """Padded features (batch, time, dim), masks (batch, time) and targets of a set of clips."""

    ids: list[str]
    audio: Tensor | None = None
    audio_mask: Tensor | None = None
    visual: Tensor | None = None
    visual_mask: Tensor | None = None
    target: Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def modality(self, modality: Modality) -> tuple[Tensor | None, Tensor | None]:
        """One modality's features and mask (None when no clip of the batch has it)."""
        if modality == "audio":
            return self.audio, self.audio_mask
        return self.visual, self.visual_mask

    def set_modality(self, modality: Modality, features: Tensor, mask: Tensor) -> None:
        """Give the batch ``modality``'s padded features and their mask."""
        if modality == "audio":
            self.audio, self.audio_mask = features, mask
        else:
            self.visual, self.visual_mask = features, mask

    def present(self, modality: Modality) -> Tensor:
        _, mask = self.modality(modality)
        if mask is None:
            return torch.zeros(len(self.ids), dtype=torch.bool)
        return mask.any(dim=1)

    def inputs(self) -> dict[str, Tensor | None]:
        """Keyword arguments for a model's forward."""
        return {
            "audio": self.audio,
            "audio_mask": self.audio_mask,
            "visual": self.visual,
            "visual_mask": self.visual_mask,
        }

    def to(self, device: torch.device) -> Batch:
        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return replace(
            self,
            audio=move(self.audio),
            audio_mask=move(self.audio_mask),
            visual=move(self.visual),
            visual_mask=move(self.visual_mask),
            target=move(self.target),
        )

    def select(self, rows: Tensor, modalities: Sequence[Modality] = MODALITIES) -> Batch:
        """The clips in ``rows`` with only ``modalities``, trimmed to their longest clip."""
        index = rows.nonzero().squeeze(-1) if rows.dtype == torch.bool else rows
        subset = Batch(ids=[self.ids[i] for i in index.tolist()])
        for modality in modalities:
            features, mask = self.modality(modality)
            if features is None or mask is None:
                continue
            features, mask = trim_to_valid(features[index], mask[index])
            subset.set_modality(modality, features, mask)
        subset.target = None if self.target is None else self.target[index]
        return subset


class Collator:
    """Turns a list of items into a :class:`Batch`, normalising features on the way."""

    def __init__(self, task: TaskConfig, normalizer: FeatureNormalizer | None = None) -> None:
        self.task = task
        self.normalizer = normalizer

    def __call__(self, items: Sequence[Item]) -> Batch:
        items = [item.loaded() for item in items]  # each stored entry read once
        batch = Batch(ids=[item.id for item in items])
        for modality in MODALITIES:
            valid = [item.valid_frames(modality) for item in items]
            if all(v is None for v in valid):
                continue
            dim = next(f.shape[1] for item in items if (f := item.features(modality)) is not None)
            length = max(len(v) for v in valid if v is not None)
            features = np.zeros((len(items), length, dim), dtype=np.float32)
            mask = np.zeros((len(items), length), dtype=bool)
            for row, (item, frames_valid) in enumerate(zip(items, valid, strict=True)):
                raw = item.features(modality)
                if frames_valid is None or raw is None:
                    continue
                if self.normalizer is not None:
                    raw = self.normalizer.apply(modality, raw, source_of(item, modality))
                features[row, : len(raw)] = np.where(frames_valid[:, None], raw, 0.0)
                mask[row, : len(raw)] = frames_valid
            batch.set_modality(modality, torch.from_numpy(features), torch.from_numpy(mask))
        batch.target = self.targets(items)
        return batch

    def targets(self, items: Sequence[Item]) -> Tensor | None:
        if self.task.kind != "classification":
            values = [item.attributes for item in items]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise DataError("a batch mixes clips with and without attribute values")
            stacked = torch.tensor(np.stack(values), dtype=torch.float32)  # type: ignore[arg-type]
            return stacked if self.task.kind == "regression" else self.multilabel_targets(stacked)
        labels = [item.label for item in items]
        if all(label is None for label in labels):
            return None
        if any(label is None for label in labels):
            raise DataError("a batch mixes clips with and without labels")
        if not self.task.soft_labels:
            return torch.tensor(labels, dtype=torch.long)
        soft = np.zeros((len(items), self.task.output_dim), dtype=np.float32)
        for row, item in enumerate(items):
            if item.soft_label is not None:
                soft[row] = item.soft_label
            else:
                soft[row, int(item.label)] = 1.0  # type: ignore[arg-type]
        return torch.from_numpy(soft)

    def multilabel_targets(self, intensities: Tensor) -> Tensor:
        """Presence (1 where a label's intensity is above 0), or the intensity scaled into
        [0, 1] by ``task.intensity_scale``."""
        scale = self.task.intensity_scale
        if scale is None:
            return (intensities > 0).float()
        return (intensities / scale).clamp(0.0, 1.0)
