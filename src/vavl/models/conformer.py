"""A Conformer encoder (Gulati et al., 2020) that respects padding masks everywhere.

Tensors are (batch, time, dim) and masks are (batch, time) booleans, True for real frames.
Padded frames never reach a real frame: attention ignores them as keys, the depthwise convolution
sees zeros in their place (as it would past the end of an unpadded clip), and batch statistics are
taken over real frames only. A clip therefore gets the same output alone or inside a padded batch.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vavl import distributed
from vavl.models.layers import sinusoidal_positions


def relative_position_encoding(length: int, dim: int, device: torch.device) -> Tensor:
    """Sinusoidal encodings of the relative distances ``length-1 ... -(length-1)``.

    Returns (2 * length - 1, dim); row ``r`` encodes the distance ``length - 1 - r``.
    """
    distances = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    frequencies = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    angles = distances[:, None] * frequencies[None, :]
    encoding = torch.zeros(2 * length - 1, dim, device=device)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return encoding


AttentionScale = Literal["head", "model"]
RelativePositions = Literal["exact", "reference"]
LinearInit = Literal["pytorch", "xavier"]


def position_table(style: RelativePositions, length: int, dim: int, device: torch.device) -> Tensor:
    """What the attention's position scores are computed against: the encodings of every
    distance (``exact``), or of the positions 0 ... length - 1 (``reference``, shifted)."""
    if style == "exact":
        return relative_position_encoding(length, dim, device)
    return sinusoidal_positions(length, dim, device)


def reference_shift(scores: Tensor) -> Tensor:
    """The VAVL reference's relative shift of (..., T, T) scores against T ascending positions:
    pad a zero column, fold, drop a row. With T positions (not 2T - 1) it is exact only for
    keys at or before the query, and then length-dependent; a key one step ahead gets 0 and
    later keys read the next query's row. Kept to reproduce the reference."""
    *lead, rows, columns = scores.shape
    padded = torch.cat([scores.new_zeros(*lead, rows, 1), scores], dim=-1)
    return padded.view(*lead, columns + 1, rows)[..., 1:, :].reshape(*lead, rows, columns)


