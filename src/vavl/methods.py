"""The compared methods (``--model NAME``): a model and the recipe it is trained with, as config
overrides applied on top of the config file (and before ``--set``). Ablations of VAVL and the
reference's choices are named like models; ``models/`` holds the architectures only."""

from __future__ import annotations

from vavl.config import ExperimentConfig
from vavl.config_files import apply_overrides
from vavl.errors import VavlError

# The other networks read no classifier's answer from the visual features (a VAVL option).
NO_PRIOR = "model.visual_prior=[]"
AUXFORMER_RECIPE = (
    "training.recipe=joint",
    "training.learning_rate=7.25e-4",
    # The reference's AuxFormer: plain Adam, no clipping, 30 epochs; its attention and embedding.
    "training.betas=[0.9, 0.999]",
    "training.weight_decay=0",
    "training.max_grad_norm=null",
    "training.epochs=30",
    "model.causal_mask=true",
    "model.embedding=every-stack",
    "model.alpha_init=uniform",
    "model.cross_attention_dropout=0",
    "model.context_norm=query",
)
METHODS: dict[str, tuple[str, ...]] = {
    "vavl": ("model.name=vavl",),
    # The default model's size (0.5 M parameters instead of the paper's 53 M): for CPUs.
    "vavl-small": (
        "model.name=vavl",
        "model.projection_dim=128",
        "model.model_dim=64",
        "model.audio_blocks=1",
        "model.visual_blocks=1",
        "model.shared_blocks=1",
        "model.heads=4",
        "model.head_hidden=[64]",
        "model.dropout=0.3",
    ),
    "vavl-no-shared": ("model.name=vavl", "model.shared_block=false"),
    "vavl-no-residual": ("model.name=vavl", "model.shared_residual=false"),
    "vavl-no-reconstruction": ("model.name=vavl", "training.reconstruction_weight=0"),
    "vavl-joint": ("model.name=vavl", "training.recipe=joint"),
    "vavl-modality-dropout": ("model.name=vavl", "training.modality_dropout=0.2"),
    # The reference's choices where vavl differs, one group at a time and all together.
    "vavl-ref-attention": (
        "model.name=vavl",
        "model.attention_scale=model",
        "model.relative_positions=reference",
    ),
    "vavl-ref-init": ("model.name=vavl", "model.linear_init=xavier", "model.depthwise_bias=false"),
    "vavl-ref-heads": (
        "model.name=vavl",
        "model.head_dropout=0.2",
        "model.head_final_activation=false",
    ),
    "vavl-ref-optimizer": (
        "model.name=vavl",
        "training.shared_optimizer=single",
        "training.max_grad_norm=null",
    ),
    "vavl-ref-selection": ("model.name=vavl", "training.selection_path=audiovisual"),
    "vavl-reference": (
        "model.name=vavl",
        "model.attention_scale=model",
        "model.relative_positions=reference",
        "model.linear_init=xavier",
        "model.depthwise_bias=false",
        "model.head_dropout=0.2",
        "model.head_final_activation=false",
        "training.shared_optimizer=single",
        "training.max_grad_norm=null",
        "training.selection_path=audiovisual",
    ),
    "auxformer": (
        "model.name=auxformer",
        NO_PRIOR,
        "model.model_dim=50",
        "model.heads=10",
        *AUXFORMER_RECIPE,
        "model.audiovisual_output=mean",
        "training.modality_dropout=0.2",
    ),
    "mult": (
        "model.name=mult",
        NO_PRIOR,
        "model.model_dim=50",
        "model.heads=10",
        *AUXFORMER_RECIPE,
    ),
    "unimodal": ("model.name=unimodal", NO_PRIOR, "training.recipe=joint"),
    "late-fusion": ("model.name=late-fusion", NO_PRIOR, "training.recipe=joint"),
    "early-fusion": ("model.name=early-fusion", NO_PRIOR, "training.recipe=joint"),
}


def with_method(config: ExperimentConfig, method: str) -> ExperimentConfig:
    """``config`` with ``method``'s network and recipe, and its name recorded."""
    if method not in METHODS:
        raise VavlError(f"--model {method}: unknown; choose from {', '.join(METHODS)}")
    return apply_overrides(config, [*METHODS[method], f"method={method}"])
