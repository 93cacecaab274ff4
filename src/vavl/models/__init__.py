"""Models: tensors and masks in, predictions per path out. Nothing here reads files."""

from __future__ import annotations

import torch

from vavl.config import ModelConfig
from vavl.models.auxformer import AuxFormer, MulT
from vavl.models.base import EmotionModel, ModelOutput
from vavl.models.baselines import EarlyFusion, LateFusion, UnimodalConformers
from vavl.models.ensemble import Ensemble
from vavl.models.vavl import VAVL

MODELS: dict[str, type[EmotionModel]] = {
    "vavl": VAVL,
    "auxformer": AuxFormer,
    "mult": MulT,
    "unimodal": UnimodalConformers,
    "late-fusion": LateFusion,
    "early-fusion": EarlyFusion,
}


def build_model(config: ModelConfig, output_dim: int) -> EmotionModel:
    """Instantiate the model named by ``config.name`` with ``output_dim`` outputs per path."""
    return MODELS[config.name](config, output_dim)


def parameter_count(config: ModelConfig, output_dim: int) -> int:
    """How many values the model has, counted without allocating them (PyTorch's meta device)."""
    with torch.device("meta"):
        model = build_model(config, output_dim)
    return sum(parameter.numel() for parameter in model.parameters())


__all__ = [
    "MODELS",
    "VAVL",
    "AuxFormer",
    "EarlyFusion",
    "EmotionModel",
    "Ensemble",
    "LateFusion",
    "ModelOutput",
    "MulT",
    "UnimodalConformers",
    "build_model",
]
