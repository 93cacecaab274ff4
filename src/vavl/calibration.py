"""How far each path can be trusted: temperature-scaled probabilities and the development
figures that choose the best path.

After training, each path's logits on the development set are calibrated by one temperature
(the value that minimises the development negative log-likelihood; Guo et al., 2017), and the
path's unweighted accuracy and expected calibration error (before and after) are kept in the
checkpoint. ``best_path`` then names, among the paths an input allows, the one whose
development figures are best; the audio-visual path must beat both single paths on the
development clips that feed all three, or it is never called best.

A multi-label model's paths get the same treatment with a sigmoid per label: one temperature
(minimising the development binary cross-entropy), a threshold per label (the one with the best
development F1) and, as the figure that chooses the path, the mean over labels of each label's
unweighted accuracy (the field's "weighted accuracy": the mean of its recall on clips with and
without it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.metrics import weighted_accuracy
from vavl.types import PATHS, PathName, TaskKind

TEMPERATURE_RANGE = (0.05, 20.0)
ECE_BINS = 10
# Fewer development clips than this say too little: the temperature stays 1, and the paths are
# not compared on so few pairs.
MIN_CALIBRATION_CLIPS = 30
MIN_PAIRED_CLIPS = 20


def softmax(logits: NDArray[np.floating[Any]], temperature: float = 1.0) -> NDArray[np.float32]:
    """Row-wise softmax of ``logits / temperature`` (rows of any leading shape)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def sigmoid(logits: NDArray[np.floating[Any]], temperature: float = 1.0) -> NDArray[np.float64]:
    """Element-wise logistic function of ``logits / temperature``, in float64 (float32 would
    make every large logit exactly 1, and the clips could no longer be ranked)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return 0.5 * (1.0 + np.tanh(0.5 * scaled))  # the tanh form never overflows


def negative_log_likelihood(
    logits: NDArray[np.floating[Any]], labels: NDArray[np.integer[Any]], temperature: float
) -> float:
    probabilities = softmax(logits, temperature).astype(np.float64)
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(picked, 1e-12)).mean())


def binary_negative_log_likelihood(
    logits: NDArray[np.floating[Any]], presence: NDArray[Any], temperature: float
) -> float:
    """Mean binary cross-entropy over every (clip, label) of sigmoid(logits / temperature)."""
    probabilities = sigmoid(logits, temperature).astype(np.float64)
    picked = np.where(np.asarray(presence, bool), probabilities, 1.0 - probabilities)
    return float(-np.log(np.maximum(picked, 1e-12)).mean())


LIKELIHOODS = {
    "classification": negative_log_likelihood,
    "multilabel": binary_negative_log_likelihood,
}


def fit_temperature(
    logits: NDArray[np.floating[Any]], labels: NDArray[Any], kind: TaskKind = "classification"
) -> float:
    """The temperature that minimises the negative log-likelihood of ``kind``'s outputs
    (golden-section search over log T; the likelihood is unimodal in it)."""
    likelihood = LIKELIHOODS[kind]
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        if likelihood(logits, labels, math.exp(left)) <= likelihood(
            logits, labels, math.exp(right)
        ):
            high = right
        else:
            low = left
    return math.exp((low + high) / 2)


def expected_calibration_error(
    probabilities: NDArray[np.floating[Any]], labels: NDArray[np.integer[Any]], bins: int = ECE_BINS
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def binary_calibration_error(
    probabilities: NDArray[np.floating[Any]], presence: NDArray[Any], bins: int = ECE_BINS
) -> float:
    """Over every (clip, label): mean |share present - mean probability| over equal-width
    probability bins, weighted by bin size."""
    flat = np.asarray(probabilities, np.float64).ravel()
    truth = np.asarray(presence, bool).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for index, (low, high) in enumerate(itertools.pairwise(edges)):
        inside = (flat >= low) & ((flat < high) | (index == bins - 1) & (flat <= high))
        if inside.any():
            error += inside.mean() * abs(truth[inside].mean() - flat[inside].mean())
    return float(error)


def best_f1_thresholds(
    probabilities: NDArray[np.floating[Any]], presence: NDArray[Any]
) -> tuple[float, ...]:
    """Per label, the probability threshold with the highest F1 on these clips: a midpoint
    between two of their probabilities, so that a clip never sits on it (a tie goes to the
    threshold nearest 0.5; a label never or always present keeps 0.5)."""
    truth = np.asarray(presence, bool)
    chosen = []
    for label in range(truth.shape[1]):
        scores, present = np.asarray(probabilities[:, label], np.float64), truth[:, label]
        if present.all() or not present.any():
            chosen.append(0.5)
            continue
        order = np.argsort(-scores, kind="stable")
        ranked, hits = scores[order], np.cumsum(present[order])
        # Saying the k highest (k = 1..n) present: cut between the k-th and the next score,
        # only where the two differ (equal scores are said together).
        cuts = np.flatnonzero(np.append(ranked[:-1] > ranked[1:], True))
        said = cuts + 1
        f1 = 2 * hits[cuts] / (said + present.sum())
        below = np.append(ranked[1:], 0.0)[cuts]
        thresholds = np.where(said < len(ranked), (ranked[cuts] + below) / 2, ranked[cuts] / 2)
        best = np.lexsort((np.abs(thresholds - 0.5), -f1))[0]
        chosen.append(float(thresholds[best]))
    return tuple(chosen)


def unweighted_accuracy(
    predicted: NDArray[np.integer[Any]], labels: NDArray[np.integer[Any]]
) -> float:
    """Mean recall over the classes present in ``labels``."""
    return float(np.mean([(predicted[labels == c] == c).mean() for c in np.unique(labels)]))


@dataclass(frozen=True)
class PathReliability:
    """A path's development figures: what ``best_path`` compares and the card reports."""

    temperature: float
    dev_clips: int
    unweighted_accuracy: float
    ece_before: float  # expected calibration error of the raw softmax
    ece: float  # after temperature scaling
    paired_clips: int = 0  # development clips that feed every path
    paired_unweighted_accuracy: float | None = None  # this path's, on those clips
    thresholds: tuple[float, ...] | None = None  # multilabel: a probability per label

    def __post_init__(self) -> None:
        if self.thresholds is not None:  # a checkpoint's JSON gives a list
            object.__setattr__(self, "thresholds", tuple(self.thresholds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_thresholds(reliability: PathReliability | None, labels: int) -> NDArray[np.float64]:
    """A multi-label path's probability threshold per label (0.5 where development chose none)."""
    chosen = reliability.thresholds if reliability is not None else None
    return np.asarray(chosen if chosen is not None else (0.5,) * labels, np.float64)


# Clip ids, logits, and class indices (classification) or (clips, labels) presence (multilabel).
DevOutputs = tuple[Sequence[str], NDArray[Any], NDArray[Any]]


def calibrate(
    dev: Mapping[str, DevOutputs], kind: TaskKind = "classification"
) -> dict[str, PathReliability]:
    """Each path's temperature (and, for multilabel, thresholds) and figures from its
    development (ids, logits, labels)."""
    common: set[str] | None = None
    if all(path in dev for path in PATHS):
        common = set.intersection(*(set(dev[path][0]) for path in PATHS))
    result = {}
    for path, (ids, logits, labels) in dev.items():
        enough = len(ids) >= MIN_CALIBRATION_CLIPS
        # Rounded as it is saved: the figures are those of the calibration users get.
        temperature = round(fit_temperature(logits, labels, kind), 4) if enough else 1.0
        rows = [i for i, clip in enumerate(ids) if common and clip in common]
        if kind == "multilabel":
            probabilities = sigmoid(logits, temperature)
            thresholds = best_f1_thresholds(probabilities, labels) if enough else None
            said = probabilities >= np.asarray(thresholds or 0.5)  # 0.5: too few clips
            figure = weighted_accuracy(labels, said).mean()
            paired = weighted_accuracy(labels[rows], said[rows]).mean() if rows else None
            errors = (
                binary_calibration_error(sigmoid(logits), labels),
                binary_calibration_error(probabilities, labels),
            )
        else:
            thresholds = None
            figure = unweighted_accuracy(logits.argmax(axis=1), labels)
            paired = (
                unweighted_accuracy(logits[rows].argmax(axis=1), labels[rows]) if rows else None
            )
            errors = (
                expected_calibration_error(softmax(logits), labels),
                expected_calibration_error(softmax(logits, temperature), labels),
            )
        result[path] = PathReliability(
            temperature=temperature,
            dev_clips=len(ids),
            unweighted_accuracy=round(float(figure), 4),
            ece_before=round(errors[0], 4),
            ece=round(errors[1], 4),
            paired_clips=len(rows),
            paired_unweighted_accuracy=None if paired is None else round(float(paired), 4),
            thresholds=thresholds,
        )
    return result


def best_path(
    available: Sequence[PathName], reliability: Mapping[str, PathReliability]
) -> tuple[PathName | None, str]:
    """The most reliable of the ``available`` paths by the development figures, and why.

    Where enough development clips feed every path, the paths are compared on those clips;
    otherwise each single path by its own development unweighted accuracy, and the audio-visual
    path (unproven) is never best; nor is a path no development clip fed. The audio-visual path
    must beat both single paths to be chosen; a tie goes to the simpler path. Without development
    figures no path is named (None), and the reason says so.
    """
    if not available:
        return None, "no path"
    if len(available) == 1:
        return available[0], f"the only path this input allows ({available[0]})"
    if not any(path in reliability for path in available):
        return None, "none: the model has no development figures to choose a path by"
    fused = reliability.get("audiovisual")
    on_pairs = fused is not None and fused.paired_clips >= MIN_PAIRED_CLIPS
    scores: dict[PathName, float] = {}
    for path in available:
        figures = reliability.get(path)
        if figures is None:  # no development clip fed it: unproven, never best
            continue
        if on_pairs and figures.paired_unweighted_accuracy is not None:
            scores[path] = figures.paired_unweighted_accuracy
        elif path != "audiovisual":
            scores[path] = figures.unweighted_accuracy
    if not scores:
        return None, "none: the model has no development figures to choose a path by"
    chosen = max(scores, key=lambda path: (scores[path], -PATHS.index(path)))
    listed = ", ".join(f"{path} {score:.2f}" for path, score in scores.items())
    if on_pairs:
        assert fused is not None
        basis = f"on {fused.paired_clips} development clips that feed every path"
    else:
        basis = (
            "each on its development clips; audio-visual has too few paired ones to prove "
            f"itself on ({fused.paired_clips if fused else 0}, fewer than {MIN_PAIRED_CLIPS})"
        )
    return chosen, f"highest development unweighted accuracy {basis} ({listed})"
