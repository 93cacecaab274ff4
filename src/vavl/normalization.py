"""Feature normalisation: each modality's per-dimension mean and standard deviation.

The statistics are the training frames' (global), or, with ``features.normalise: source``, each
source's own: every training corpus is standardised by its own statistics, and so is any set of
clips predicted together (a corpus, a folder: :meth:`FeatureNormalizer.with_sources`). What
tells one corpus from another (its room, its microphones, its speakers, its language) then
weighs less than what tells one emotion from another. A clip with no source around it (one
file predicted alone) is standardised by the global statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from vavl.types import MODALITIES, Modality

FloatArray = NDArray[np.float32]


class Item(Protocol):
    """What the statistics read of a clip (:class:`vavl.data.Item` has it)."""

    metadata: dict[str, Any]

    def frames(self, modality: Modality) -> tuple[FloatArray | None, NDArray[np.bool_] | None]: ...


SOURCE = "corpus"  # the item metadata naming where a clip comes from


def source_of(item: Item, modality: Modality) -> str | None:
    """Where ``item``'s ``modality`` comes from (a pair of two clips has two sources)."""
    value = item.metadata.get(f"{modality}_{SOURCE}", item.metadata.get(SOURCE))
    return None if value is None else str(value)


Statistics = tuple[dict[str, FloatArray], dict[str, FloatArray]]  # (mean, std) per modality


def _statistics(items: Sequence[Item], modalities: Sequence[Modality] = MODALITIES) -> Statistics:
    """Each of ``modalities``' mean and standard deviation over the items' real frames."""
    mean: dict[str, FloatArray] = {}
    std: dict[str, FloatArray] = {}
    for modality in modalities:
        total: NDArray[np.float64] | None = None
        squares: NDArray[np.float64] | None = None
        count = 0
        for item in items:  # one at a time: items left in the store are read and let go
            features, valid = item.frames(modality)
            if valid is None or features is None:
                continue
            frames = features[valid].astype(np.float64)
            total = frames.sum(0) if total is None else total + frames.sum(0)
            squares = (frames**2).sum(0) if squares is None else squares + (frames**2).sum(0)
            count += len(frames)
        if total is None or squares is None:
            continue
        average = total / count
        spread = np.sqrt(np.maximum(squares / count - average**2, 0.0))
        mean[modality] = average.astype(np.float32)
        # A constant dimension carries nothing; leave it centred but unscaled.
        std[modality] = np.where(spread > 1e-6, spread, 1.0).astype(np.float32)
    return mean, std


@dataclass
class FeatureNormalizer:
    """Global statistics over real training frames, and the sources' own (when known), of the
    modalities it standardises (the others pass as they are)."""

    mean: dict[str, FloatArray] = field(default_factory=dict)
    std: dict[str, FloatArray] = field(default_factory=dict)
    sources: dict[str, Statistics] = field(default_factory=dict)
    modalities: tuple[Modality, ...] = MODALITIES

    @classmethod
    def fit(
        cls, items: Sequence[Item], modalities: Sequence[Modality] = MODALITIES
    ) -> FeatureNormalizer:
        mean, std = _statistics(items, modalities)
        return cls(mean, std, modalities=tuple(modalities))

    def with_sources(self, items: Sequence[Item], minimum: int = 1) -> FeatureNormalizer:
        """A copy that also knows the statistics of every source of ``items`` it did not know
        (a source with fewer than ``minimum`` clips there keeps the global ones)."""
        groups: dict[str, list[Item]] = {}
        for item in items:
            source = item.metadata.get(SOURCE)
            if source is not None and source not in self.sources:
                groups.setdefault(str(source), []).append(item)
        found = {
            name: _statistics(group, self.modalities)
            for name, group in groups.items()
            if len(group) >= minimum
        }
        return replace(self, sources={**self.sources, **found})

    def apply(
        self, modality: Modality, features: FloatArray, source: str | None = None
    ) -> FloatArray:
        """``features`` standardised by ``source``'s statistics when known (and it has this
        modality), else by the global ones."""
        mean, std = self.sources.get(source or "", (self.mean, self.std))
        if modality not in mean:
            mean, std = self.mean, self.std
        if modality not in mean:
            return features
        return (features - mean[modality]) / std[modality]

    def for_items(self, items: Sequence[Item], normalise: str) -> FeatureNormalizer:
        """What ``items`` are standardised with: with ``normalise`` 'source', each of their
        sources' own statistics (the known ones kept), otherwise the global ones."""
        return self.with_sources(items) if normalise == "source" else self

    def state_dict(self) -> dict[str, Any]:
        def tensors(values: dict[str, FloatArray]) -> dict[str, Tensor]:
            return {k: torch.from_numpy(v) for k, v in values.items()}

        return {
            "modalities": list(self.modalities),
            "mean": tensors(self.mean),
            "std": tensors(self.std),
            "sources": {
                name: {"mean": tensors(mean), "std": tensors(std)}
                for name, (mean, std) in self.sources.items()
            },
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureNormalizer:
        def arrays(values: dict[str, Tensor]) -> dict[str, FloatArray]:
            return {k: v.numpy().astype(np.float32) for k, v in values.items()}

        return cls(
            mean=arrays(state["mean"]),
            std=arrays(state["std"]),
            sources={
                name: (arrays(saved["mean"]), arrays(saved["std"]))
                for name, saved in state.get("sources", {}).items()
            },
            modalities=tuple(state.get("modalities", MODALITIES)),
        )
