"""The network's section of a configuration: which model, its sizes, and where vavl and the
reference differ (re-exported by :mod:`vavl.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vavl.config_base import _Strict
from vavl.types import Modality

ModelName = Literal["vavl", "auxformer", "mult", "unimodal", "late-fusion", "early-fusion"]


class ModelConfig(_Strict):
    """Which network and its sizes (defaults: the VAVL paper's)."""

    name: ModelName = Field(
        "vavl",
        description="vavl; auxformer (its predecessor); baselines: mult (cross-modal transformer "
        "without auxiliary networks), unimodal (one Conformer per modality), late-fusion "
        "(their averaged outputs), early-fusion (one Conformer on time-aligned concatenated "
        "features)",
    )
    audio_dim: int = Field(1024, gt=0, description="acoustic feature size per frame")
    visual_dim: int = Field(1408, gt=0, description="visual feature size per frame")
    projection_dim: int = Field(50, gt=0, description="1x1 convolution output before each branch")
    model_dim: int = Field(512, gt=0)
    audio_blocks: int = Field(3, ge=1)
    visual_blocks: int = Field(3, ge=1)
    shared_blocks: int = Field(2, ge=1)
    heads: int = Field(8, ge=1)
    kernel_size: int = Field(31, ge=1, description="depthwise convolution kernel, in frames")
    ff_expansion: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    head_hidden: tuple[int, ...] = (512, 256)
    # VAVL ablations.
    shared_block: bool = Field(True, description="VAVL: the shared Conformer between branches")
    shared_residual: bool = Field(True, description="VAVL: the residual around the shared block")
    # Where vavl and the authors' code differ (the paper configs set the reference's values).
    attention_scale: Literal["head", "model"] = Field(
        "head", description="attention scores / sqrt(head size), or / sqrt(model_dim) (reference)"
    )
    relative_positions: Literal["exact", "reference"] = Field(
        "exact",
        description="Conformer relative positions: exact distances, or the reference's shifted "
        "ascending positions (inexact, and dependent on the padded length)",
    )
    linear_init: Literal["pytorch", "xavier"] = Field(
        "pytorch",
        description="the Conformers' linear layers: PyTorch's default initialisation, or "
        "Xavier-uniform weights and zero biases (reference)",
    )
    depthwise_bias: bool = Field(
        True,
        description="a bias in the Conformers' depthwise convolution (the reference has none: "
        "batch norm follows it)",
    )
    head_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="VAVL heads' dropout (null: model.dropout; ref. 0.2)"
    )
    head_final_activation: bool = Field(
        True,
        description="ReLU and dropout after the heads' last hidden layer too (the reference "
        "goes from it straight to the output layer)",
    )
    visual_prior: tuple[int, ...] = Field(
        (),
        description="VAVL classification: for each class, a column of the visual features "
        "holding a pretrained classifier's log-probability of it; the visual path adds the "
        "clip's mean of that column (standardised, times a learnt scale) to the class's logit, "
        "so it starts from that classifier and learns corrections. fer's output "
        "'features+log-probabilities' has FER2013's 7 classes in columns 128-134 "
        "(angry, disgust, fear, happy, sad, surprise, neutral)",
    )
    visual_prior_mix: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="with visual_prior: how much of the learnt correction the visual path's "
        "answers keep once trained (training uses all of it): 1, the fine-tuned path; 0, the "
        "pretrained classifier alone; between, their output-space ensemble (WiSE-FT, Wortsman "
        "et al. 2022), which holds up better on faces unlike the training ones",
    )
    # AuxFormer and MulT (model_dim is their width: 50 in AuxFormer).
    cross_layers: int = Field(5, ge=1, description="layers of each cross-modal transformer")
    aux_hidden: tuple[int, ...] = Field(
        (512, 256), description="AuxFormer: the residual MLP shared by the auxiliary networks"
    )
    aux_repeats: int = Field(
        3, ge=1, description="AuxFormer: passes through each auxiliary stack (shared weights)"
    )
    embedding_dropout: float = Field(0.25, ge=0.0, lt=1.0)
    output_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    causal_mask: bool = Field(
        False, description="AuxFormer/MulT: each frame attends to no later frame (reference)"
    )
    embedding: Literal["once", "every-stack"] = Field(
        "once",
        description="AuxFormer/MulT: scale, positions and embedding dropout once at the input, "
        "or (reference) scale and dropout at every stack's input and auxiliary pass, positions "
        "in the cross-modal stacks only",
    )
    cross_attention_dropout: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="AuxFormer/MulT: dropout on the cross-modal attention weights (null: "
        "model.dropout; reference: 0)",
    )
    context_norm: Literal["separate", "query"] = Field(
        "separate",
        description="AuxFormer/MulT cross-modal attention: keys and values normalised by their "
        "own LayerNorm, or by the query's (reference)",
    )
    alpha_init: Literal["half", "uniform"] = Field(
        "half", description="AuxFormer/MulT gated residuals: alpha starts at 0.5, or U(0, 1)"
    )
    audiovisual_output: Literal["fusion", "mean"] = Field(
        "fusion",
        description="AuxFormer: the audio-visual path is the fusion head, or (reference) the "
        "mean of the three outputs (in evaluation; training keeps each loss)",
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> ModelConfig:
        if self.model_dim % self.heads:
            raise ValueError(
                f"model_dim ({self.model_dim}) must be divisible by heads ({self.heads})"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd to keep frames aligned, got {self.kernel_size}"
            )
        if self.visual_prior and self.name != "vavl":
            raise ValueError("visual_prior is a VAVL option (set model.visual_prior=[])")
        if any(not 0 <= column < self.visual_dim for column in self.visual_prior):
            raise ValueError(
                f"visual_prior columns must be below visual_dim ({self.visual_dim}), got "
                f"{list(self.visual_prior)}"
            )
        return self

    def dim(self, modality: Modality) -> int:
        """The size of ``modality``'s input features."""
        return self.audio_dim if modality == "audio" else self.visual_dim
