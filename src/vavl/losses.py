"""Training losses: cross-entropy (hard or soft labels), binary cross-entropy (labels present),
CCC, masked reconstruction MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vavl.models.layers import masked_mean


def classification_loss(
    logits: Tensor, target: Tensor, class_weights: Tensor | None = None
) -> Tensor:
    """Cross-entropy against class indices (batch,) or class proportions (batch, classes).

    With ``class_weights`` and hard labels this is the weighted mean over clips, as in
    ``torch.nn.functional.cross_entropy``.
    """
    if target.is_floating_point():
        target = target / target.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return F.cross_entropy(logits.float(), target, weight=class_weights)


def concordance_correlation(prediction: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Lin's concordance correlation coefficient per column of (batch, attributes) tensors."""
    prediction, target = prediction.float(), target.float()
    prediction_mean, target_mean = prediction.mean(dim=0), target.mean(dim=0)
    prediction_var = prediction.var(dim=0, unbiased=False)
    target_var = target.var(dim=0, unbiased=False)
    covariance = ((prediction - prediction_mean) * (target - target_mean)).mean(dim=0)
    return (
        2 * covariance / (prediction_var + target_var + (prediction_mean - target_mean) ** 2 + eps)
    )


def ccc_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Sum over attributes of (1 - CCC): 0 for perfect agreement, the paper's regression loss."""
    return (1.0 - concordance_correlation(prediction, target)).sum()


def reconstruction_loss(reconstruction: Tensor, features: Tensor, mask: Tensor) -> Tensor:
    """MSE between a reconstruction and the mean of the input frames that are real (not padding)."""
    target = masked_mean(features.float(), mask)
    return F.mse_loss(reconstruction.float(), target)


def task_loss(
    kind: str, prediction: Tensor, target: Tensor, class_weights: Tensor | None = None
) -> Tensor:
    """The loss of one path: cross-entropy for classification, binary cross-entropy per label
    (presence or scaled intensity targets in [0, 1]) for multilabel, sum of (1 - CCC) for
    regression."""
    if kind == "classification":
        return classification_loss(prediction, target, class_weights)
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(prediction.float(), target.float())
    return ccc_loss(prediction, target)


def balanced_class_weights(labels: Tensor, n_classes: int, power: float = 1.0) -> Tensor:
    """(n / (classes * count_c)) ** power, the usual inverse-frequency weights (``power`` 0.5
    dampens them); absent classes get 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = (len(labels) / (n_classes * counts.clamp_min(1.0))) ** power
    return torch.where(counts > 0, weights, torch.zeros_like(weights))
