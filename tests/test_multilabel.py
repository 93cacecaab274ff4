"""Multi-label emotions (a sigmoid per label, thresholds chosen on development clips) and the
sentiment figures of CMU-MOSEI, against scikit-learn and by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from helpers import demo_config
from vavl.answers import Answers
from vavl.calibration import PathReliability, best_f1_thresholds, calibrate, sigmoid
from vavl.config_files import apply_overrides, load_config
from vavl.data import Collator, Item
from vavl.errors import ConfigError
from vavl.experiment import run_experiment
from vavl.losses import task_loss
from vavl.metrics import multilabel_metrics, sentiment_metrics, weighted_accuracy
from vavl.models.ensemble import combine_outputs

LABELS = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")


@pytest.mark.parametrize("seed", range(4))
def test_multilabel_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(size=(300, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.02]
    said = np.where(rng.uniform(size=truth.shape) < 0.7, truth, rng.uniform(size=truth.shape) < 0.2)
    said[:, 5] = False  # a label never said: precision and F1 0
    ours = multilabel_metrics(truth, said, LABELS)
    for average in ("micro", "macro"):
        assert ours[f"f1_{average}"] == pytest.approx(
            sk.f1_score(truth, said, average=average, zero_division=0)
        )
    assert ours["exact_match"] == pytest.approx(sk.accuracy_score(truth, said))
    for k, label in enumerate(LABELS):
        scores = ours["per_class"][label]
        assert scores["weighted_accuracy"] == pytest.approx(
            sk.balanced_accuracy_score(truth[:, k], said[:, k])
        )
        assert scores["f1"] == pytest.approx(sk.f1_score(truth[:, k], said[:, k], zero_division=0))
        assert scores["weighted_f1"] == pytest.approx(
            sk.f1_score(truth[:, k], said[:, k], average="weighted", zero_division=0)
        )
        assert scores["support"] == truth[:, k].sum()
    assert ours["weighted_accuracy_mean"] == pytest.approx(
        np.mean([ours["per_class"][label]["weighted_accuracy"] for label in LABELS])
    )


def test_weighted_accuracy_is_the_papers_formula() -> None:
    # (TP * N / P + TN) / 2N with P = 4 clips with the label, N = 6 without: TP 3, TN 5.
    truth = np.array([[1], [1], [1], [1], [0], [0], [0], [0], [0], [0]], bool)
    said = np.array([[1], [1], [1], [0], [0], [0], [0], [0], [0], [1]], bool)
    assert weighted_accuracy(truth, said)[0] == pytest.approx((3 * 6 / 4 + 5) / (2 * 6))


def test_sentiment_metrics_by_hand_and_scikit_learn() -> None:
    truth = np.array([-3.0, -1.4, 0.0, 0.0, 0.6, 2.6, 1.0, -0.2])
    guess = np.array([-2.2, 0.4, 0.0, -0.6, 1.4, 3.9, 0.5, 0.3])
    figures = sentiment_metrics(truth, guess)
    assert figures["mae"] == pytest.approx(sk.mean_absolute_error(truth, guess))
    assert figures["pearson"] == pytest.approx(np.corrcoef(truth, guess)[0, 1])
    # Without the two zeros: signs agree for -3, 0.6, 2.6, 1.0 (4 of 6).
    assert figures["acc2"] == pytest.approx(4 / 6)
    nonzero = truth != 0
    assert figures["f1"] == pytest.approx(
        sk.f1_score(truth[nonzero] > 0, guess[nonzero] > 0, average="weighted")
    )
    # With them: non-negative vs negative; 0 vs 0.0 agrees, 0 vs -0.6 does not.
    assert figures["acc2_with_zero"] == pytest.approx(np.mean((truth >= 0) == (guess >= 0)))
    # Rounded into -3..3: -3/-2, -1/0, 0/0, 0/-1, 1/1, 3/3, 1/0 (0.5 rounds to even), 0/0.
    assert figures["acc7"] == pytest.approx(4 / 8)


def test_thresholds_are_chosen_for_each_labels_f1() -> None:
    # Label 0 is present exactly when its probability is above 0.3; label 1 above 0.8.
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(size=(200, 2))
    truth = np.stack([probabilities[:, 0] > 0.3, probabilities[:, 1] > 0.8], axis=1)
    thresholds = best_f1_thresholds(probabilities, truth)
    # F1 1, cut midway between the clips with the label and those without.
    for label, threshold in enumerate(thresholds):
        inside, outside = (
            probabilities[truth[:, label], label],
            probabilities[~truth[:, label], label],
        )
        assert threshold == pytest.approx((inside.min() + outside.max()) / 2)
    assert np.array_equal(probabilities >= np.array(thresholds), truth)
    assert 0.29 < thresholds[0] < 0.32 and 0.79 < thresholds[1] < 0.82
    assert best_f1_thresholds(probabilities, np.zeros_like(truth)) == (0.5, 0.5)


def test_calibration_fits_temperature_and_thresholds_of_a_multilabel_path() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(size=(400, 3)) < 0.3
    # Overconfident logits: right in sign 80% of the time, but five times too large.
    sign = np.where(rng.uniform(size=truth.shape) < 0.8, truth, ~truth) * 2.0 - 1.0
    logits = 5.0 * sign * rng.uniform(0.5, 1.5, truth.shape)
    ids = [f"clip{i}" for i in range(400)]
    (figures,) = calibrate({"audio": (ids, logits, truth)}, "multilabel").values()
    assert figures.temperature > 2.0  # softened
    assert figures.ece < figures.ece_before
    assert figures.thresholds is not None and len(figures.thresholds) == 3
    said = sigmoid(logits, figures.temperature) >= np.asarray(figures.thresholds)
    assert figures.unweighted_accuracy == pytest.approx(
        weighted_accuracy(truth, said).mean(), abs=1e-4
    )
    assert figures.unweighted_accuracy > 0.75


def test_an_answer_says_every_label_at_or_above_its_threshold() -> None:
    task = demo_config("task.kind=multilabel", f"task.labels=[{', '.join(LABELS[:3])}]").task
    reliability = PathReliability(1.0, 50, 0.7, 0.1, 0.1, thresholds=(0.5, 0.2, 0.9))
    answers = Answers(task, {"audio": reliability}, "m")
    logits = np.log(np.array([0.6, 0.25, 0.8]) / (1 - np.array([0.6, 0.25, 0.8])))
    (answer,) = answers.paths({"audio": logits.astype(np.float32)}).values()
    assert answer.present == ["happiness", "sadness"] and answer.label == "happiness+sadness"
    assert answer.probabilities["anger"] == pytest.approx(0.8)
    (none,) = answers.paths({"audio": np.full(3, -4.0, np.float32)}).values()
    assert none.present == [] and none.label == "none"


def test_an_ensemble_of_labels_averages_probabilities() -> None:
    members = [torch.tensor([[2.0, -1.0]]), torch.tensor([[0.0, -3.0]])]
    combined = torch.sigmoid(combine_outputs(members, "multilabel"))
    expected = torch.stack([torch.sigmoid(m) for m in members]).mean(dim=0)
    assert torch.allclose(combined, expected, atol=1e-6)


def test_a_multilabel_model_learns_labels_present(tmp_path: Path) -> None:
    config = demo_config(
        "task.kind=multilabel",
        "task.labels=[happiness, sadness, anger, surprise]",
        "training.epochs=4",
        "data.n_train=160",
        "data.n_dev=48",
        "data.n_test=48",
    )
    result = run_experiment(config, tmp_path)
    assert set(result.test) == {"audio", "visual", "audiovisual"}
    # Each label is in about 40% of the synthetic clips and learnable from either stream.
    for path, scores in result.test.items():
        assert scores["weighted_accuracy_mean"] > 0.7, (path, scores)
        assert scores["f1_macro"] > 0.6, (path, scores)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["test"]["audio"]["per_class"]) == {
        "happiness",
        "sadness",
        "anger",
        "surprise",
    }
    with open(tmp_path / "predictions" / "test.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"] == "audio"]
    assert len(rows) == metrics["test"]["audio"]["n"] and "p_surprise" in rows[0]
    right = np.mean([row["prediction"] == row["target"] for row in rows])
    assert right == pytest.approx(metrics["test"]["audio"]["exact_match"])
    report = (tmp_path / "report.html").read_text()
    assert "WA mean" in report and "wF1 surprise" in report


@pytest.mark.parametrize("scale", [None, 3.0])
def test_targets_are_presence_or_scaled_intensity(scale: float | None) -> None:
    overrides = ["task.kind=multilabel", "task.labels=[happiness, sadness, fear]"]
    task = demo_config(*overrides, f"task.intensity_scale={scale or 'null'}").task
    intensities = np.array([[0.0, 1.5, 3.0], [0.33, 0.0, 4.0]], np.float32)
    items = [
        Item(f"clip{k}", audio=np.ones((3, 32), np.float32), attributes=row)
        for k, row in enumerate(intensities)
    ]
    target = Collator(task)(items).target
    assert target is not None
    expected = (
        (intensities > 0).astype(np.float32) if scale is None else np.clip(intensities / 3, 0, 1)
    )
    assert target.numpy() == pytest.approx(expected)
    loss = task_loss("multilabel", torch.zeros(2, 3), target)
    assert float(loss) == pytest.approx(np.log(2))  # p = 0.5 costs log 2 whatever the target


@pytest.mark.parametrize(
    ("config", "override", "message"),
    [
        ("mosei", "task.class_weights=balanced", "one class per clip"),
        ("mosei", "training.pair_unpaired=true", "a multilabel clip has none"),
        ("mosei-sentiment", "data.scale_attributes=train-range", "scale_attributes: none"),
    ],
)
def test_settings_a_task_cannot_use_are_one_line(config: str, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_config(config), [override])
