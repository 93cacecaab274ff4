"""The contract every model and VAVL ablation meets: batch independence, the paths its inputs
allow, learning a synthetic signal, and a save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import demo_config
from vavl.checkpoint import load_checkpoint, model_from_checkpoint
from vavl.config import ExperimentConfig
from vavl.evaluation import evaluate_predictions
from vavl.experiment import run_experiment
from vavl.inference import InferenceEngine
from vavl.methods import METHODS
from vavl.models import MODELS, build_model
from vavl.preparation import prepare

SMALL = (
    "model.projection_dim=16",
    "model.model_dim=32",
    "model.heads=4",
    "model.audio_blocks=1",
    "model.visual_blocks=1",
    "model.shared_blocks=1",
    "model.cross_layers=2",
    "model.aux_hidden=[32]",
    "model.head_hidden=[32]",
    "data.n_train=192",
    "data.n_dev=48",
    "data.n_test=64",
)
ALL_PATHS = {"audio", "visual", "audiovisual"}
# Training is checked for each architecture and for the joint recipe (VAVL's three-step training
# and round trip are tested in test_training.py and test_checkpoint.py); the other ablations are
# switches of these (their training is reported by benchmarks/ablations.py).
TRAINED = (*(name for name in MODELS if name != "vavl"), "vavl-joint")
# The reference's AuxFormer (causal attention, embedded again at every stack) learns more slowly.
EPOCHS = {"auxformer": 6}


def method_config(method: str, *overrides: str) -> ExperimentConfig:
    # The method's own sizes (AuxFormer's width 50) give way to small ones here.
    return demo_config(*METHODS[method], *SMALL, *overrides)


def expected_paths(method: str) -> set[str]:
    return {"audio", "visual"} if method == "unimodal" else ALL_PATHS


def paired_inputs(config: ExperimentConfig, batch: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(batch, 23, config.model.audio_dim, generator=generator)
    visual = torch.randn(batch, 17, config.model.visual_dim, generator=generator)
    audio_mask = torch.ones(batch, 23, dtype=torch.bool)
    visual_mask = torch.ones(batch, 17, dtype=torch.bool)
    audio_mask[0, 9:] = False
    visual_mask[0, 6:] = False
    visual_mask[0, 2] = False  # a frame without a face inside the clip
    audio[0, 9:] = 100.0  # junk in the padding must not matter
    visual[0, 6:] = -100.0
    visual[0, 2] = 1e3
    return {"audio": audio, "audio_mask": audio_mask, "visual": visual, "visual_mask": visual_mask}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_clip_is_the_same_alone_and_in_any_padded_batch(method: str) -> None:
    config = method_config(method)
    torch.manual_seed(0)
    model = build_model(config.model, config.task.output_dim).eval()
    inputs = paired_inputs(config)
    alone_visual = inputs["visual"][:1, :6].clone()
    alone_mask = inputs["visual_mask"][:1, :6].clone()
    with torch.no_grad():
        batched = model(**inputs).predictions
        alone = model(
            audio=inputs["audio"][:1, :9], visual=alone_visual, visual_mask=alone_mask
        ).predictions
        inputs["audio"][1:] = torch.randn_like(inputs["audio"][1:]) * 5
        inputs["visual"][1:] = torch.randn_like(inputs["visual"][1:]) * 5
        other_neighbours = model(**inputs).predictions
    assert set(batched) == expected_paths(method)
    if config.model.relative_positions == "reference":
        # The reference's relative positions depend on the padded length (README): a clip's
        # output changes with its batch; that is what the switch reproduces.
        assert any((batched[p][0] - alone[p][0]).abs().max() > 1e-4 for p in batched)
        return
    for path in batched:
        assert (batched[path][0] - alone[path][0]).abs().max() < 1e-5, path
        assert (batched[path][0] - other_neighbours[path][0]).abs().max() < 1e-5, path


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_path_appears_when_its_inputs_do(method: str) -> None:
    config = method_config(method)
    model = build_model(config.model, config.task.output_dim).eval()
    inputs = paired_inputs(config)
    with torch.no_grad():
        audio_only = model(audio=inputs["audio"], audio_mask=inputs["audio_mask"])
        visual_only = model(visual=inputs["visual"], visual_mask=inputs["visual_mask"])
        inputs["visual_mask"][1] = False  # clip 1 has no face at all
        mixed = model(**inputs)
    assert set(audio_only.predictions) == {"audio"}
    assert set(visual_only.predictions) == {"visual"}
    assert mixed.present["visual"].tolist() == [True, False, True, True]
    assert torch.isnan(mixed.predictions["visual"][1]).all()
    assert not torch.isnan(mixed.predictions["audio"]).any()
    if "audiovisual" in mixed.predictions:
        assert mixed.present["audiovisual"].tolist() == [True, False, True, True]
        assert torch.isnan(mixed.predictions["audiovisual"][1]).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", TRAINED)
def test_learns_the_synthetic_signal_and_survives_a_round_trip(method: str, tmp_path: Path) -> None:
    config = method_config(
        method, f"training.epochs={EPOCHS.get(method, 4)}", "training.progress=false"
    )
    result = run_experiment(config, tmp_path)
    assert set(result.test) == expected_paths(method)
    for path, metrics in result.test.items():  # 4 classes: chance is 0.25
        assert metrics["accuracy"] > 0.6, (method, path, metrics["accuracy"])

    checkpoint = load_checkpoint(tmp_path / "best.pt")
    assert checkpoint.config == config
    model = model_from_checkpoint(checkpoint)
    test = prepare(config).split(1)["test"]
    again = evaluate_predictions(
        config.task,
        InferenceEngine.for_model(model, config.task, checkpoint.normalizer).outputs(test),
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for path in result.test:
        assert again[path]["accuracy"] == pytest.approx(result.test[path]["accuracy"])
        assert saved["test"][path]["accuracy"] == pytest.approx(again[path]["accuracy"])
