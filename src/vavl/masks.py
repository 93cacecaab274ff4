"""Padding masks of batched frame sequences (True on real frames), shared by the batches and
the models."""

from __future__ import annotations

import torch
from torch import Tensor


def full_mask(features: Tensor) -> Tensor:
    """Every frame real: the mask of (batch, time, dim) features given without one."""
    return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)


def trim_to_valid(features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop trailing time steps that no row of the batch uses (keeps at least one)."""
    frames_used = mask.any(dim=0).nonzero()
    length = int(frames_used.max()) + 1 if len(frames_used) else 1
    return features[:, :length], mask[:, :length]
