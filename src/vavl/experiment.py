"""One experiment from a config: data -> training (dev selection) -> test metrics, once.

A run directory holds the resolved ``config.yaml``, the checkpoints (``last.pt`` to resume,
``best.pt`` to predict), ``history.json`` and ``metrics.json`` (development and test metrics of
every path for the selected epoch). Running the same config into the same directory resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vavl.config import ExperimentConfig, save_config
from vavl.data import Item
from vavl.errors import ConfigError
from vavl.evaluation import evaluate_predictions, predict_items
from vavl.files import write_json_atomically
from vavl.synthetic import synthetic_items
from vavl.training import Trainer, TrainingResult


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    run_dir: Path
    training: TrainingResult
    dev: dict[str, dict[str, Any]]
    test: dict[str, dict[str, Any]]


def load_splits(config: ExperimentConfig) -> dict[str, list[Item]]:
    """The train / dev / test items the config's data section describes."""
    if config.data is None:
        raise ConfigError(
            "the config has no 'data' section: say where the training data comes from"
        )
    return synthetic_items(config.data, config.task)


def run_experiment(config: ExperimentConfig, run_dir: str | Path) -> ExperimentResult:
    """Train (or resume) in ``run_dir`` and score the selected checkpoint on dev and test."""
    run_dir = Path(run_dir)
    splits = load_splits(config)
    trainer = Trainer(config, splits["train"], splits["dev"], run_dir)
    save_config(config, run_dir / "config.yaml")
    training = trainer.fit()
    results = {}
    for split in ("dev", "test"):
        predictions = predict_items(
            trainer.model,
            splits[split],
            config.task,
            trainer.normalizer,
            batch_size=config.training.batch_size,
            device=trainer.device,
        )
        results[split] = evaluate_predictions(config.task, predictions, trainer.class_weights)
    write_json_atomically(
        run_dir / "metrics.json",
        {
            "best_epoch": training.best_epoch,
            "selection_loss": training.best_loss,
            "dev": results["dev"],
            "test": results["test"],
            "config": config.to_dict(),
        },
    )
    return ExperimentResult(config, run_dir, training, results["dev"], results["test"])
