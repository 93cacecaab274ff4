"""Baselines behind the same interface: unimodal Conformers, late fusion and early fusion.

- ``unimodal``: one Conformer per modality (projection, Conformer, norm, masked mean, MLP head),
  nothing shared; audio and visual paths only.
- ``late-fusion``: the same two networks; the audio-visual path averages their outputs (logits,
  or attribute values).
- ``early-fusion``: video features are aligned to the audio frames by relative position and
  concatenated with them; one Conformer reads the result. Its single-modality paths feed zeros in
  place of the missing modality (features are normalised, so zeros are the training mean).

Each Conformer is as deep as a VAVL path (branch blocks + shared blocks), so that comparisons
are between designs, not depths.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vavl.config import ModelConfig
from vavl.models.base import EmotionModel, ModelOutput, fill_absent, given_modalities
from vavl.models.conformer import ConformerEncoder
from vavl.models.layers import MLP, masked_mean, run_on_present

NAN = float("nan")


class ConformerClassifier(nn.Module):
    """features -> projection -> Conformer -> LayerNorm -> masked mean -> MLP head."""

    def __init__(self, in_dim: int, blocks: int, config: ModelConfig, output_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, config.projection_dim, bias=False)
        self.encoder = ConformerEncoder(
            config.projection_dim,
            config.model_dim,
            blocks,
            config.heads,
            config.kernel_size,
            config.ff_expansion,
            config.dropout,
        )
        self.norm = nn.LayerNorm(config.model_dim)
        self.head = MLP(config.model_dim, config.head_hidden, output_dim, config.dropout)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        encoded = self.norm(self.encoder(self.projection(features), mask))
        return self.head(masked_mean(encoded, mask))


class UnimodalConformers(EmotionModel):
    late_fusion = False

    def __init__(self, config: ModelConfig, output_dim: int) -> None:
        super().__init__()
        self.config = config
        self.output_dim = output_dim
        shared = config.shared_blocks
        self.networks = nn.ModuleDict(
            {
                "audio": ConformerClassifier(
                    config.audio_dim, config.audio_blocks + shared, config, output_dim
                ),
                "visual": ConformerClassifier(
                    config.visual_dim, config.visual_blocks + shared, config, output_dim
                ),
            }
        )

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
    ) -> ModelOutput:
        output = ModelOutput()
        for modality, features, mask in given_modalities(audio, audio_mask, visual, visual_mask):
            output.predictions[modality], output.present[modality] = run_on_present(
                self.networks[modality], features, mask, self.output_dim, NAN, self.training
            )
        if self.late_fusion and "audio" in output.present and "visual" in output.present:
            paired = output.present["audio"] & output.present["visual"]
            fused = (output.predictions["audio"] + output.predictions["visual"]) / 2
            output.present["audiovisual"] = paired
            output.predictions["audiovisual"] = fill_absent(fused, paired)
        return output


class LateFusion(UnimodalConformers):
    late_fusion = True


def align_to(reference_mask: Tensor, features: Tensor, mask: Tensor) -> Tensor:
    """``features`` resampled to the frames of ``reference_mask`` by relative position within
    each clip's span (up to its last real frame); frames without a real value become zeros."""
    steps = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    span = torch.where(mask, steps + 1, torch.zeros_like(steps)).amax(dim=1).clamp_min(1)
    target_span = reference_mask.sum(dim=1).clamp_min(1)
    target_steps = torch.arange(reference_mask.shape[1], device=mask.device)[None, :]
    index = (target_steps * span[:, None]) // target_span[:, None]
    index = index.clamp(max=mask.shape[1] - 1)
    aligned = torch.gather(features, 1, index[..., None].expand(-1, -1, features.shape[2]))
    valid = torch.gather(mask, 1, index) & reference_mask
    return aligned * valid[..., None]


class EarlyFusion(EmotionModel):
    def __init__(self, config: ModelConfig, output_dim: int) -> None:
        super().__init__()
        self.config = config
        self.output_dim = output_dim
        self.network = ConformerClassifier(
            config.audio_dim + config.visual_dim,
            config.audio_blocks + config.shared_blocks,
            config,
            output_dim,
        )

    def _joint(self, audio: Tensor | None, visual: Tensor | None, mask: Tensor) -> Tensor:
        """Concatenated features on the grid of ``mask``; a missing modality is zeros."""
        batch, time = mask.shape
        reference = audio if audio is not None else visual
        assert reference is not None
        if audio is None:
            audio = reference.new_zeros(batch, time, self.config.audio_dim)
        if visual is None:
            visual = reference.new_zeros(batch, time, self.config.visual_dim)
        return torch.cat([audio, visual], dim=-1)

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
    ) -> ModelOutput:
        output = ModelOutput()
        given = {m: (f, k) for m, f, k in given_modalities(audio, audio_mask, visual, visual_mask)}
        for modality, (features, mask) in given.items():
            if modality == "audio":
                joint = self._joint(features, None, mask)
            else:
                joint = self._joint(None, features, mask)
            output.predictions[modality], output.present[modality] = run_on_present(
                self.network, joint, mask, self.output_dim, NAN, self.training
            )
        if "audio" in given and "visual" in given:
            (audio, audio_mask), (visual, visual_mask) = given["audio"], given["visual"]
            paired = output.present["audio"] & output.present["visual"]
            aligned = align_to(audio_mask, visual, visual_mask)
            joint_mask = audio_mask & paired[:, None]
            fused, _ = run_on_present(
                self.network,
                self._joint(audio, aligned, joint_mask),
                joint_mask,
                self.output_dim,
                NAN,
                self.training,
            )
            output.present["audiovisual"] = paired
            output.predictions["audiovisual"] = fused
        return output
