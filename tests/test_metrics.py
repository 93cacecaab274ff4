from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from vavl.metrics import classification_metrics, regression_metrics

LABELS = ("angry", "sad", "disgust", "fear", "neutral", "happy")


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, 200)
    # Mostly right, sometimes a class never predicted, sometimes one never true.
    prediction = np.where(rng.uniform(size=200) < 0.6, truth, rng.integers(0, 5, 200))
    truth[truth == 5] = seed % 5 if seed % 2 else 5
    ours = classification_metrics(truth, prediction, LABELS)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(truth, prediction))
    assert ours["unweighted_accuracy"] == pytest.approx(
        sk.balanced_accuracy_score(truth, prediction)
    )
    for average in ("macro", "micro", "weighted"):
        assert ours[f"f1_{average}"] == pytest.approx(
            sk.f1_score(truth, prediction, average=average, zero_division=0)
        )
    assert ours["precision_macro"] == pytest.approx(
        sk.precision_score(truth, prediction, average="macro", zero_division=0)
    )
    assert ours["recall_macro"] == pytest.approx(
        sk.recall_score(truth, prediction, average="macro", zero_division=0)
    )
    expected_matrix = sk.confusion_matrix(truth, prediction, labels=range(6))
    assert np.array_equal(ours["confusion_matrix"], expected_matrix)


def test_classification_metrics_by_hand() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    prediction = [0, 0, 1, 1, 2, 2]
    result = classification_metrics(truth, prediction, ("a", "b", "c"))
    # class a: P 2/2 R 2/3; b: P 1/2 R 1/2; c: P 1/2 R 1/1
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["unweighted_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert result["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert result["f1_macro"] == pytest.approx(sum(f1) / 3)
    assert result["f1_weighted"] == pytest.approx((3 * f1[0] + 2 * f1[1] + f1[2]) / 6)
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result["per_class"]["b"]["support"] == 2


def test_regression_metrics_by_hand_and_against_numpy() -> None:
    truth = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0]])
    prediction = np.array([[2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
    result = regression_metrics(truth, prediction, ("arousal", "valence"))
    arousal, valence = result["per_attribute"]["arousal"], result["per_attribute"]["valence"]
    assert arousal["ccc"] == pytest.approx(2.5 / 3.5)
    assert arousal["pearson"] == pytest.approx(1.0)
    assert arousal["mse"] == pytest.approx(1.0)
    assert valence["pearson"] == pytest.approx(np.corrcoef(truth[:, 1], prediction[:, 1])[0, 1])
    assert valence["ccc"] == pytest.approx(-1.0)
    assert valence["mse"] == pytest.approx(sk.mean_squared_error(truth[:, 1], prediction[:, 1]))
    assert result["ccc_mean"] == pytest.approx((2.5 / 3.5 - 1.0) / 2)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        classification_metrics([0, 1, 1], [0, 1], ("a", "b"))
