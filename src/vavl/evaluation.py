"""Score each path (audio, visual, audio-visual) from its outputs: losses, metrics, calibration
and the summary table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from vavl.calibration import PathReliability, calibrate
from vavl.config import TaskConfig
from vavl.inference import PathOutputs
from vavl.losses import task_loss
from vavl.metrics import classification_metrics, regression_metrics
from vavl.records import PathMetrics
from vavl.types import PATHS, PathName


def hard_labels(targets: NDArray[Any]) -> NDArray[np.int64]:
    """Class indices from indices or from class proportions (their argmax)."""
    return (targets.argmax(axis=1) if targets.ndim == 2 else targets).astype(np.int64)


def calibrate_predictions(
    task: TaskConfig, predictions: dict[PathName, PathOutputs]
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
    task: TaskConfig, predictions: PathOutputs, class_weights: torch.Tensor | None = None
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


def path_metrics(task: TaskConfig, predictions: PathOutputs) -> dict[str, Any]:
    if predictions.targets is None:
        raise ValueError("cannot score predictions without targets")
    if task.kind == "classification":
        return classification_metrics(
            hard_labels(predictions.targets), predictions.outputs.argmax(axis=1), task.labels
        )
    return regression_metrics(predictions.targets, predictions.outputs, task.labels)


def evaluate_predictions(
    task: TaskConfig,
    predictions: dict[PathName, PathOutputs],
    class_weights: Mapping[PathName, torch.Tensor] | None = None,
) -> dict[str, PathMetrics]:
    """Loss (each path's with its own class weights) and metrics of every path that has
    predictions."""
    weights = class_weights or {}
    return {
        path: {"loss": path_loss(task, result, weights.get(path)), **path_metrics(task, result)}
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
