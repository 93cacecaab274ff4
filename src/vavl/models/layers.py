"""Small building blocks shared by the models: masked pooling and MLP heads."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of ``x`` (batch, time, dim) using only frames where ``mask`` is True.

    A row without any valid frame gives zeros rather than NaN.
    """
    weights = mask.unsqueeze(-1).to(x.dtype)
    count = weights.sum(dim=1).clamp_min(1.0)
    return (x * weights).sum(dim=1) / count


def trim_to_valid(features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop trailing time steps that no row of the batch uses (keeps at least one)."""
    frames_used = mask.any(dim=0).nonzero()
    length = int(frames_used.max()) + 1 if len(frames_used) else 1
    return features[:, :length], mask[:, :length]


class MLP(nn.Module):
    """Linear layers with ReLU and dropout between them; the last layer is linear."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_dim
        for width in hidden:
            layers += [nn.Linear(previous, width), nn.ReLU(), nn.Dropout(dropout)]
            previous = width
        layers.append(nn.Linear(previous, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
