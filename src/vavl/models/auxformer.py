"""AuxFormer (Goncalves & Busso, ICASSP 2022) and the MulT-style baseline it extends.

Main network: audio and visual features projected to ``model_dim`` (50 in the paper), with
sinusoidal positions; a cross-modal transformer lets audio attend to video and another lets video
attend to audio; each is followed by a self-attention transformer whose residuals are weighted
by a learned scalar (x * alpha + f(x) * (1 - alpha)); the last real frame of each stream is
concatenated and a residual two-layer head gives the audio-visual output.

Auxiliary networks (AuxFormer only): a self-attention transformer per modality (applied
``aux_repeats`` times with the same weights, as the authors' code does: it matters, since one
pass reads the last frame of a barely mixed sequence), then one residual MLP and one output layer
shared by both modalities, give the audio-only and visual-only outputs.
Without them (``mult``), the single-modality paths run the main network with the missing modality
replaced by one frame of zeros, which is how such models are usually evaluated on one modality.

Every attention ignores padded keys and the last *real* frame is read, so a clip's output does not
depend on its batch (the last step of a padded sequence would be padding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vavl.config import ModelConfig
from vavl.models.base import EmotionModel, ModelOutput, fill_absent, given_modalities
from vavl.models.layers import MLP, sinusoidal_positions
from vavl.types import MODALITIES, Modality


def last_real_frame(x: Tensor, mask: Tensor) -> Tensor:
    """(batch, dim): each clip's last frame where ``mask`` is True (the first if none is)."""
    steps = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, steps, torch.zeros_like(steps)).amax(dim=1)
    return x[torch.arange(x.shape[0], device=x.device), last]


def causal_block(mask: Tensor, context_mask: Tensor, heads: int) -> Tensor:
    """(batch * heads, T_q, T_k) True where a query may not look: keys later than the query,
    shifted by the difference of the two streams' real lengths (the reference's future mask,
    per clip so that padding changes nothing)."""
    lengths, context_lengths = mask.sum(dim=1), context_mask.sum(dim=1)
    offset = (context_lengths - lengths).abs()
    queries = torch.arange(mask.shape[1], device=mask.device)
    keys = torch.arange(context_mask.shape[1], device=mask.device)
    blocked = keys[None, None, :] > queries[None, :, None] + offset[:, None, None]
    return blocked.repeat_interleave(heads, dim=0)


