"""Ensembles (``training.ensemble: N``): N members trained one after another, each a resumable
run of its own in ``run_dir/member-K`` with seed ``training.seed + K - 1``, then combined into
one checkpoint whose paths are calibrated on the development set as one model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vavl.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from vavl.config import ExperimentConfig
from vavl.data import Item
from vavl.errors import TrainingError
from vavl.evaluation import calibrate_predictions
from vavl.features.base import Descriptions
from vavl.inference import InferenceEngine
from vavl.models import Ensemble
from vavl.normalization import FeatureNormalizer
from vavl.training.trainer import BEST_CHECKPOINT, development_items


def with_members(
    config: ExperimentConfig, members: int, seed: int | None = None
) -> ExperimentConfig:
    """``config`` with ``training.ensemble`` (and, if given, ``training.seed``) replaced."""
    changes: dict[str, int] = {"ensemble": members}
    if seed is not None:
        changes["seed"] = seed
    return config.model_copy(update={"training": config.training.model_copy(update=changes)})


def member_config(config: ExperimentConfig, index: int) -> ExperimentConfig:
    """The config of member ``index`` (from 0): the ensemble's, with its own seed, alone."""
    return with_members(config, 1, seed=config.training.seed + index)


def member_dir(run_dir: Path, index: int) -> Path:
    """Where member ``index`` (from 0) of the ensemble in ``run_dir`` is trained."""
    return run_dir / f"member-{index + 1}"


def _same_statistics(first: FeatureNormalizer, other: FeatureNormalizer) -> bool:
    return all(
        first_values.keys() == other_values.keys()
        and all(np.allclose(first_values[m], other_values[m]) for m in first_values)
        for first_values, other_values in ((first.mean, other.mean), (first.std, other.std))
    )


def combine_members(
    config: ExperimentConfig,
    member_dirs: Sequence[Path],
    dev: Sequence[Item],
    extractors: Descriptions,
    device: torch.device,
) -> tuple[Checkpoint, Ensemble]:
    """The members' selected checkpoints as one ensemble checkpoint, calibrated on ``dev``, and
    the ensemble itself (on ``device``, in eval mode)."""
    checkpoints = [load_checkpoint(folder / BEST_CHECKPOINT) for folder in member_dirs]
    normalizer = checkpoints[0].normalizer
    for folder, checkpoint in zip(member_dirs[1:], checkpoints[1:], strict=True):
        if not _same_statistics(normalizer, checkpoint.normalizer):
            raise TrainingError(
                f"{folder}: trained on other data than {member_dirs[0]} (their feature "
                "statistics differ); run again with --force to train every member anew"
            )
    members = [model_from_checkpoint(checkpoint) for checkpoint in checkpoints]
    ensemble = Ensemble(members, config.task.kind).to(device).eval()
    items = development_items(config, dev)
    engine = InferenceEngine.for_model(
        ensemble,
        config.task,
        normalizer.for_items(items, config.features.normalise),
        config.training.batch_size,
        device,
    )
    predictions = engine.outputs(items) if items else {}
    checkpoint = Checkpoint(
        config=config,
        model_state={name: value.detach().cpu() for name, value in ensemble.state_dict().items()},
        normalizer=normalizer,
        extractors=dict(extractors),
        calibration=calibrate_predictions(config.task, predictions),
        members=len(members),
    )
    return checkpoint, ensemble
