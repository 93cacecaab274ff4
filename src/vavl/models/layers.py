"""Small building blocks shared by the models: masked pooling and MLP heads."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from vavl import distributed


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
    outputs = features.new_full((features.shape[0], output_dim), fill)
    if bool(present.any()) or (training and distributed.active()):
        outputs[present] = network(*trim_to_valid(features[present], mask[present]))
    return outputs, present


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
