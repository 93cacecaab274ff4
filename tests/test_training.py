"""The three-step recipe learns, trains only what each step should, and uses partial clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import demo_config, small_model_config
from vavl.config import ExperimentConfig
from vavl.data import Collator
from vavl.errors import ConfigError
from vavl.evaluation import evaluate_predictions
from vavl.experiment import run_experiment
from vavl.inference import InferenceEngine
from vavl.methods import METHODS
from vavl.models import build_model
from vavl.models.conformer import MaskedBatchNorm1d
from vavl.preparation import prepare
from vavl.synthetic import synthetic_items
from vavl.training import ThreeStepRecipe, Trainer, build_recipe


@pytest.mark.slow
def test_each_path_learns_the_signal_and_audio_works_without_video(tmp_path: Path) -> None:
    config = demo_config("training.epochs=4", "data.n_train=192")
    result = run_experiment(config, tmp_path)
    for path in ("audio", "visual", "audiovisual"):
        assert result.test[path]["accuracy"] > 0.8, (path, result.test[path]["accuracy"])
    for output in ("metrics.json", "best.pt", "report.html", "predictions/test.csv"):
        assert (tmp_path / output).is_file(), output

    # A batch in which no clip has its visual stream still gets audio predictions.
    splits = prepare(config).split(1)
    trainer = Trainer(config, splits["train"], splits["dev"], tmp_path)
    test = [item for item in splits["test"] if item.audio is not None]
    for item in test:
        item.visual = item.visual_valid = None
    engine = InferenceEngine.for_model(trainer.model, config.task, trainer.normalizer, 64)
    predictions = engine.outputs(test)
    assert set(predictions) == {"audio"} and len(predictions["audio"].ids) == len(test)
    assert evaluate_predictions(config.task, predictions)["audio"]["accuracy"] > 0.8


def _recipe(config: ExperimentConfig, **model: object) -> tuple[ThreeStepRecipe, Collator]:
    trainer_config = config.model_copy(
        update={"model": small_model_config(audio_dim=32, visual_dim=24, **model)}
    )
    from vavl.models import VAVL

    model = VAVL(trainer_config.model, trainer_config.task.output_dim)
    return ThreeStepRecipe(model, trainer_config, torch.device("cpu"), None), Collator(config.task)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    after = module.state_dict()
    return {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}


def _branch(modality: str) -> set[str]:
    """The modules a unimodal step of ``modality`` trains: its own and the shared encoder."""
    own = {f"{modality}_{part}" for part in ("projection", "encoder", "head", "reconstruction")}
    return own | {"shared_encoder", "shared_norm"}


def test_each_step_trains_only_its_own_modules() -> None:
    config = demo_config()
    recipe, collate = _recipe(config)
    batch = collate(synthetic_items(config.data, config.task)["train"][:8])  # type: ignore[arg-type]
    model = recipe.model

    before = _snapshot(model)
    recipe.unimodal_step("visual", batch)
    assert _changed(before, model) == _branch("visual")
    before = _snapshot(model)
    recipe.unimodal_step("audio", batch)
    assert _changed(before, model) == _branch("audio")
    before = _snapshot(model)
    recipe.fusion_step(batch)
    # Branches run in eval mode: not even batch-norm statistics move.
    assert _changed(before, model) == {"fusion_head"}
    assert model.training


def test_the_visual_step_trains_the_prior_it_reads() -> None:
    config = demo_config()
    outputs = config.task.output_dim
    recipe, collate = _recipe(config, visual_prior=tuple(range(24 - outputs, 24)))
    batch = collate(synthetic_items(config.data, config.task)["train"][:8])  # type: ignore[arg-type]
    before = _snapshot(recipe.model)
    recipe.unimodal_step("audio", batch)
    assert "visual_prior" not in _changed(before, recipe.model)
    recipe.unimodal_step("visual", batch)
    assert _changed(before, recipe.model) >= {"visual_prior", "visual_head"}


def test_reconstruction_trains_the_encoder_it_reconstructs_from() -> None:
    """The reconstruction loss is part of what moves the branch's encoder: a step with it
    leaves the encoder elsewhere than the same step without it."""
    encoders = []
    for weight in (0.0, 1.0):
        config = demo_config(f"training.reconstruction_weight={weight}")
        torch.manual_seed(0)
        recipe, collate = _recipe(config)
        batch = collate(synthetic_items(config.data, config.task)["train"][:8])  # type: ignore[arg-type]
        torch.manual_seed(1)
        losses = recipe.unimodal_step("audio", batch)
        assert losses["audio_reconstruction"] > 0
        encoders.append(_snapshot(recipe.model.audio_encoder))
    without, with_reconstruction = encoders
    assert any(not torch.equal(without[name], with_reconstruction[name]) for name in without)


def test_the_fusion_step_trains_its_head_in_training_mode_on_audio_then_visual() -> None:
    """The fusion head learns with its dropout on, from the branches' embeddings (computed as at
    inference) of each pair, the audio one first."""
    config = demo_config("model.head_dropout=0.5")
    recipe, collate = _recipe(config)
    batch = collate(synthetic_items(config.data, config.task)["train"][:8])  # type: ignore[arg-type]
    calls: list[tuple[torch.Tensor, torch.Tensor, list[bool]]] = []
    fuse = recipe.steps.fuse

    def recording(audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        modes = [m.training for m in recipe.steps.step_modules("fusion")]
        calls.append((audio.detach(), visual.detach(), modes))
        return fuse(audio, visual)

    recipe.steps.fuse = recording  # type: ignore[method-assign,assignment]
    recipe.fusion_step(batch)
    ((audio, visual, modes),) = calls
    assert modes and all(modes)
    pairs = batch.select(batch.present("audio") & batch.present("visual"))
    recipe.model.eval()
    with torch.no_grad():
        assert pairs.audio is not None and pairs.audio_mask is not None
        assert pairs.visual is not None and pairs.visual_mask is not None
        expected_audio = recipe.steps.encode("audio", pairs.audio, pairs.audio_mask)
        expected_visual = recipe.steps.encode("visual", pairs.visual, pairs.visual_mask)
    assert torch.allclose(audio, expected_audio, atol=1e-6)
    assert torch.allclose(visual, expected_visual, atol=1e-6)


def test_clips_missing_a_modality_feed_the_steps_they_can() -> None:
    config = demo_config()
    recipe, collate = _recipe(config)
    train = synthetic_items(config.data, config.task)["train"]  # type: ignore[arg-type]
    items = [item for item in train if item.audio is not None and item.visual is not None][:6]
    items[0].visual = items[0].visual_valid = None  # audio only
    for item in items[2:]:
        item.audio = None  # video only; items[1] keeps both
    losses = recipe.train_step(collate(items))
    assert {"audio_loss", "visual_loss", "audiovisual_loss"} <= set(losses)
    assert all(np.isfinite(value) and value > 0 for value in losses.values()), losses

    for item in items:
        item.visual = item.visual_valid = None
    items[0].audio = np.zeros((5, 32), np.float32)
    before = _snapshot(recipe.model)
    audio_only = recipe.train_step(collate(items[:1]))
    assert set(audio_only) == {"audio_loss", "audio_reconstruction"}
    assert all(np.isfinite(value) for value in audio_only.values()), audio_only
    # A clip without a face trains the audio branch and nothing of the visual one.
    assert _changed(before, recipe.model) == _branch("audio")


def test_modality_dropout_is_off_by_default_and_trains_when_on() -> None:
    assert demo_config().training.modality_dropout == 0.0
    config = demo_config("training.modality_dropout=1.0")
    recipe, collate = _recipe(config)
    batch = collate(synthetic_items(config.data, config.task)["train"][:8])  # type: ignore[arg-type]
    fused: list[tuple[torch.Tensor, torch.Tensor]] = []
    fuse = recipe.steps.fuse

    def recording(audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        fused.append((audio.detach(), visual.detach()))
        return fuse(audio, visual)

    recipe.steps.fuse = recording  # type: ignore[method-assign,assignment]
    torch.manual_seed(1)
    losses = recipe.fusion_step(batch)
    assert "audiovisual_loss" in losses and np.isfinite(losses["audiovisual_loss"])
    # At p = 1 every pair loses exactly one of its two modalities, each of them for some pairs.
    ((audio, visual),) = fused
    audio_gone, visual_gone = (audio == 0).all(dim=1), (visual == 0).all(dim=1)
    assert len(audio) > 1 and bool((audio_gone ^ visual_gone).all())
    assert audio_gone.any() and visual_gone.any()


class _SeenError(Exception):
    """Raised by a recording forward: what the test needs happened before the model ran."""


def test_the_joint_recipe_drops_one_modality_per_batch_at_most() -> None:
    """AuxFormer's draw: per batch, the audio is zeroed with chance p, else the video with
    chance p; never both (p = 0.4: 40% and 40% of 1,000 batches, give or take 5%)."""
    config = demo_config(*METHODS["auxformer"], "training.modality_dropout=0.4")
    config = config.model_copy(
        update={"model": small_model_config(name="auxformer", audio_dim=32, visual_dim=24)}
    )
    model = build_model(config.model, config.task.output_dim)
    recipe = build_recipe(model, config, torch.device("cpu"), None)
    batch = Collator(config.task)(synthetic_items(config.data, config.task)["train"][:4])  # type: ignore[arg-type]
    seen: list[tuple[bool, bool]] = []

    def recording(**inputs: torch.Tensor) -> None:
        audio, visual = ((inputs[m] == 0).all().item() for m in ("audio", "visual"))
        seen.append((bool(audio), bool(visual)))
        raise _SeenError

    model.forward = recording  # type: ignore[method-assign,assignment]
    torch.manual_seed(0)
    for _ in range(1000):
        with pytest.raises(_SeenError):
            recipe.train_step(batch)
    assert (True, True) not in seen
    audio_gone = sum(a for a, _ in seen) / len(seen)
    visual_gone = sum(v for _, v in seen) / len(seen)
    assert abs(audio_gone - 0.4) < 0.05 and abs(visual_gone - 0.4) < 0.05, (audio_gone, visual_gone)


@pytest.mark.slow
def test_regression_task_trains_with_ccc(tmp_path: Path) -> None:
    config = demo_config(
        "task.kind=regression",
        "task.labels=[arousal, dominance, valence]",
        "training.epochs=4",
        "data.n_train=128",
        "data.n_dev=32",
        "data.n_test=32",
    )
    result = run_experiment(config, tmp_path)
    assert set(result.test) == {"audio", "visual", "audiovisual"}
    # The synthetic attributes are learnable from either stream: unseen clips are ranked and
    # scaled well beyond what a constant (CCC 0) or noise would give.
    ccc = {path: scores["ccc_mean"] for path, scores in result.test.items()}
    assert ccc["audio"] > 0.5 and ccc["visual"] > 0.4 and ccc["audiovisual"] > 0.2, ccc
    history = json.loads((tmp_path / "history.json").read_text())
    dev_loss = [epoch["dev"]["audio"]["loss"] for epoch in history]
    assert dev_loss[-1] < dev_loss[0] - 0.3, dev_loss


def test_batch_norm_layers_are_the_masked_ones() -> None:
    recipe, _ = _recipe(demo_config())
    norms = [m for m in recipe.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(isinstance(m, MaskedBatchNorm1d) for m in norms)


@pytest.mark.parametrize("path", ["audio", "audiovisual"])
def test_selection_path_must_exist_in_the_dev_set(tmp_path: Path, path: str) -> None:
    config = demo_config(f"training.selection_path={path}", "training.epochs=1", "data.n_train=32")
    splits = prepare(config).split(1)
    dev = [item for item in splits["dev"] if item.visual is not None]
    for item in dev:
        item.audio = None
    trainer = Trainer(config, splits["train"], dev, tmp_path)
    with pytest.raises(ConfigError, match=f"selection_path is '{path}'"):
        trainer.fit()


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from vavl.checkpoint import load_checkpoint

    return load_checkpoint(run / "last.pt").model_state


@pytest.mark.slow
def test_unpaired_corpora_teach_the_fusion_head_and_resume_exactly(tmp_path: Path) -> None:
    """Audio-only and visual-only clips, paired by class every epoch, with crops, frame dropout
    and a cosine schedule: the fusion step trains, and a run stopped after one epoch and
    resumed ends with the weights of an uninterrupted run."""
    config = demo_config(
        "data.n_train=64",
        "data.n_dev=80",
        "data.n_test=16",
        "data.missing_audio=0.5",
        "data.missing_visual=0.45",
        "training.pair_unpaired=true",
        "training.crop_min_share=0.5",
        "training.frame_dropout=0.2",
        "training.lr_schedule=cosine",
        "training.epochs=2",
        "training.checkpoint_every=3",
    )
    splits = prepare(config).split(1)
    real_pairs = sum(i.has("audio") and i.has("visual") for i in splits["train"])
    assert real_pairs < 8
    whole = Trainer(config, splits["train"], splits["dev"], tmp_path / "whole")
    whole.fit()
    history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert all("audiovisual_loss" in epoch["train"] for epoch in history)
    assert whole.calibration["audiovisual"].paired_clips >= 20  # development pairs too
    assert whole.recipe.optimizers["fusion"].param_groups[0]["lr"] < 0.1 * 2e-3  # decayed

    # Stopped after four steps, resumed from the checkpoint of step three.
    stopped = Trainer(config, splits["train"], splits["dev"], tmp_path / "resumed")
    train_step, calls = stopped.recipe.train_step, []

    def stop_at_the_fifth_step(batch: Any) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return train_step(batch)

    stopped.recipe.train_step = stop_at_the_fifth_step  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        stopped.fit()
    Trainer(config, splits["train"], splits["dev"], tmp_path / "resumed").fit()
    resumed = _weights(tmp_path / "resumed")
    for name, value in _weights(tmp_path / "whole").items():
        assert torch.equal(value, resumed[name]), name
    # The schedule depends on the number of epochs: changing it is no longer a continuation.
    longer = config.model_copy(
        update={"training": config.training.model_copy(update={"epochs": 3})}
    )
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        Trainer(longer, splits["train"], splits["dev"], tmp_path / "whole")
