"""Training-time augmentation of padded batches, done on the masks: frames are taken away, never
altered, so that padding rules (attention, pooling, reconstruction targets) keep holding.

- random crop: each clip keeps a random contiguous stretch of its frames (at least
  ``crop_min_share`` of its span), as if it had been cut differently;
- frame dropout: each remaining frame is masked with probability ``frame_dropout``.

A clip always keeps at least one real frame. Draws come from torch's global random state, which
checkpoints save, so a resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from vavl.config import TrainingConfig
from vavl.data import Batch
from vavl.types import MODALITIES


def random_crop(mask: Tensor, min_share: float) -> Tensor:
    """Each row of ``mask`` (batch, time) cut to a random window of at least ``min_share`` of
    the span between its first and last real frame."""
    if min_share >= 1.0:
        return mask
    frames = torch.arange(mask.shape[1], device=mask.device)
    present = mask.any(dim=1)
    first = torch.where(mask, frames, mask.shape[1]).amin(dim=1)
    last = torch.where(mask, frames, -1).amax(dim=1)
    span = (last - first + 1).clamp_min(1).float()
    share = min_share + (1.0 - min_share) * torch.rand(len(mask), device=mask.device)
    length = (span * share).ceil().clamp_min(1)
    start = first + ((span - length + 1) * torch.rand(len(mask), device=mask.device)).floor().long()
    window = (frames >= start[:, None]) & (frames < (start + length.long())[:, None])
    cropped = mask & window
    # Gaps in a face track can leave a window without a real frame: keep such clips whole.
    keep = cropped.any(dim=1) | ~present
    return torch.where(keep[:, None], cropped, mask)


def frame_dropout(mask: Tensor, probability: float) -> Tensor:
    """``mask`` with each real frame dropped with ``probability`` (a clip keeps at least one)."""
    if probability <= 0.0:
        return mask
    dropped = mask & (torch.rand(mask.shape, device=mask.device) >= probability)
    return torch.where((dropped.any(dim=1) | ~mask.any(dim=1))[:, None], dropped, mask)


def augment(batch: Batch, training: TrainingConfig) -> Batch:
    """``batch`` with the configured random crops and frame dropout applied to its masks."""
    if training.crop_min_share >= 1.0 and training.frame_dropout <= 0.0:
        return batch
    masks = {}
    for modality in MODALITIES:
        _, mask = batch.modality(modality)
        if mask is not None:
            mask = frame_dropout(random_crop(mask, training.crop_min_share), training.frame_dropout)
        masks[modality] = mask
    return replace(batch, audio_mask=masks["audio"], visual_mask=masks["visual"])
