"""Score each path (audio, visual, audio-visual) from its outputs: losses, metrics, calibration
and the summary table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from vavl.calibration import PathReliability, calibrate, label_thresholds, sigmoid
from vavl.config import TaskConfig
from vavl.inference import PathOutputs
from vavl.losses import task_loss
from vavl.metrics import classification_metrics, multilabel_metrics, regression_metrics
from vavl.records import PathMetrics
from vavl.types import PATHS, PathName


def hard_labels(targets: NDArray[Any]) -> NDArray[np.int64]:
    """Class indices from indices or from class proportions (their argmax)."""
    return (targets.argmax(axis=1) if targets.ndim == 2 else targets).astype(np.int64)


def presence(targets: NDArray[Any]) -> NDArray[np.bool_]:
    """Which labels each clip has, from multi-label targets (presence or scaled intensity)."""
    return np.asarray(targets) > 0


def calibrate_predictions(
    task: TaskConfig, predictions: Mapping[PathName, PathOutputs]
) -> dict[str, PathReliability]:
    """Each path's temperature (thresholds) and development figures from its development
    outputs (classes and labels present; nothing for attributes)."""
    if task.kind == "regression":
        return {}
    truth = presence if task.kind == "multilabel" else hard_labels
    return calibrate(
        {
            path: (result.ids, result.outputs, truth(result.targets))
            for path, result in predictions.items()
            if result.targets is not None
        },
        task.kind,
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


def path_metrics(
    task: TaskConfig,
    predictions: PathOutputs,
    reliability: PathReliability | None = None,
) -> dict[str, Any]:
    """The task's metrics of one path; a multi-label path decides with its calibration's
    temperature and thresholds (``reliability``; none: 0.5 on the raw sigmoid)."""
    if predictions.targets is None:
        raise ValueError("cannot score predictions without targets")
    if task.kind == "classification":
        return classification_metrics(
            hard_labels(predictions.targets), predictions.outputs.argmax(axis=1), task.labels
        )
    if task.kind == "multilabel":
        return multilabel_metrics(
            presence(predictions.targets),
            labels_said(predictions.outputs, reliability, task.output_dim),
            task.labels,
        )
    return regression_metrics(
        predictions.targets, predictions.outputs, task.labels, sentiment=task.sentiment
    )


def labels_said(
    logits: NDArray[Any], reliability: PathReliability | None, labels: int
) -> NDArray[np.bool_]:
    """A multi-label path's decisions: each calibrated probability at or above its threshold."""
    temperature = reliability.temperature if reliability is not None else 1.0
    return sigmoid(logits, temperature) >= label_thresholds(reliability, labels)


def evaluate_predictions(
    task: TaskConfig,
    predictions: Mapping[PathName, PathOutputs],
    class_weights: Mapping[PathName, torch.Tensor] | None = None,
    calibration: Mapping[str, PathReliability] | None = None,
) -> dict[str, PathMetrics]:
    """Loss (each path's with its own class weights) and metrics of every path that has
    predictions (a multi-label path's with its ``calibration``)."""
    weights, calibrated = class_weights or {}, calibration or {}
    return {
        path: {
            "loss": path_loss(task, result, weights.get(path)),
            **path_metrics(task, result, calibrated.get(path)),
        }
        for path, result in predictions.items()
    }


def headline(task: TaskConfig) -> list[tuple[str, str]]:
    """The (metric key, column title) pairs shown in summary tables."""
    if task.kind == "multilabel":
        return [
            ("weighted_accuracy_mean", "WA mean"),
            ("weighted_f1_mean", "wF1 mean"),
            ("f1_macro", "F1-macro"),
            ("f1_micro", "F1-micro"),
            ("exact_match", "exact match"),
        ]
    if task.kind == "classification":
        return [
            ("accuracy", "acc"),
            ("unweighted_accuracy", "UA"),
            ("f1_macro", "F1-macro"),
            ("f1_micro", "F1-micro"),
            ("precision_macro", "precision"),
            ("recall_macro", "recall"),
        ]
    if task.sentiment:
        return [
            ("ccc_mean", "CCC"),
            ("sentiment:mae", "MAE"),
            ("sentiment:pearson", "Pearson r"),
            ("sentiment:acc2", "Acc-2"),
            ("sentiment:f1", "F1"),
            ("sentiment:acc7", "Acc-7"),
        ]
    return [("ccc_mean", "CCC mean")]


def per_label_columns(task: TaskConfig) -> list[tuple[str, str]]:
    """The (metric key, column title) pairs of each label, after the headline ones."""
    if task.kind == "multilabel":
        return [(f"wf1:{label}", f"wF1 {label}") for label in task.labels]
    if task.kind == "regression" and not task.sentiment:
        return [(f"ccc:{name}", f"CCC {name}") for name in task.labels]
    return []


def metric_value(metrics: Mapping[str, Any], key: str) -> float:
    """One figure of a path's metrics by its key: a metric's name, ``ccc:<attribute>``,
    ``f1:<label>``, ``wf1:<label>`` or ``wa:<label>`` (a label's F1, weighted F1 or weighted
    accuracy), or ``sentiment:<figure>`` (of the sentiment score)."""
    kind, _, name = key.partition(":")
    if not name:
        return float(metrics[key])
    if kind == "ccc":
        return float(metrics["per_attribute"][name]["ccc"])
    if kind == "sentiment":
        (scores,) = metrics["per_attribute"].values()  # a sentiment task has one score
        return float(scores[name])
    figure = {"f1": "f1", "wf1": "weighted_f1", "wa": "weighted_accuracy"}[kind]
    return float(metrics["per_class"][name][figure])


def format_table(task: TaskConfig, results: dict[str, PathMetrics]) -> str:
    """A plain-text table with one row per path."""
    columns = headline(task) + per_label_columns(task)
    header = ["path", "clips"] + [title for _, title in columns]
    rows = [header]
    for path in PATHS:
        if path not in results:
            continue
        metrics = results[path]
        values = [f"{metric_value(metrics, key):.3f}" for key, _ in columns]
        rows.append([path, str(metrics["n"]), *values])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
