"""Mixed precision and non-finite updates: bfloat16 autocast and float16 with a loss scaler on
the CPU (and on CUDA when a GPU is present), and a step whose gradients are not finite is
skipped, logged and never reaches the weights or a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from helpers import demo_config
from vavl.data import Batch, Collator
from vavl.errors import TrainingError
from vavl.models import build_model
from vavl.normalization import FeatureNormalizer
from vavl.preparation import prepare
from vavl.training import Trainer, build_recipe
from vavl.training.recipes import Recipe

SMALL = ("model.model_dim=32", "model.heads=2", "data.n_train=32", "data.n_dev=16",
         "data.n_test=16", "training.batch_size=16")  # fmt: skip
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
    ),
]


def recipe_and_batch(amp: str, device: str) -> tuple[Recipe, Batch]:
    config = demo_config(*SMALL, f"training.amp={amp}", f"training.device={device}")
    items = prepare(config).split(1)["train"][:16]
    torch.manual_seed(0)
    model = build_model(config.model, config.task.output_dim).to(device)
    recipe = build_recipe(model, config, torch.device(device), None)
    batch = Collator(config.task, FeatureNormalizer.fit(items))(items).to(torch.device(device))
    return recipe, batch


def weights(recipe: Recipe) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in recipe.model.state_dict().items()}


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_autocast_trains(device: str) -> None:
    recipe, batch = recipe_and_batch("bfloat16", device)
    assert recipe.amp_dtype == torch.bfloat16 and not recipe.scaler.is_enabled()
    with recipe.autocast():
        output = recipe.model(**batch.inputs())
    assert output.predictions["audiovisual"].dtype == torch.bfloat16
    first = recipe.train_step(batch)
    for _ in range(5):
        last = recipe.train_step(batch)
    assert last["audio_loss"] < first["audio_loss"] and recipe.skipped_steps == 0
    assert all(value.isfinite().all() for value in weights(recipe).values())


@pytest.mark.parametrize("device", DEVICES)
def test_float16_scales_the_loss_and_skips_an_overflowing_step(
    device: str, caplog: pytest.LogCaptureFixture
) -> None:
    recipe, batch = recipe_and_batch("float16", device)
    assert recipe.amp_dtype == torch.float16 and recipe.scaler.is_enabled()
    before = weights(recipe)
    recipe.train_step(batch)
    assert any(not torch.equal(before[n], v) for n, v in weights(recipe).items())
    scale, kept = recipe.scaler.get_scale(), weights(recipe)
    assert batch.audio is not None
    batch.audio[0, 0, 0] = float("inf")  # one bad frame: the audio step's gradients overflow
    with caplog.at_level(logging.WARNING, logger="vavl"):
        recipe.unimodal_step("audio", batch)
    assert "audio step skipped: its gradients are not finite" in caplog.text
    assert recipe.skipped_steps == 1 and recipe.scaler.get_scale() == scale / 2
    audio_step = {id(p) for p in recipe.optimizers["audio"].param_groups[0]["params"]}
    for name, parameter in recipe.model.named_parameters():
        if id(parameter) in audio_step:
            assert torch.equal(parameter.detach(), kept[name]), name


def test_a_non_finite_loss_is_skipped_and_never_checkpointed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = demo_config(*SMALL, "training.epochs=2", "training.amp=false")
    splits = prepare(config).split(1)
    trainer = Trainer(config, splits["train"], splits["dev"], tmp_path)
    step = trainer.recipe.train_step
    calls = []

    def poisoned(batch: Batch) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:  # the second batch carries a NaN
            assert batch.visual is not None
            batch.visual[0, 0, 0] = float("nan")
        return step(batch)

    trainer.recipe.train_step = poisoned  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="vavl"):
        trainer.fit()
    assert "visual step skipped: its gradients are not finite (loss nan)" in caplog.text
    history = trainer.history
    assert history[-1]["skipped_steps"] >= 1
    for name, value in torch.load(tmp_path / "best.pt", weights_only=False)["model_state"].items():
        assert not value.is_floating_point() or value.isfinite().all(), name
    # The last line of defence: weights that are not finite are never written.
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match="weights are not finite"):
        trainer._save_last()
