"""The interface every emotion model implements: features and masks in, one output per path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from vavl.config import ModelConfig
from vavl.masks import full_mask
from vavl.types import Modality, PathName


@dataclass
class ModelOutput:
    """What a forward pass computed for a batch of B clips.

    ``predictions[path]`` is (B, outputs): logits for classes or values for attributes. Only the
    paths the inputs allow are present, and ``present[path]`` (B,) tells which clips fed the path;
    rows of clips that could not feed it are NaN, so using them by mistake is loud.
    """

    predictions: dict[PathName, Tensor] = field(default_factory=dict)
    present: dict[PathName, Tensor] = field(default_factory=dict)
    embeddings: dict[Modality, Tensor] = field(default_factory=dict)
    reconstructions: dict[Modality, Tensor] = field(default_factory=dict)

    def rows(self, path: PathName) -> tuple[Tensor, Tensor]:
        """The predictions of the clips that fed ``path`` and their row indices in the batch."""
        index = self.present[path].nonzero().squeeze(-1)
        return self.predictions[path][index], index


class EmotionModel(nn.Module):
    """Base class: ``forward(audio, audio_mask, visual, visual_mask) -> ModelOutput``.

    ``audio`` is (batch, time, audio_dim) and ``audio_mask`` (batch, time) is True on real frames;
    the same for ``visual``. Either modality may be None, and a row whose mask is all False is a
    clip that lacks that modality.
    """

    config: ModelConfig
    output_dim: int

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
    ) -> ModelOutput:
        raise NotImplementedError


RecipeStep = Literal["audio", "visual", "fusion", "shared"]


@runtime_checkable
class ThreeStepModel(Protocol):
    """What VAVL's three-step recipe and the per-path ONNX export need of a model: one encoder
    per modality to a pooled representation, each modality's prediction and reconstruction
    heads, a fusion of two representations, and the modules each training step updates."""

    def encode(self, modality: Modality, features: Tensor, mask: Tensor) -> Tensor:
        """Pooled representation (batch, dim) of clips that all have ``modality``."""
        ...

    def heads(self, modality: Modality) -> tuple[nn.Module, nn.Module]:
        """The prediction head and the reconstruction head of one modality."""
        ...

    def predict(
        self, modality: Modality, embedding: Tensor, features: Tensor, mask: Tensor
    ) -> Tensor:
        """The ``modality`` path's outputs from its pooled representation and its inputs."""
        ...

    def fuse(self, audio_embedding: Tensor, visual_embedding: Tensor) -> Tensor:
        """The audio-visual output from the two representations."""
        ...

    def step_modules(self, step: RecipeStep) -> list[nn.Module]:
        """The modules a step of the three-step recipe trains (``shared``: those that both
        single-modality steps train)."""
        ...


def given_modalities(
    audio: Tensor | None,
    audio_mask: Tensor | None,
    visual: Tensor | None,
    visual_mask: Tensor | None,
) -> list[tuple[Modality, Tensor, Tensor]]:
    """The modalities a forward call was given, each with its mask (every frame real if none)."""
    inputs: tuple[tuple[Modality, Tensor | None, Tensor | None], ...] = (
        ("audio", audio, audio_mask),
        ("visual", visual, visual_mask),
    )
    return [
        (modality, features, full_mask(features) if mask is None else mask)
        for modality, features, mask in inputs
        if features is not None
    ]


def fill_absent(values: Tensor, present: Tensor) -> Tensor:
    """NaN in the rows of clips that did not feed ``values``."""
    return torch.where(present[:, None], values, torch.full_like(values, float("nan")))
