from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vavl.config import TaskConfig
from vavl.data import Item
from vavl.losses import (
    balanced_class_weights,
    ccc_loss,
    classification_loss,
    concordance_correlation,
    reconstruction_loss,
)
from vavl.metrics import concordance_correlation as numpy_ccc
from vavl.training import class_weights_for


def test_soft_labels_that_are_one_hot_equal_hard_labels() -> None:
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    hard = classification_loss(logits, labels)
    soft = classification_loss(logits, F.one_hot(labels, 4).float())
    assert torch.allclose(hard, soft)


def test_soft_labels_are_proportions_of_votes() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    votes = torch.tensor([[3.0, 1.0, 0.0]])  # raw counts are normalised to 0.75 / 0.25 / 0
    log_p = torch.log_softmax(logits, dim=-1)[0]
    expected = -(0.75 * log_p[0] + 0.25 * log_p[1])
    assert torch.allclose(classification_loss(logits, votes), expected)


def test_class_weights_weight_each_clip_by_its_class() -> None:
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 0, 1, 2])
    weights = torch.tensor([1.0, 2.0, 3.0])
    per_clip = F.cross_entropy(logits, labels, reduction="none")
    expected = (per_clip * weights[labels]).sum() / weights[labels].sum()
    assert torch.allclose(classification_loss(logits, labels, weights), expected)


def test_balanced_weights_by_hand() -> None:
    weights = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert torch.allclose(weights, torch.tensor([4 / 9, 4 / 3, 0.0]))


def test_ccc_by_hand_and_against_numpy() -> None:
    truth = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    prediction = torch.tensor([[2.0], [3.0], [4.0], [5.0]])  # shifted by one
    # var 1.25 each, covariance 1.25, mean difference 1: 2.5 / (2.5 + 1)
    assert math.isclose(
        float(concordance_correlation(prediction, truth)[0]), 2.5 / 3.5, rel_tol=1e-6
    )
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    ours = concordance_correlation(torch.tensor(a), torch.tensor(b))
    assert np.allclose(ours.numpy(), [numpy_ccc(a[:, k], b[:, k]) for k in range(3)], atol=1e-6)


def test_ccc_loss_sums_over_any_number_of_attributes() -> None:
    truth = torch.randn(20, 5)
    assert float(ccc_loss(truth.clone(), truth)) < 1e-6
    centred = truth - truth.mean(dim=0)
    assert math.isclose(float(ccc_loss(-centred, centred)), 10.0, rel_tol=1e-5)  # CCC -1 each


def test_reconstruction_target_ignores_padding() -> None:
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [99.0, 99.0]]])
    mask = torch.tensor([[True, True, False]])
    assert float(reconstruction_loss(torch.tensor([[2.0, 3.0]]), features, mask)) == 0.0


def test_balanced_weights_are_each_paths_own() -> None:
    """Speech balanced over two classes, faces nine to one: each head is balanced over the
    clips it learns from, and the fusion head over the pairs it is given."""
    sound, face = np.zeros((4, 2), np.float32), np.zeros((1, 2), np.float32)
    items = [Item(f"a{i}", audio=sound, label=i % 2) for i in range(10)]
    items += [Item(f"v{i}", visual=face, label=int(i == 0)) for i in range(10)]
    task = TaskConfig(kind="classification", labels=("angry", "sad"), class_weights="balanced")
    weights = class_weights_for(task, items, paired=True)
    assert weights is not None
    assert torch.allclose(weights["audio"], torch.tensor([1.0, 1.0]))
    assert torch.allclose(weights["visual"], torch.tensor([10 / 18, 10 / 2]))
    # Pairs are joined within a class: five of class 0 and one of class 1.
    assert torch.allclose(weights["audiovisual"], torch.tensor([6 / 10, 6 / 2]))
    dampened = class_weights_for(task.model_copy(update={"class_weights": "balanced-sqrt"}), items)
    assert dampened is not None
    assert torch.allclose(dampened["visual"], torch.tensor([10 / 18, 10 / 2]) ** 0.5)
    given = TaskConfig(kind="classification", labels=("angry", "sad"), class_weights=(1.0, 3.0))
    fixed = class_weights_for(given, items)
    assert fixed is not None and all(
        torch.equal(w, torch.tensor([1.0, 3.0])) for w in fixed.values()
    )