class TransformerLayer(nn.Module):
    """Pre-LayerNorm attention (self, or cross to a context) and a x4 feed-forward; with
    ``gated``, residuals weighted by a learned alpha (started at 0.5, or drawn from U(0, 1)).
    A context is normalised by its own LayerNorm, or (``shared_norm``, the reference) by the
    query's; ``attention_dropout`` drops attention weights (None: ``dropout``)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        gated: bool,
        alpha_init: str = "half",
        shared_norm: bool = False,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.context_norm = None if shared_norm else nn.LayerNorm(dim)
        weights_dropout = dropout if attention_dropout is None else attention_dropout
        self.attention = nn.MultiheadAttention(dim, heads, weights_dropout, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, dim),
        )
        self.dropout = nn.Dropout(dropout)
        start = torch.rand(()) if alpha_init == "uniform" else torch.tensor(0.5)
        self.alpha = nn.Parameter(start) if gated else None

    def _residual(self, x: Tensor, update: Tensor) -> Tensor:
        update = self.dropout(update)
        if self.alpha is None:
            return x + update
        return x * self.alpha + update * (1 - self.alpha)

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        blocked: Tensor | None = None,
    ) -> Tensor:
        query = self.norm(x)
        if context is None or context_mask is None:
            keys, key_mask = query, mask
        else:
            norm = self.norm if self.context_norm is None else self.context_norm
            keys, key_mask = norm(context), context_mask
        attended, _ = self.attention(
            query,
            keys,
            keys,
            key_padding_mask=~key_mask,
            attn_mask=blocked,
            need_weights=False,
        )
        x = self._residual(x, attended)
        return self._residual(x, self.feed_forward(x))


class TransformerStack(nn.Module):
    """Transformer layers and a final LayerNorm. With the reference's ``embedding:
    every-stack``, the stack embeds its own inputs (x and the context): scaled by sqrt(dim),
    sinusoidal positions added when ``positions``, embedding dropout."""

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int,
        config: ModelConfig,
        gated: bool,
        positions: bool,
        cross: bool = False,
    ) -> None:
        """``cross``: a cross-modal stack (its layers attend to a context, with the cross-modal
        attention's dropout and normalisation)."""
        super().__init__()
        self.heads = heads
        self.causal = config.causal_mask
        self.embeds = config.embedding == "every-stack"
        self.positions = positions
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        shared_norm = cross and config.context_norm == "query"
        attention_dropout = config.cross_attention_dropout if cross else None
        self.layers = nn.ModuleList(
            TransformerLayer(
                dim, heads, config.dropout, gated, config.alpha_init, shared_norm, attention_dropout
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def _embedded(self, x: Tensor) -> Tensor:
        x = x * math.sqrt(x.shape[-1])
        if self.positions:
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return self.embedding_dropout(x)

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        if self.embeds:
            x = self._embedded(x)
            context = None if context is None else self._embedded(context)
        blocked = None
        if self.causal:
            blocked = causal_block(mask, mask if context_mask is None else context_mask, self.heads)
        for layer in self.layers:
            x = layer(x, mask, context, context_mask, blocked)
        return self.norm(x)


class ResidualHead(nn.Module):
    """x + Linear(ReLU(Linear(x))), then the output layer (MulT's head)."""

    def __init__(self, dim: int, output_dim: int, dropout: float) -> None:
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )
        self.output = nn.Linear(dim, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(x + self.hidden(x))


class ResidualMLP(nn.Module):
    """x + MLP(x) through ``hidden`` widths and back to ``dim`` (AuxFormer's shared network)."""

    def __init__(self, dim: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.mlp = MLP(dim, hidden, dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(x)


class AuxFormer(EmotionModel):
    auxiliary = True

    def __init__(self, config: ModelConfig, output_dim: int) -> None:
        super().__init__()
        self.config = config
        self.output_dim = output_dim
        dim, heads, layers = config.model_dim, config.heads, config.cross_layers
        positions = config.embedding == "every-stack"  # then the cross-modal stacks add them
        self.projections = nn.ModuleDict(
            {
                "audio": nn.Linear(config.audio_dim, dim, bias=False),
                "visual": nn.Linear(config.visual_dim, dim, bias=False),
            }
        )
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        # cross["audio"]: audio attends to video; memory: the gated self-attention after it.
        self.cross = nn.ModuleDict(
            {
                m: TransformerStack(dim, heads, layers, config, False, positions, cross=True)
                for m in MODALITIES
            }
        )
        self.memory = nn.ModuleDict(
            {m: TransformerStack(dim, heads, layers, config, True, False) for m in MODALITIES}
        )
        self.fusion_head = ResidualHead(2 * dim, output_dim, config.output_dropout)
        if self.auxiliary:
            self.unimodal = nn.ModuleDict(
                {m: TransformerStack(dim, heads, layers, config, False, False) for m in MODALITIES}
            )
            self.shared_mlp = ResidualMLP(dim, config.aux_hidden, config.output_dropout)
            self.shared_output = nn.Linear(dim, output_dim)

    def embed(self, modality: Modality, features: Tensor) -> Tensor:
        x = self.projections[modality](features)
        if self.config.embedding == "every-stack":
            return x  # each stack embeds its own inputs
        x = x * math.sqrt(self.config.model_dim)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        return self.embedding_dropout(x)

    def fuse(
        self, audio: Tensor, audio_mask: Tensor, visual: Tensor, visual_mask: Tensor
    ) -> Tensor:
        """Audio-visual outputs from embedded streams."""
        heard = self.cross["audio"](audio, audio_mask, visual, visual_mask)
        heard = self.memory["audio"](heard, audio_mask)
        seen = self.cross["visual"](visual, visual_mask, audio, audio_mask)
        seen = self.memory["visual"](seen, visual_mask)
        joint = torch.cat(
            [last_real_frame(heard, audio_mask), last_real_frame(seen, visual_mask)], -1
        )
        return self.fusion_head(joint)

    def single(self, modality: Modality, x: Tensor, mask: Tensor) -> Tensor:
        """One modality's outputs from its embedded stream."""
        if self.auxiliary:
            for _ in range(self.config.aux_repeats):  # one stack, applied again and again
                x = self.unimodal[modality](x, mask)
            encoded = last_real_frame(x, mask)
            return self.shared_output(self.shared_mlp(encoded))
        silent = x.new_zeros(x.shape[0], 1, x.shape[2])  # the other modality: one zero frame
        other = torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)
        if modality == "audio":
            return self.fuse(x, mask, silent, other)
        return self.fuse(silent, other, x, mask)

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
    ) -> ModelOutput:
        output = ModelOutput()
        streams: dict[Modality, tuple[Tensor, Tensor]] = {}
        for modality, features, mask in given_modalities(audio, audio_mask, visual, visual_mask):
            present = mask.any(dim=1)
            # A clip without this modality attends to one zero frame, then is blanked out.
            safe_mask = mask.clone()
            safe_mask[~present, 0] = True
            x = self.embed(modality, features)
            streams[modality] = (x, safe_mask)
            output.present[modality] = present
            output.predictions[modality] = fill_absent(self.single(modality, x, safe_mask), present)
        if "audio" in streams and "visual" in streams:
            paired = output.present["audio"] & output.present["visual"]
            fused = self.fuse(*streams["audio"], *streams["visual"])
            if self.config.audiovisual_output == "mean" and not self.training:
                # The reference selects and tests on the mean of the three outputs.
                fused = (fused + output.predictions["audio"] + output.predictions["visual"]) / 3
            output.present["audiovisual"] = paired
            output.predictions["audiovisual"] = fill_absent(fused, paired)
        return output


class MulT(AuxFormer):
    """AuxFormer's main network alone: a MulT-style cross-modal transformer."""

    auxiliary = False
