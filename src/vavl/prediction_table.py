"""A run's ``predictions/<split>.csv``: every path's answer for every clip of a split, beside
its target, in words (a class, the labels present, attribute values) and probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.answers import in_words, labels_present
from vavl.calibration import PathReliability, sigmoid
from vavl.config import TaskConfig
from vavl.data import Item
from vavl.evaluation import hard_labels, labels_said, presence
from vavl.files import csv_text
from vavl.inference import PathOutputs
from vavl.types import PathName


def prediction_rows(
    task: TaskConfig,
    split: str,
    predictions: Mapping[PathName, PathOutputs],
    items: Mapping[str, Item],
    calibration: Mapping[str, PathReliability],
) -> str:
    """``predictions/<split>.csv``: every path's output for every clip, with its target."""
    rows = []
    for path, result in predictions.items():
        targets, said, shares = _path_columns(task, path, result, calibration)
        for row, clip_id in enumerate(result.ids):
            item = items[clip_id]
            entry: dict[str, object] = {
                "id": clip_id,
                "split": split,
                "path": path,
                "corpus": item.metadata.get("corpus", ""),
                "speaker": item.speaker or "",
                "target": targets[row] if targets else "",
                "prediction": said[row],
            }
            if shares is not None:
                entry |= {
                    f"p_{c}": f"{v:.5f}" for c, v in zip(task.labels, shares[row], strict=True)
                }
            rows.append(entry)
    header = ["id", "split", "path", "corpus", "speaker", "target", "prediction"]
    if task.kind != "regression":
        header += [f"p_{label}" for label in task.labels]
    return csv_text(rows, header)


def _path_columns(
    task: TaskConfig, path: str, result: PathOutputs, calibration: Mapping[str, PathReliability]
) -> tuple[list[str] | None, list[str], NDArray[np.floating[Any]] | None]:
    """One path's targets and predictions in words (a class; the labels present joined by +;
    attribute values), and its probabilities (softmax of classes, calibrated sigmoid of
    labels; None for attributes)."""
    if task.kind == "regression":
        values = [" ".join(f"{v:.4f}" for v in row) for row in result.outputs]
        truth = (
            None
            if result.targets is None
            else [" ".join(f"{v:.4f}" for v in row) for row in result.targets]
        )
        return truth, values, None
    if task.kind == "classification":
        shares = result.probabilities()
        truth = (
            None
            if result.targets is None
            else [task.labels[k] for k in hard_labels(result.targets)]
        )
        return truth, [task.labels[int(k)] for k in shares.argmax(axis=1)], shares
    reliability = calibration.get(path)
    chances = sigmoid(result.outputs, reliability.temperature if reliability else 1.0)

    def words(rows: NDArray[np.bool_]) -> list[str]:
        return [in_words(labels_present(task.labels, row)) for row in rows]

    said = labels_said(result.outputs, reliability, task.output_dim)
    return None if result.targets is None else words(presence(result.targets)), words(said), chances
