"""Metrics for emotion classes, labels present (multi-label) and attributes, in numpy.

Macro averages run over the classes that occur in the truth or in the predictions (scikit-learn's
default), and a class with no predicted clips has precision 0. Unweighted accuracy is the mean
recall over the classes present in the truth (scikit-learn's ``balanced_accuracy_score``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> NDArray[np.int64]:
    """Counts with true classes as rows and predicted classes as columns."""
    true, pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def _divide(numerator: NDArray[Any], denominator: NDArray[Any]) -> NDArray[np.float64]:
    result = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def per_class_scores(matrix: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """Precision, recall, F1 and support of every class of a confusion matrix."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision, recall = _divide(true_positive, predicted), _divide(true_positive, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(float)}


def classification_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[str]
) -> dict[str, Any]:
    """All categorical metrics the reports use, as plain Python values (JSON-ready)."""
    true, pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true labels but {len(pred)} predictions")
    if len(true) == 0:
        raise ValueError("no predictions to score")
    matrix = confusion_matrix(true, pred, len(labels))
    scores = per_class_scores(matrix)
    seen = (scores["support"] > 0) | (matrix.sum(axis=0) > 0)
    in_truth = scores["support"] > 0
    support = scores["support"]
    correct = float(np.trace(matrix))
    return {
        "n": len(true),
        "accuracy": correct / len(true),
        "unweighted_accuracy": float(scores["recall"][in_truth].mean()),
        "f1_macro": float(scores["f1"][seen].mean()),
        "f1_micro": correct / len(true),
        "f1_weighted": float((scores["f1"] * support).sum() / support.sum()),
        "precision_macro": float(scores["precision"][seen].mean()),
        "recall_macro": float(scores["recall"][seen].mean()),
        "per_class": {
            label: {name: float(values[index]) for name, values in scores.items()}
            for index, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
        "labels": list(labels),
    }


def weighted_accuracy(presence: ArrayLike, said: ArrayLike) -> NDArray[np.float64]:
    """Per label (columns of (clips, labels) booleans): (TP N / P + TN) / 2N, the weighted
    accuracy of multi-label emotion papers, equal to the mean of the recall on clips with the
    label and on clips without it; a label absent from (or present in) every clip gets the one
    recall there is."""
    truth, guess = np.asarray(presence, bool), np.asarray(said, bool)
    positives, negatives = truth.sum(axis=0), (~truth).sum(axis=0)
    recall = _divide((truth & guess).sum(axis=0), positives)
    specificity = _divide((~truth & ~guess).sum(axis=0), negatives)
    both = (positives > 0) & (negatives > 0)
    return np.where(both, (recall + specificity) / 2, np.where(positives > 0, recall, specificity))


def multilabel_metrics(
    presence: ArrayLike, said: ArrayLike, labels: Sequence[str]
) -> dict[str, Any]:
    """Metrics of (clips, labels) booleans, truth and prediction: per label precision, recall,
    F1 (of the label present), weighted F1 (present and absent each scored, weighted by their
    clips: the per-emotion F1 of CMU-MOSEI papers) and weighted accuracy; micro F1 (over every
    decision), macro F1, the mean weighted F1 and weighted accuracy over the labels, and the
    share of clips whose every label is right."""
    truth, guess = np.asarray(presence, bool), np.asarray(said, bool)
    if truth.shape != guess.shape or truth.ndim != 2 or truth.shape[1] != len(labels):
        raise ValueError(
            f"truth {truth.shape} and predictions {guess.shape} for {len(labels)} labels"
        )
    if len(truth) == 0:
        raise ValueError("no predictions to score")
    hits = (truth & guess).sum(axis=0).astype(np.float64)
    support, predicted = truth.sum(axis=0).astype(np.float64), guess.sum(axis=0).astype(np.float64)
    precision, recall = _divide(hits, predicted), _divide(hits, support)
    f1 = _divide(2 * hits, support + predicted)
    # The field's per-label F1: present and absent each scored, weighted by their clips.
    correct_absent = (~truth & ~guess).sum(axis=0).astype(np.float64)
    missed, false_alarms = support - hits, predicted - hits
    absent_f1 = _divide(2 * correct_absent, 2 * correct_absent + missed + false_alarms)
    weighted_f1 = (support * f1 + (len(truth) - support) * absent_f1) / len(truth)
    accuracy = weighted_accuracy(truth, guess)
    micro_f1 = (
        2 * hits.sum() / (support.sum() + predicted.sum())
        if support.sum() + predicted.sum()
        else 0.0
    )
    return {
        "n": len(truth),
        "f1_micro": float(micro_f1),
        "f1_macro": float(f1.mean()),
        "weighted_accuracy_mean": float(accuracy.mean()),
        "weighted_f1_mean": float(weighted_f1.mean()),
        "exact_match": float((truth == guess).all(axis=1).mean()),
        "per_class": {
            label: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "weighted_f1": float(weighted_f1[k]),
                "weighted_accuracy": float(accuracy[k]),
                "support": float(support[k]),
                "predicted": float(predicted[k]),
            }
            for k, label in enumerate(labels)
        },
        "labels": list(labels),
    }


