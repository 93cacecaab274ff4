"""The records training and evaluation hand between modules (and write as JSON): an epoch of
training history, one path's metrics, and the cross-validation table. Typed dictionaries, so
that the JSON files and the code read the same names."""

from __future__ import annotations

from typing import Any, TypedDict

# One path's metrics on one split: name -> value (a confusion matrix is a list of lists).
PathMetrics = dict[str, Any]


class EpochRecord(TypedDict):
    """One epoch in ``history.json`` and in a checkpoint's history."""

    epoch: int
    steps: int
    train: dict[str, float]  # mean training loss by name (audio_loss, visual_reconstruction...)
    dev: dict[str, dict[str, float]]  # path -> development metrics
    selection_loss: float
    skipped_steps: int  # updates skipped since the start: gradients not finite


class MetricSummary(TypedDict):
    """One metric of one path over the folds of a cross-validation."""

    mean: float
    std: float  # sample standard deviation (n - 1); 0 for one fold
    n: int
    folds: list[float]


CVTable = dict[str, dict[str, MetricSummary]]  # path -> metric -> summary


class CVSummary(TypedDict):
    """``cv.json``: the test table over the folds, and what to know before reading it."""

    folds: int
    table: CVTable
    overlap: str | None  # a note when the folds' test sets share clips
    config: dict[str, Any]
