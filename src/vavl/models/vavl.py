"""VAVL: two modality branches, one shared Conformer, one head per path.

audio (T_a x audio_dim)  -> 1x1 projection -> Conformer branch -+
visual (T_v x visual_dim) -> 1x1 projection -> Conformer branch -+-> shared Conformer (+ residual),
LayerNorm, masked mean over time -> r. Heads: audio MLP(r_a), visual MLP(r_v), reconstruction MLPs
(r -> mean input features), fusion MLP(concat(r_a, r_v)). The shared weights are applied to each
branch's sequence separately, so one trained model answers for audio, visual or both.

With ``visual_prior`` the visual path also adds a pretrained classifier's log-probabilities, read
from the (standardised) input: its head starts at zero, so the path starts from that
classifier's answer, and once trained it keeps ``visual_prior_mix`` of the head's correction.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from vavl.config import ModelConfig
from vavl.models.base import (
    EmotionModel,
    ModelOutput,
    RecipeStep,
    fill_absent,
    given_modalities,
)
from vavl.models.conformer import ConformerEncoder
from vavl.models.layers import MLP, ColumnPrior, masked_mean, run_on_present
from vavl.types import Modality


class VAVL(EmotionModel):
    def __init__(self, config: ModelConfig, output_dim: int) -> None:
        super().__init__()
        self.config = config
        self.output_dim = output_dim

        def conformer(in_dim: int, blocks: int) -> ConformerEncoder:
            return ConformerEncoder(
                in_dim,
                config.model_dim,
                blocks,
                config.heads,
                config.kernel_size,
                config.ff_expansion,
                config.dropout,
                config.attention_scale,
                config.relative_positions,
                config.linear_init,
                config.depthwise_bias,
            )

        dim = config.model_dim
        dropout = config.dropout if config.head_dropout is None else config.head_dropout
        head = partial(
            MLP,
            hidden=config.head_hidden,
            dropout=dropout,
            final_activation=config.head_final_activation,
        )
        self.audio_projection = nn.Linear(config.audio_dim, config.projection_dim, bias=False)
        self.visual_projection = nn.Linear(config.visual_dim, config.projection_dim, bias=False)
        self.audio_encoder = conformer(config.projection_dim, config.audio_blocks)
        self.visual_encoder = conformer(config.projection_dim, config.visual_blocks)
        # Ablations: without the shared block, or without the residual around it.
        self.shared_encoder = conformer(dim, config.shared_blocks) if config.shared_block else None
        self.shared_norm = nn.LayerNorm(dim)
        self.audio_head = head(dim, out_dim=output_dim)
        self.visual_head = head(dim, out_dim=output_dim)
        self.audio_reconstruction = head(dim, out_dim=config.audio_dim)
        self.visual_reconstruction = head(dim, out_dim=config.visual_dim)
        self.fusion_head = head(2 * dim, out_dim=output_dim)
        self.visual_prior = ColumnPrior(config.visual_prior) if config.visual_prior else None
        if self.visual_prior is not None:
            last = self.visual_head.layers[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def _branch(self, modality: Modality) -> tuple[nn.Module, nn.Module]:
        if modality == "audio":
            return self.audio_projection, self.audio_encoder
        return self.visual_projection, self.visual_encoder

    def heads(self, modality: Modality) -> tuple[nn.Module, nn.Module]:
        """The prediction head and the reconstruction head of one modality."""
        if modality == "audio":
            return self.audio_head, self.audio_reconstruction
        return self.visual_head, self.visual_reconstruction

    def step_modules(self, step: RecipeStep) -> list[nn.Module]:
        """The modules each step of the three-step recipe trains (``shared``: the shared block,
        which the audio and the visual step both train)."""
        if step == "fusion":
            return [self.fusion_head]
        shared = [self.shared_encoder] if self.shared_encoder is not None else []
        if step == "shared":
            return [*shared, self.shared_norm]
        projection, encoder = self._branch(step)
        prior = [self.visual_prior] if step == "visual" and self.visual_prior is not None else []
        return [projection, encoder, *shared, self.shared_norm, *self.heads(step), *prior]

    def encode(self, modality: Modality, features: Tensor, mask: Tensor) -> Tensor:
        """Pooled representation r (batch, model_dim) of clips that all have ``modality``."""
        projection, encoder = self._branch(modality)
        branch = encoder(projection(features), mask)
        shared = branch
        if self.shared_encoder is not None:
            shared = self.shared_encoder(branch, mask)
            if self.config.shared_residual:
                shared = shared + branch
        return masked_mean(self.shared_norm(shared), mask)

    def predict(
        self, modality: Modality, embedding: Tensor, features: Tensor, mask: Tensor
    ) -> Tensor:
        """The ``modality`` path's outputs from its pooled representation (and its inputs)."""
        output: Tensor = self.heads(modality)[0](embedding)
        if modality == "visual" and self.visual_prior is not None:
            if not self.training:  # the trained correction, shrunk towards the prior
                output = output * self.config.visual_prior_mix
            output = output + self.visual_prior(features, mask)
        return output

    def fuse(self, audio_embedding: Tensor, visual_embedding: Tensor) -> Tensor:
        return self.fusion_head(torch.cat([audio_embedding, visual_embedding], dim=-1))

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
    ) -> ModelOutput:
        output = ModelOutput()
        for modality, features, mask in given_modalities(audio, audio_mask, visual, visual_mask):
            embedding, present = run_on_present(
                partial(self.encode, modality),
                features,
                mask,
                self.config.model_dim,
                0.0,
                self.training,
            )
            reconstruction = self.heads(modality)[1]
            predicted = self.predict(modality, embedding, features, mask)
            output.present[modality] = present
            output.embeddings[modality] = embedding
            output.predictions[modality] = fill_absent(predicted, present)
            output.reconstructions[modality] = fill_absent(reconstruction(embedding), present)
        if "audio" in output.present and "visual" in output.present:
            paired = output.present["audio"] & output.present["visual"]
            fused = self.fuse(output.embeddings["audio"], output.embeddings["visual"])
            output.present["audiovisual"] = paired
            output.predictions["audiovisual"] = fill_absent(fused, paired)
        return output
