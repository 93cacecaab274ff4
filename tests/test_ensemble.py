"""Ensembles: members trained as runs of their own, combined into one calibrated checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import demo_config, small_model_config
from vavl.checkpoint import load_checkpoint, model_from_checkpoint
from vavl.cli import main
from vavl.config_files import apply_overrides
from vavl.errors import ConfigError
from vavl.experiment import evaluate_run, run_experiment
from vavl.models import VAVL, Ensemble


def _inputs(batch: int = 3, audio_dim: int = 12, visual_dim: int = 10) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    audio_mask = torch.ones(batch, 9, dtype=torch.bool)
    audio_mask[0] = False  # the first clip has no audio
    return {
        "audio": torch.randn(batch, 9, audio_dim),
        "audio_mask": audio_mask,
        "visual": torch.randn(batch, 7, visual_dim),
        "visual_mask": torch.ones(batch, 7, dtype=torch.bool),
    }


def test_an_ensemble_answers_the_mean_of_its_members_probabilities() -> None:
    torch.manual_seed(0)
    members = [VAVL(small_model_config(), 4).eval() for _ in range(3)]
    ensemble = Ensemble(members, "classification").eval()
    inputs = _inputs()
    with torch.no_grad():
        combined = ensemble(**inputs)
        alone = [member(**inputs) for member in members]
    assert set(combined.predictions) == {"audio", "visual", "audiovisual"}
    for path, logits in combined.predictions.items():
        present = combined.present[path]
        expected = torch.stack([o.predictions[path].softmax(-1) for o in alone]).mean(0)
        assert torch.allclose(logits[present].softmax(-1), expected[present], atol=1e-6)
        # the members differ, so the mean is none of them
        first = alone[0].predictions[path][present].softmax(-1)
        assert not torch.allclose(expected[present], first)
    assert not bool(combined.present["audio"][0])  # no audio, no audio answer
    assert torch.isnan(combined.predictions["audio"][0]).all()


def test_a_regression_ensemble_answers_the_mean_of_its_members_values() -> None:
    torch.manual_seed(0)
    members = [VAVL(small_model_config(), 3).eval() for _ in range(2)]
    inputs = _inputs()
    with torch.no_grad():
        combined = Ensemble(members, "regression").eval()(**inputs).predictions["visual"]
        values = [member(**inputs).predictions["visual"] for member in members]
    assert torch.allclose(combined, (values[0] + values[1]) / 2, atol=1e-6)


def _probabilities(run_dir: Path) -> dict[tuple[str, str], np.ndarray]:
    with open(run_dir / "predictions" / "test.csv", newline="") as handle:
        return {
            (row["id"], row["path"]): np.array(
                [float(value) for key, value in row.items() if key.startswith("p_")]
            )
            for row in csv.DictReader(handle)
        }


@pytest.mark.slow
def test_training_an_ensemble_trains_each_member_alone_and_combines_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_config(
        "model.model_dim=32", "model.heads=2", "model.head_hidden=[32]", "training.epochs=2",
        "training.batch_size=16", "training.ensemble=2", "data.n_train=64", "data.n_dev=32",
        "data.n_test=32",
    )  # fmt: skip
    run_dir = tmp_path / "run"
    result = run_experiment(config, run_dir, progress=False)
    for index, seed in ((1, 0), (2, 1)):
        member = load_checkpoint(run_dir / f"member-{index}" / "best.pt")
        assert member.config.training.seed == seed and member.config.training.ensemble == 1
        assert len(member.history) >= 1 and (run_dir / f"member-{index}" / "report.html").is_file()
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint.config.training.ensemble == 2
    assert isinstance(model_from_checkpoint(checkpoint), Ensemble)
    # Calibrated as one model: its development figures are the ensemble's own.
    assert set(checkpoint.calibration) == {"audio", "visual", "audiovisual"}
    for path, figures in checkpoint.calibration.items():
        own = _unweighted_accuracy(run_dir / "predictions" / "dev.csv", path)
        assert figures.unweighted_accuracy == pytest.approx(own, abs=1e-3)
    # Its test probabilities are the mean of its members' (before calibration, as they are).
    combined = _probabilities(run_dir)
    members = [_probabilities(run_dir / f"member-{k}") for k in (1, 2)]
    assert combined.keys() == members[0].keys()
    for key, shares in combined.items():
        assert np.allclose(shares, (members[0][key] + members[1][key]) / 2, atol=2e-5)
    assert set(result.test) == {"audio", "visual", "audiovisual"}
    report = (run_dir / "report.html").read_text()
    assert "An ensemble of 2 members" in report and "member-2 (seed 1)" in report
    # vavl info says what it is.
    assert main(["info", str(run_dir / "best.pt")]) == 0
    assert "model: vavl (ensemble of 2 members)" in capsys.readouterr().out
    # Re-scored from its directory alone, the report still lists the members.
    again = evaluate_run(run_dir, progress=False)
    assert again.test == result.test
    assert "member-2 (seed 1)" in (run_dir / "report.html").read_text()
    # Running it again keeps the members (nothing trained or rewritten), the same model.
    written = {k: (run_dir / f"member-{k}" / "best.pt").stat().st_mtime_ns for k in (1, 2)}
    assert run_experiment(config, run_dir, progress=False).test == result.test
    assert {k: (run_dir / f"member-{k}" / "best.pt").stat().st_mtime_ns for k in (1, 2)} == written
    # One more member: the two finished ones are kept, the third is trained.
    bigger = config.model_copy(
        update={"training": config.training.model_copy(update={"ensemble": 3})}
    )
    run_experiment(bigger, run_dir, progress=False)
    assert {k: (run_dir / f"member-{k}" / "best.pt").stat().st_mtime_ns for k in (1, 2)} == written
    assert load_checkpoint(run_dir / "member-3" / "best.pt").config.training.seed == 2
    assert load_checkpoint(run_dir / "best.pt").config.training.ensemble == 3
    # Another config (not only another size) is refused, and so is a single run's directory.
    other = apply_overrides(bigger, ["training.learning_rate=0.01"])
    with pytest.raises(ConfigError, match=r"training\.learning_rate"):
        run_experiment(other, run_dir, progress=False)
    with pytest.raises(ConfigError, match=r"training\.ensemble"):
        run_experiment(config, run_dir / "member-1", progress=False)


def _unweighted_accuracy(csv_path: Path, path: str) -> float:
    with open(csv_path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"] == path]
    classes = sorted({row["target"] for row in rows})
    recalls = [
        np.mean([row["prediction"] == label for row in rows if row["target"] == label])
        for label in classes
    ]
    return float(np.mean(recalls))


def test_an_ensemble_exports_to_onnx_and_agrees_with_pytorch(tmp_path: Path) -> None:
    from vavl.checkpoint import Checkpoint, save_checkpoint
    from vavl.export import OnnxModel, export_onnx
    from vavl.normalization import FeatureNormalizer

    config = demo_config(
        "model.projection_dim=8", "model.model_dim=16", "model.heads=2", "model.head_hidden=[8]",
        "training.ensemble=2",
    )  # fmt: skip
    torch.manual_seed(0)
    outputs = config.task.output_dim
    model = Ensemble([VAVL(config.model, outputs) for _ in range(2)], "classification").eval()
    saved = Checkpoint(config, model.state_dict(), FeatureNormalizer(), {"audio": None}, members=2)
    path = save_checkpoint(saved, tmp_path / "ensemble.pt")
    export_onnx(path, tmp_path / "onnx")
    inputs = _inputs(audio_dim=config.model.audio_dim, visual_dim=config.model.visual_dim)
    inputs["audio_mask"][0, :4] = True  # every clip feeds every path here
    with torch.no_grad():
        expected = model(**inputs).predictions
    onnx = OnnxModel(tmp_path / "onnx")
    arrays = {name: value.numpy() for name, value in inputs.items()}
    for path_name in ("audio", "visual", "audiovisual"):
        difference = np.abs(onnx.run(path_name, arrays) - expected[path_name].numpy()).max()
        assert difference < 1e-4, (path_name, difference)
