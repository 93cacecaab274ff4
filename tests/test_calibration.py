"""Honest paths: calibrated probabilities, the best path by development figures, pairs, crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import demo_config
from vavl.augmentation import frame_dropout, random_crop
from vavl.calibration import (
    PathReliability,
    best_path,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from vavl.checkpoint import load_checkpoint
from vavl.data import Item
from vavl.experiment import run_experiment
from vavl.sampling import pair_unpaired


def test_the_fitted_temperature_is_the_one_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 2, (4000, 6))
    probabilities = softmax(scores)
    labels = np.array([rng.choice(6, p=p / p.sum()) for p in probabilities.astype(np.float64)])
    # A network that is 3x overconfident: its logits are the true ones times 3.
    assert fit_temperature(scores * 3.0, labels) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(scores, labels) == pytest.approx(1.0, rel=0.1)
    overconfident = expected_calibration_error(softmax(scores * 3.0), labels)
    assert expected_calibration_error(softmax(scores * 3.0, 3.0), labels) < overconfident / 2


def test_expected_calibration_error_by_hand() -> None:
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    labels = np.array([0, 1, 0, 0])
    # Bin (0.9, 1]: 2 clips, confidence 0.95, accuracy 0.5; bin (0.5, 0.6]: 2 clips,
    # confidence 0.55, accuracy 0.5.  ECE = 0.5 * 0.45 + 0.5 * 0.05 = 0.25.
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.25)


def _figures(ua: float, paired: float | None, clips: int = 0) -> PathReliability:
    return PathReliability(1.0, 50, ua, 0.1, 0.05, clips, paired)


def test_a_near_uniform_audio_visual_path_is_never_best() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 10)
    ids = [f"clip{i}" for i in range(60)]
    informative = np.eye(6)[labels] * 3 + rng.normal(0, 1, (60, 6))
    near_uniform = rng.normal(0, 1e-3, (60, 6))  # a head that learned nothing
    dev = {
        "audio": (ids, informative, labels),
        "visual": (ids, informative * 0.5 + rng.normal(0, 1, (60, 6)), labels),
        "audiovisual": (ids, near_uniform, labels),
    }
    figures = calibrate(dev)
    assert figures["audiovisual"].paired_clips == 60
    assert figures["audiovisual"].paired_unweighted_accuracy < 0.35  # type: ignore[operator]
    chosen, reason = best_path(["audio", "visual", "audiovisual"], figures)
    assert chosen == "audio" and "60 development clips" in reason
    assert best_path(["visual"], figures)[0] == "visual"
    # Calibrated, the useless path still says it does not know.
    calibrated = softmax(near_uniform, figures["audiovisual"].temperature)
    assert calibrated.max() < 0.5


def test_audio_visual_is_best_only_when_it_beats_both_on_pairs() -> None:
    wins = {
        "audio": _figures(0.6, 0.55, 40),
        "visual": _figures(0.7, 0.5, 40),
        "audiovisual": _figures(0.8, 0.75, 40),
    }
    assert best_path(["audio", "visual", "audiovisual"], wins)[0] == "audiovisual"
    tie = {**wins, "audiovisual": _figures(0.8, 0.55, 40)}
    assert best_path(["audio", "visual", "audiovisual"], tie)[0] == "audio"
    # Without paired development clips the fused path is unproven, whatever its own figure.
    unpaired = {p: _figures(ua, None) for p, ua in (("audio", 0.5), ("visual", 0.6))}
    unpaired["audiovisual"] = _figures(0.9, None)
    chosen, reason = best_path(["audio", "visual", "audiovisual"], unpaired)
    assert chosen == "visual" and "too few paired ones" in reason
    few = {**wins, "audiovisual": _figures(0.8, 0.9, 12)}  # 12 pairs prove nothing
    assert best_path(["audio", "visual", "audiovisual"], few)[0] == "visual"
    assert best_path(["audio", "visual"], {}) == (
        None,
        "none: the model has no development figures to choose a path by",
    )
    # No development pair fed the fused path (the demo's mixed set): the single paths compete.
    no_pairs = {p: _figures(ua, None) for p, ua in (("audio", 0.5), ("visual", 0.6))}
    chosen, reason = best_path(["audio", "visual", "audiovisual"], no_pairs)
    assert chosen == "visual" and "audio 0.50, visual 0.60" in reason
    assert best_path(["audio", "audiovisual"], {"audiovisual": _figures(0.9, None)})[0] is None


def test_training_stores_calibration_and_paired_development_figures(tmp_path: Path) -> None:
    config = demo_config("training.epochs=2", "data.n_train=96", "data.n_dev=48", "data.n_test=24")
    run_experiment(config, tmp_path / "run", progress=False)
    figures = load_checkpoint(tmp_path / "run" / "best.pt").calibration
    assert set(figures) == {"audio", "visual", "audiovisual"}
    paired = figures["audiovisual"].dev_clips
    assert paired > 30
    for path, values in figures.items():
        assert values.dev_clips >= paired and values.paired_clips == paired, path
        assert 0.05 <= values.temperature <= 20 and 0 <= values.ece <= 1


def _item(name: str, label: int, audio: bool, visual: bool) -> Item:
    return Item(
        id=name,
        audio=np.ones((5, 3), np.float32) * label if audio else None,
        visual=np.ones((2, 4), np.float32) * label if visual else None,
        label=label,
    )


def test_pairing_joins_unpaired_clips_of_one_class_and_keeps_every_clip() -> None:
    items = [_item(f"a{i}", i % 3, True, False) for i in range(9)]
    items += [_item(f"v{i}", i % 2, False, True) for i in range(8)]
    items.append(_item("both", 1, True, True))
    paired = pair_unpaired(items, (0, 1))
    pairs = [item for item in paired if "+" in item.id]
    assert len(pairs) == 3 + 3  # class 0: 3 sounds, 4 faces; class 1: 3 and 4; class 2: 3 and 0
    for pair in pairs:
        assert pair.audio is not None and pair.visual is not None
        assert pair.audio[0, 0] == pair.visual[0, 0] == pair.label  # the same class
    used = [part for item in paired for part in item.id.split("+")]
    assert sorted(used) == sorted(item.id for item in items)  # every clip once
    assert [i.id for i in pair_unpaired(items, (0, 1))] == [i.id for i in paired]
    assert [i.id for i in pair_unpaired(items, (0, 2))] != [i.id for i in paired]


def test_random_crops_keep_a_stretch_of_every_clip() -> None:
    torch.manual_seed(0)
    mask = torch.zeros(200, 50, dtype=torch.bool)
    mask[:, :40] = True
    mask[:100, 40:] = True  # half the clips are longer
    mask[5] = False  # a clip without this modality stays without it
    cropped = random_crop(mask, 0.5)
    assert not cropped[5].any()
    for row in range(200):
        if row == 5:
            continue
        kept = cropped[row].nonzero().squeeze(-1)
        span = int(mask[row].sum())
        assert len(kept) >= 0.5 * span and bool(mask[row][kept].all())
        assert int(kept[-1] - kept[0]) + 1 == len(kept)  # contiguous
    assert cropped.sum() < mask.sum()
    dropped = frame_dropout(mask, 0.3)
    assert dropped.sum() / mask.sum() == pytest.approx(0.7, abs=0.03)
    assert dropped.any(dim=1).sum() == mask.any(dim=1).sum()
    assert torch.equal(random_crop(mask, 1.0), mask)
