"""Run a model over items and score each path (audio, visual, audio-visual)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vavl.calibration import PathReliability, calibrate, softmax
from vavl.config import TaskConfig
from vavl.data import BucketBatchSampler, Collator, FeatureNormalizer, Item, ItemDataset
from vavl.losses import task_loss
from vavl.metrics import classification_metrics, regression_metrics
from vavl.models import EmotionModel
from vavl.records import PathMetrics
from vavl.types import PATHS, PathName


@dataclass
class PathPredictions:
    """Outputs of one path for the clips that could feed it, in the order of ``ids``."""

    ids: list[str]
    outputs: NDArray[np.float32]  # (clips, outputs): logits for classes, values for attributes
    targets: NDArray[Any] | None  # class indices, class proportions or attribute values

    def probabilities(self, temperature: float = 1.0) -> NDArray[np.float32]:
        return softmax(self.outputs, temperature)


def merge_predictions(
    parts: Sequence[dict[PathName, PathPredictions]],
) -> dict[PathName, PathPredictions]:
    """Predictions of several shares of a set (e.g. one per process), as one set."""
    merged: dict[PathName, PathPredictions] = {}
    for path in PATHS:
        pieces = [part[path] for part in parts if path in part]
        if not pieces:
            continue
        targets = [p.targets for p in pieces if p.targets is not None]
        merged[path] = PathPredictions(
            ids=[i for p in pieces for i in p.ids],
            outputs=np.concatenate([p.outputs for p in pieces]),
            targets=np.concatenate(targets) if len(targets) == len(pieces) else None,
        )
    return merged


@torch.no_grad()
def predict_items(
    model: EmotionModel,
    items: Sequence[Item],
    task: TaskConfig,
    normalizer: FeatureNormalizer | None,
    batch_size: int = 32,
    device: torch.device | None = None,
    progress: bool = False,
    description: str = "predict",
) -> dict[PathName, PathPredictions]:
    """Every path's outputs for ``items`` (model in eval mode; clips batched by length)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampler = BucketBatchSampler([item.length() for item in items], batch_size, shuffle=False)
    loader = DataLoader(
        ItemDataset(items),
        batch_sampler=sampler,
        collate_fn=Collator(task, normalizer),
        generator=torch.Generator(),  # leave the caller's random state untouched
    )
    collected: dict[PathName, tuple[list[str], list[NDArray[Any]], list[NDArray[Any]]]] = {
        path: ([], [], []) for path in PATHS
    }
    for batch in tqdm(loader, desc=description, disable=not progress, leave=False):
        batch = batch.to(device)
        output = model(**batch.inputs())
        for path in output.present:
            values, rows = output.rows(path)
            ids, outputs, targets = collected[path]
            ids += [batch.ids[i] for i in rows.tolist()]
            outputs.append(values.float().cpu().numpy())
            if batch.target is not None:
                targets.append(batch.target[rows].cpu().numpy())
    model.train(was_training)
    return {
        path: PathPredictions(
            ids=ids,
            outputs=np.concatenate(outputs).astype(np.float32),
            targets=np.concatenate(targets) if targets else None,
        )
        for path, (ids, outputs, targets) in collected.items()
        if ids
    }


def hard_labels(targets: NDArray[Any]) -> NDArray[np.int64]:
    """Class indices from indices or from class proportions (their argmax)."""
    return (targets.argmax(axis=1) if targets.ndim == 2 else targets).astype(np.int64)


def calibrate_predictions(
    task: TaskConfig, predictions: dict[PathName, PathPredictions]
) -> dict[str, PathReliability]:
    """Each path's temperature and development figures from its development outputs
    (classification only; nothing for attributes)."""
    if task.kind != "classification":
        return {}
    return calibrate(
        {
            path: (result.ids, result.outputs, hard_labels(result.targets))
            for path, result in predictions.items()
            if result.targets is not None
        }
    )


def path_loss(
    task: TaskConfig, predictions: PathPredictions, class_weights: torch.Tensor | None = None
) -> float:
    """The task loss over a whole split (CCC is a corpus-level statistic, not a batch mean)."""
    if predictions.targets is None:
        raise ValueError("cannot compute a loss without targets")
    return float(
        task_loss(
            task.kind,
            torch.from_numpy(predictions.outputs),
            torch.from_numpy(predictions.targets),
            class_weights,
        )
    )


def path_metrics(task: TaskConfig, predictions: PathPredictions) -> dict[str, Any]:
    if predictions.targets is None:
        raise ValueError("cannot score predictions without targets")
    if task.kind == "classification":
        return classification_metrics(
            hard_labels(predictions.targets), predictions.outputs.argmax(axis=1), task.labels
        )
    return regression_metrics(predictions.targets, predictions.outputs, task.labels)


def evaluate_predictions(
    task: TaskConfig,
    predictions: dict[PathName, PathPredictions],
    class_weights: torch.Tensor | None = None,
) -> dict[str, PathMetrics]:
    """Loss and metrics of every path that has predictions."""
    return {
        path: {"loss": path_loss(task, result, class_weights), **path_metrics(task, result)}
        for path, result in predictions.items()
    }


def headline(task: TaskConfig) -> list[tuple[str, str]]:
    """The (metric key, column title) pairs shown in summary tables."""
    if task.kind == "classification":
        return [
            ("accuracy", "acc"),
            ("unweighted_accuracy", "UA"),
            ("f1_macro", "F1-macro"),
            ("f1_micro", "F1-micro"),
            ("precision_macro", "precision"),
            ("recall_macro", "recall"),
        ]
    return [("ccc_mean", "CCC mean")]


def format_table(task: TaskConfig, results: dict[str, PathMetrics]) -> str:
    """A plain-text table with one row per path."""
    columns = headline(task)
    extra = [] if task.kind == "classification" else [(f"ccc:{a}", a) for a in task.labels]
    header = ["path", "clips"] + [title for _, title in columns + extra]
    rows = [header]
    for path in PATHS:
        if path not in results:
            continue
        metrics = results[path]
        values = [f"{metrics[key]:.3f}" for key, _ in columns]
        values += [f"{metrics['per_attribute'][a]['ccc']:.3f}" for _, a in extra]
        rows.append([path, str(metrics["n"]), *values])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