def sentiment_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """CMU-MOSEI's sentiment figures of scores on [-3, 3]: mean absolute error, Pearson's r,
    Acc-2 and its weighted F1 (negative vs positive, clips rated 0 left out) and the same with
    0 counted as non-negative (``_with_zero``), and Acc-7 (scores clipped to the scale and
    rounded to its seven integers)."""
    true, pred = np.asarray(y_true, np.float64).ravel(), np.asarray(y_pred, np.float64).ravel()
    nonzero = true != 0
    rounded = np.rint(np.clip(true, -3, 3)), np.rint(np.clip(pred, -3, 3))
    figures = {
        "mae": float(np.abs(true - pred).mean()),
        "pearson": pearson_correlation(true, pred),
        "acc7": float((rounded[0] == rounded[1]).mean()),
    }
    # As MMSA scores it: without zeros, positive is > 0; with them, non-negative is >= 0.
    for name, rows, positive in (
        ("", nonzero, np.greater),
        ("_with_zero", np.ones(len(true), bool), np.greater_equal),
    ):
        truth, guess = positive(true[rows], 0).astype(int), positive(pred[rows], 0).astype(int)
        scores = (
            classification_metrics(truth, guess, ("negative", "positive")) if rows.any() else None
        )
        figures[f"acc2{name}"] = scores["accuracy"] if scores else 0.0
        figures[f"f1{name}"] = scores["f1_weighted"] if scores else 0.0
    return figures


def concordance_correlation(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Lin's CCC: 2 cov / (var_true + var_pred + (mean_true - mean_pred)^2), population moments."""
    true, pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    covariance = np.mean((true - true.mean()) * (pred - pred.mean()))
    denominator = true.var() + pred.var() + (true.mean() - pred.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def pearson_correlation(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    true, pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    spread = true.std() * pred.std()
    covariance = np.mean((true - true.mean()) * (pred - pred.mean()))
    return float(covariance / spread) if spread > 0 else 0.0


def regression_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, attributes: Sequence[str], sentiment: bool = False
) -> dict[str, Any]:
    """CCC, Pearson's r and MSE per attribute of (clips, attributes) arrays, and the mean CCC;
    ``sentiment``: each attribute's :func:`sentiment_metrics` too."""
    true = np.asarray(y_true, dtype=np.float64).reshape(-1, len(attributes))
    pred = np.asarray(y_pred, dtype=np.float64).reshape(-1, len(attributes))
    if true.shape != pred.shape:
        raise ValueError(f"truth has shape {true.shape} but predictions {pred.shape}")
    per_attribute = {
        name: {
            "ccc": concordance_correlation(true[:, k], pred[:, k]),
            "pearson": pearson_correlation(true[:, k], pred[:, k]),
            "mse": float(np.mean((true[:, k] - pred[:, k]) ** 2)),
            **(sentiment_metrics(true[:, k], pred[:, k]) if sentiment else {}),
        }
        for k, name in enumerate(attributes)
    }
    return {
        "n": len(true),
        "ccc_mean": float(np.mean([scores["ccc"] for scores in per_attribute.values()])),
        "per_attribute": per_attribute,
        "attributes": list(attributes),
    }