class RelativeMultiHeadAttention(nn.Module):
    """Self-attention with Transformer-XL relative positions (content and position biases).

    ``scale="head"`` divides the scores by the square root of the head size (as in the
    Transformer); ``"model"`` by that of the model size (the VAVL reference). ``positions``:
    exact relative distances, or the reference's shifted ascending positions."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        scale: AttentionScale = "head",
        positions: RelativePositions = "exact",
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = math.sqrt(self.head_dim if scale == "head" else dim)
        self.positions = positions
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.position = nn.Linear(dim, dim, bias=False)
        self.content_bias = nn.Parameter(torch.empty(heads, self.head_dim))
        self.position_bias = nn.Parameter(torch.empty(heads, self.head_dim))
        nn.init.xavier_uniform_(self.content_bias)
        nn.init.xavier_uniform_(self.position_bias)
        self.output = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def scores(self, x: Tensor, positions: Tensor) -> Tensor:
        """Scaled attention scores (batch, heads, time, time): content plus position terms."""
        batch, time, _ = x.shape
        query = self.query(x).view(batch, time, self.heads, self.head_dim)
        key = self.key(x).view(batch, time, self.heads, self.head_dim).transpose(1, 2)
        position = self.position(positions).view(-1, self.heads, self.head_dim).permute(1, 2, 0)
        content_scores = torch.matmul(
            (query + self.content_bias).transpose(1, 2), key.transpose(-2, -1)
        )
        position_scores = torch.matmul((query + self.position_bias).transpose(1, 2), position)
        if self.positions == "exact":
            # Row i covers distances time-1 ... -(time-1); pick distance i - j.
            steps = torch.arange(time, device=x.device)
            index = (time - 1) - steps[:, None] + steps[None, :]
            position_scores = position_scores.gather(
                -1, index.expand(batch, self.heads, time, time)
            )
        else:
            position_scores = reference_shift(position_scores)
        return (content_scores + position_scores) / self.scale

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        batch, time, dim = x.shape
        value = self.value(x).view(batch, time, self.heads, self.head_dim).transpose(1, 2)
        scores = self.scores(x, positions)
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        attended = torch.matmul(weights, value).transpose(1, 2).reshape(batch, time, dim)
        return self.output(attended)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over (batch, channels, time) whose training statistics skip padded frames.

    Under torch.distributed, the statistics are those of the whole batch across processes (with
    gradients flowing through them, as SyncBatchNorm), so that N processes on N shares of a batch
    compute what one process computes on the whole batch.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if not self.training or mask is None:
            return super().forward(x)
        values = x.float()
        valid = mask[:, None, :].to(values.dtype)
        mean, variance, count = distributed.masked_moments(values, valid)
        if count < 2:
            # Too few frames for batch statistics: normalise with the running ones.
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if self.running_mean is not None and self.running_var is not None:
            momentum = self.momentum if self.momentum is not None else 0.1
            with torch.no_grad():
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(variance * count / (count - 1), momentum)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked += 1
        normalised = (values - mean[None, :, None]) / torch.sqrt(variance[None, :, None] + self.eps)
        if self.affine:
            normalised = normalised * self.weight[None, :, None] + self.bias[None, :, None]
        return normalised.to(x.dtype)


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, masked depthwise conv, batch norm, swish, pointwise conv."""

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, kernel_size=1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.batch_norm = MaskedBatchNorm1d(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        y = self.depthwise(y.masked_fill(~mask[:, None, :], 0.0))
        y = self.pointwise_out(F.silu(self.batch_norm(y, mask)))
        return self.dropout(y.transpose(1, 2))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, expansion: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * expansion),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(dim * expansion, dim),
            nn.Dropout(dropout),
        )


class ConformerBlock(nn.Module):
    """Half-step feed-forward, relative self-attention, convolution, half-step FF, norm."""

    def __init__(
        self,
        dim: int,
        heads: int,
        kernel_size: int,
        ff_expansion: int,
        dropout: float,
        scale: AttentionScale = "head",
        positions: RelativePositions = "exact",
    ) -> None:
        super().__init__()
        self.feed_forward_in = FeedForward(dim, ff_expansion, dropout)
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = RelativeMultiHeadAttention(dim, heads, dropout, scale, positions)
        self.attention_dropout = nn.Dropout(dropout)
        self.convolution = ConvolutionModule(dim, kernel_size, dropout)
        self.feed_forward_out = FeedForward(dim, ff_expansion, dropout)
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        x = x + 0.5 * self.feed_forward_in(x)
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), mask, positions))
        x = x + self.convolution(x, mask)
        x = x + 0.5 * self.feed_forward_out(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """Linear input projection (+ dropout) followed by Conformer blocks; no time subsampling."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        blocks: int,
        heads: int,
        kernel_size: int,
        ff_expansion: int,
        dropout: float,
        scale: AttentionScale = "head",
        positions: RelativePositions = "exact",
        linear_init: LinearInit = "pytorch",
        depthwise_bias: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.positions = positions
        self.input = nn.Sequential(nn.Linear(in_dim, dim), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, kernel_size, ff_expansion, dropout, scale, positions)
            for _ in range(blocks)
        )
        if not depthwise_bias:  # the reference's layout: batch norm follows, a bias adds nothing
            for layer in self.modules():
                if isinstance(layer, ConvolutionModule):
                    layer.depthwise.register_parameter("bias", None)
        if linear_init == "xavier":  # the reference's Linear: Xavier-uniform weights, zero bias
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Encode (batch, time, in_dim) to (batch, time, dim); padded frames come out as zeros."""
        x = self.input(x)
        positions = position_table(self.positions, x.shape[1], self.dim, x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, mask, positions)
        return x.masked_fill(~mask[..., None], 0.0)
