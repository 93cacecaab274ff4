"""Training: recipes (how a batch updates a model, :mod:`vavl.training.recipes`) and the
resumable trainer (:mod:`vavl.training.trainer`), and whether a run directory holds the same run
(:mod:`vavl.training.same_run`)."""

from vavl.training.recipes import (
    JointRecipe,
    Recipe,
    ThreeStepRecipe,
    build_recipe,
    class_weights_for,
)
from vavl.training.same_run import check_same_run, config_changes
from vavl.training.trainer import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    PREVIOUS_CHECKPOINT,
    Trainer,
    TrainerState,
    TrainingResult,
)

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "PREVIOUS_CHECKPOINT",
    "JointRecipe",
    "Recipe",
    "ThreeStepRecipe",
    "Trainer",
    "TrainerState",
    "TrainingResult",
    "build_recipe",
    "check_same_run",
    "class_weights_for",
    "config_changes",
]
