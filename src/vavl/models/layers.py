"""Small building blocks shared by the models: masked pooling and MLP heads."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from vavl import distributed
from vavl.masks import trim_to_valid


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of ``x`` (batch, time, dim) using only frames where ``mask`` is True.

    A row without any valid frame gives zeros rather than NaN.
    """
    weights = mask.unsqueeze(-1).to(x.dtype)
    count = weights.sum(dim=1).clamp_min(1.0)
    return (x * weights).sum(dim=1) / count


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """(length, dim) sinusoidal encodings of the positions 0 ... length - 1."""
    positions = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequencies = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    encoding = torch.zeros(length, dim, device=device)
    encoding[:, 0::2] = torch.sin(positions * frequencies)
    encoding[:, 1::2] = torch.cos(positions * frequencies)[:, : dim // 2]
    return encoding


def run_on_present(
    network: Callable[[Tensor, Tensor], Tensor],
    features: Tensor,
    mask: Tensor,
    output_dim: int,
    fill: float,
    training: bool,
) -> tuple[Tensor, Tensor]:
    """``network`` on the clips whose mask has a real frame, trimmed to them; ``fill`` in the
    rows of the others. Returns the outputs and which rows are real.

    In training under torch.distributed it runs even when no clip here has a real frame (on zero
    rows): batch norm sums its statistics over the processes, and every process must take part.
    """
    present = mask.any(dim=1)
    if bool(present.all()):
        return network(features, mask), present
    if bool(present.any()) or (training and distributed.active()):
        computed = network(*trim_to_valid(features[present], mask[present]))
        # In the network's dtype: under autocast it computes in a lower precision.
        outputs = computed.new_full((features.shape[0], output_dim), fill)
        outputs[present] = computed
        return outputs, present
    return features.new_full((features.shape[0], output_dim), fill), present


class ColumnPrior(nn.Module):
    """Logits read from the input: each output's clip mean of one feature column (a pretrained
    classifier's log-probability of that class, standardised with the other features, which
    shifts and scales each class's column by its own statistics), times a learnt scale that
    starts at 1."""

    def __init__(self, columns: Sequence[int]) -> None:
        super().__init__()
        self.columns: Tensor
        self.register_buffer("columns", torch.tensor(list(columns)), persistent=False)
        self.scale = nn.Parameter(torch.ones(len(columns)))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        return masked_mean(features[..., self.columns], mask) * self.scale


class MLP(nn.Module):
    """Linear layers with ReLU and dropout between them; the last layer is linear."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        dropout: float,
        final_activation: bool = True,
    ) -> None:
        """``final_activation=False`` leaves out the ReLU and dropout after the last hidden layer
        (two linear layers in a row: the VAVL reference's heads)."""
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_dim
        for index, width in enumerate(hidden):
            layers.append(nn.Linear(previous, width))
            if final_activation or index < len(hidden) - 1:
                layers += [nn.ReLU(), nn.Dropout(dropout)]
            previous = width
        layers.append(nn.Linear(previous, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
