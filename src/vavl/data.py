"""Items -> padded batches with masks: the data interface every model and recipe reads.

An :class:`Item` is one clip: its id, speaker, split, label, and frame-level features for each
modality it has (None when missing). Batches pad each modality to the longest clip that has it,
with boolean masks True on real frames (a clip that lacks a modality: an all-False row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from vavl.config import ExperimentConfig, TaskConfig
from vavl.errors import DataError
from vavl.features.records import FileFeatures, ModalityFeatures
from vavl.masks import trim_to_valid
from vavl.normalization import FeatureNormalizer, source_of
from vavl.types import MODALITIES, Modality

FloatArray = NDArray[np.float32]


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

    def features(self, modality: Modality) -> FloatArray | None:
        return self.audio if modality == "audio" else self.visual

    def valid_frames(self, modality: Modality) -> NDArray[np.bool_] | None:
        """Mask of real frames, or None when the clip lacks the modality (or has no valid frame)."""
        features = self.features(modality)
        if features is None or len(features) == 0:
            return None
        marked = self.audio_valid if modality == "audio" else self.visual_valid
        if marked is None:
            return np.ones(len(features), dtype=bool)
        valid = np.asarray(marked, dtype=bool)
        return valid if valid.any() else None

    def has(self, modality: Modality) -> bool:
        return self.valid_frames(modality) is not None

    def length(self) -> int:
        """Frames over both modalities: the cost that length bucketing balances."""
        return sum(len(f) for f in (self.audio, self.visual) if f is not None)


def _check_item(item: Item, config: ExperimentConfig, labelled: bool) -> str | None:
    """What is wrong with one item, or None."""
    if not any(item.has(modality) for modality in MODALITIES):
        return "has neither audio nor visual features"
    for modality in MODALITIES:
        features = item.features(modality)
        if features is None:
            continue
        expected = config.model.dim(modality)
        if features.ndim != 2:
            return f"{modality} features must be (frames, dim), got shape {features.shape}"
        if features.shape[1] != expected:
            return (
                f"has {features.shape[1]}-d {modality} features but model.{modality}_dim is "
                f"{expected}; set model.{modality}_dim: {features.shape[1]} or use the extractor "
                "the model was built for"
            )
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
