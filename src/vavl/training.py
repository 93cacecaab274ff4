"""Training recipes and a resumable trainer.

VAVL's recipe (``three-step``): per batch, three steps, each with its own backward pass and
optimizer:

1. visual step: visual branch + shared block + visual head + visual reconstruction head, on
   task loss + w * reconstruction MSE, over the clips that have video;
2. acoustic step: the same for audio, over the clips that have audio;
3. fusion step: branches and shared block in eval mode without gradients; only the fusion head is
   trained, on the task loss, over the clips that have both.

Clips lacking a modality still train the steps they can feed. The other models (AuxFormer, the
baselines) and VAVL's single-step ablation use the ``joint`` recipe: one optimizer on the mean of
every path's loss. The best epoch is chosen on the
development loss, and test data is never seen here. Checkpoints are written every
``training.checkpoint_every`` steps and at every epoch's end; a run directory that holds one
resumes from it and reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vavl import distributed
from vavl.augmentation import augment
from vavl.calibration import DevOutputs, PathReliability, calibrate
from vavl.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from vavl.config import MODALITIES, ExperimentConfig, Modality, PathName, TaskConfig
from vavl.data import (
    Batch,
    BucketBatchSampler,
    Collator,
    FeatureNormalizer,
    Item,
    ItemDataset,
    check_items,
    pair_unpaired,
)
from vavl.errors import CheckpointError, ConfigError, TrainingError
from vavl.evaluation import (
    PathPredictions,
    evaluate_predictions,
    hard_labels,
    merge_predictions,
    predict_items,
)
from vavl.files import write_json_atomically
from vavl.losses import balanced_class_weights, reconstruction_loss, task_loss
from vavl.models import VAVL, EmotionModel, build_model

logger = logging.getLogger("vavl")

LAST_CHECKPOINT = "last.pt"
PREVIOUS_CHECKPOINT = "last.previous.pt"  # the one before last.pt: a way on if last.pt is damaged
DEV_PAIRING = 2**31 - 1  # the seed stream of the development set's fixed pairs
BEST_CHECKPOINT = "best.pt"
# Fields that may change when a run is resumed without changing what it computes.
RESUMABLE_OVERRIDES = {
    ("", "method"),  # only a name
    ("training", "device"),
    ("training", "progress"),
    ("training", "num_workers"),
    ("training", "epochs"),  # a finished run can be continued for more epochs
    ("prediction", "max_clip_seconds"),
}


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def class_weights_for(task: TaskConfig, items: Sequence[Item]) -> Tensor | None:
    if task.kind != "classification" or task.class_weights == "none":
        return None
    if isinstance(task.class_weights, tuple):
        return torch.tensor(task.class_weights, dtype=torch.float32)
    labels = torch.tensor([item.label for item in items if item.label is not None])
    return balanced_class_weights(labels, task.output_dim)


class Recipe:
    """Optimizers (one per named group of parameters), mixed precision and the update rule."""

    def __init__(
        self,
        model: EmotionModel,
        config: ExperimentConfig,
        device: torch.device,
        class_weights: Tensor | None,
        groups: dict[str, list[torch.nn.Parameter]],
    ) -> None:
        self.model = model
        self.task = config.task
        self.training = config.training
        self.device = device
        self.class_weights = None if class_weights is None else class_weights.to(device)
        self.reconstruction_weight = config.training.resolved_reconstruction_weight(
            config.task.kind
        )
        self.optimizers = {
            name: torch.optim.Adam(
                parameters,
                lr=config.training.learning_rate,
                betas=config.training.betas,
                weight_decay=config.training.weight_decay,
            )
            for name, parameters in groups.items()
        }
        use_amp = config.training.amp and device.type == "cuda"
        bf16 = use_amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.use_amp = use_amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not bf16)

    def train_step(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def set_progress(self, progress: float) -> None:
        """The learning rate for ``progress`` (0 to 1) through training, by the schedule."""
        rate = self.training.learning_rate
        if self.training.lr_schedule == "cosine":
            rate *= 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rate

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _update(self, step: str, loss: Tensor) -> None:
        optimizer = self.optimizers[step]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if distributed.active():
            _sum_gradients(parameters)
        if self.training.max_grad_norm is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, self.training.max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.scaler.load_state_dict(state["scaler"])


def _sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Gradients summed over processes (each process's loss was scaled by its share of the
    batch, so the sum is the whole batch's gradient). A parameter no process reached keeps no
    gradient, as in one process."""
    reached = [p.grad is not None for p in parameters]
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters]
        + [torch.tensor(reached, dtype=parameters[0].dtype, device=parameters[0].device)]
    )
    distributed.all_reduce_sum(flat)
    offset = 0
    for parameter, anyone in zip(parameters, flat[-len(parameters) :].tolist(), strict=True):
        size = parameter.numel()
        grad = flat[offset : offset + size].view_as(parameter).clone()
        parameter.grad = grad if anyone > 0 else None
        offset += size


def _totals(*counts: int | Tensor) -> list[int]:
    """Rows over all processes for each local count (the local counts in one process)."""
    local = torch.tensor([int(c) for c in counts], dtype=torch.float64)
    return [int(v) for v in distributed.all_reduce_sum(local).tolist()]


class ThreeStepRecipe(Recipe):
    """VAVL's recipe: a visual, an acoustic and a fusion step per batch, each its own optimizer."""

    model: VAVL

    def __init__(
        self,
        model: VAVL,
        config: ExperimentConfig,
        device: torch.device,
        class_weights: Tensor | None,
    ) -> None:
        groups = {
            step: [p for module in model.step_modules(step) for p in module.parameters()]
            for step in ("visual", "audio", "fusion")
        }
        super().__init__(model, config, device, class_weights, groups)

    def unimodal_step(self, modality: Modality, batch: Batch) -> dict[str, float]:
        rows = batch.present(modality)
        local = int(rows.sum())
        (total,) = _totals(local)
        if total == 0:
            return {}
        # Under torch.distributed a process whose share has no such clip still runs the step on
        # zero rows: every process takes part in the same collective operations.
        clips = batch.select(rows, (modality,))
        features, mask = clips.modality(modality)
        assert features is not None and mask is not None and clips.target is not None
        self.model.train()
        head, reconstruction_head = self.model.heads(modality)
        with self.autocast():
            embedding = self.model.encode(modality, features, mask)
            if not local:
                self._update(modality, embedding.sum() * 0.0)
                return {}
            loss_task = task_loss(self.task.kind, head(embedding), clips.target, self.class_weights)
            loss_reconstruction = reconstruction_loss(
                reconstruction_head(embedding), features, mask
            )
            loss = loss_task + self.reconstruction_weight * loss_reconstruction
        self._update(modality, loss * (local / total))
        return {
            f"{modality}_loss": loss_task.item(),
            f"{modality}_reconstruction": loss_reconstruction.item(),
        }

    def fusion_step(self, batch: Batch) -> dict[str, float]:
        rows = batch.present("audio") & batch.present("visual")
        local = int(rows.sum())
        (total,) = _totals(local)
        if total == 0:
            return {}
        pairs = batch.select(rows)
        assert pairs.audio is not None and pairs.audio_mask is not None
        assert pairs.visual is not None and pairs.visual_mask is not None
        assert pairs.target is not None
        self.model.eval()
        with torch.no_grad(), self.autocast():
            audio = self.model.encode("audio", pairs.audio, pairs.audio_mask)
            visual = self.model.encode("visual", pairs.visual, pairs.visual_mask)
        if self.training.modality_dropout > 0:
            dropped = torch.rand(len(pairs), device=self.device) < self.training.modality_dropout
            drop_audio = torch.rand(len(pairs), device=self.device) < 0.5
            audio = audio.masked_fill((dropped & drop_audio)[:, None], 0.0)
            visual = visual.masked_fill((dropped & ~drop_audio)[:, None], 0.0)
        self.model.fusion_head.train()
        with self.autocast():
            fused = self.model.fuse(audio, visual)
            if local:
                loss = task_loss(self.task.kind, fused, pairs.target, self.class_weights)
                self._update("fusion", loss * (local / total))
            else:
                self._update("fusion", fused.sum() * 0.0)
        self.model.train()
        return {"audiovisual_loss": loss.item()} if local else {}

    def train_step(self, batch: Batch) -> dict[str, float]:
        losses = self.unimodal_step("visual", batch)
        losses |= self.unimodal_step("audio", batch)
        losses |= self.fusion_step(batch)
        return losses


class JointRecipe(Recipe):
    """One optimizer and one step per batch on the mean of the task losses of every path the
    batch feeds (AuxFormer's (CE_av + CE_a + CE_v) / 3), plus the weighted reconstruction loss of
    models that reconstruct. With ``modality_dropout`` p, each modality's input is zeroed for the
    whole batch with probability p (AuxFormer's modality dropout)."""

    def __init__(
        self,
        model: EmotionModel,
        config: ExperimentConfig,
        device: torch.device,
        class_weights: Tensor | None,
    ) -> None:
        super().__init__(model, config, device, class_weights, {"joint": list(model.parameters())})

    def train_step(self, batch: Batch) -> dict[str, float]:
        assert batch.target is not None
        inputs = batch.inputs()
        for modality in MODALITIES:
            features = inputs[modality]
            dropout = self.training.modality_dropout
            if features is not None and dropout > 0 and float(torch.rand(())) < dropout:
                inputs[modality] = torch.zeros_like(features)
        self.model.train()
        losses: dict[str, float] = {}
        with self.autocast():
            output = self.model(**inputs)
            # Each term is a mean over its rows; under torch.distributed each process weighs
            # its term by its share of those rows, and the gradients are summed.
            terms: list[tuple[str, Tensor, Tensor]] = []
            for path in output.present:
                predictions, rows = output.rows(path)
                terms.append((f"{path}_loss", predictions, rows))
            reconstructions = []
            if self.reconstruction_weight > 0:
                for modality, reconstruction in output.reconstructions.items():
                    rows = output.present[modality].nonzero().squeeze(-1)
                    reconstructions.append((modality, reconstruction, rows))
            totals = _totals(*(len(rows) for *_, rows in terms + reconstructions))
            paths = sum(1 for total in totals[: len(terms)] if total)
            if not paths:
                return {}
            loss = torch.zeros((), device=self.device)
            for (name, predictions, rows), total in zip(terms, totals, strict=False):
                if not len(rows):
                    loss = loss + predictions.sum() * 0.0
                    continue
                term = task_loss(
                    self.task.kind, predictions, batch.target[rows], self.class_weights
                )
                loss = loss + term * (len(rows) / total / paths)
                losses[name] = term.item()
            for (modality, reconstruction, rows), total in zip(
                reconstructions, totals[len(terms) :], strict=True
            ):
                features, mask = batch.modality(modality)
                if not len(rows) or features is None or mask is None:
                    loss = loss + reconstruction[rows].sum() * 0.0  # rows of absent clips are NaN
                    continue
                term = reconstruction_loss(reconstruction[rows], features[rows], mask[rows])
                loss = loss + self.reconstruction_weight * term * (len(rows) / total)
                losses[f"{modality}_reconstruction"] = term.item()
        self._update("joint", loss)
        return losses


def complete_batch(batch: Batch, config: ExperimentConfig) -> Batch:
    """A process's share of a batch with every modality (zero frames where none of its clips has
    it) and a target even when empty, so that every process runs the same steps."""
    for modality in MODALITIES:
        if getattr(batch, modality) is None:
            dim = getattr(config.model, f"{modality}_dim")
            setattr(batch, modality, torch.zeros(len(batch), 1, dim))
            setattr(batch, f"{modality}_mask", torch.zeros(len(batch), 1, dtype=torch.bool))
    if batch.target is None:
        task = config.task
        if task.kind == "regression" or task.soft_labels:
            batch.target = torch.zeros(0, task.output_dim)
        else:
            batch.target = torch.zeros(0, dtype=torch.long)
    return batch


def build_recipe(
    model: EmotionModel, config: ExperimentConfig, device: torch.device, weights: Tensor | None
) -> Recipe:
    """The configured recipe; ``auto`` is three-step for VAVL and joint for the others."""
    name = config.training.recipe
    if name == "auto":
        name = "three-step" if isinstance(model, VAVL) else "joint"
    if name == "joint":
        return JointRecipe(model, config, device, weights)
    if not isinstance(model, VAVL):
        raise ConfigError(f"the three-step recipe trains VAVL models, not '{config.model.name}'")
    return ThreeStepRecipe(model, config, device, weights)


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint so that a run resumes exactly."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    loss_sums: dict[str, float] = field(default_factory=dict)
    loss_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class TrainingResult:
    best_epoch: int
    best_loss: float
    history: list[dict[str, Any]]
    best_checkpoint: Path
    last_checkpoint: Path


def config_changes(saved: ExperimentConfig, current: ExperimentConfig) -> list[str]:
    """The fields whose change alters what a run computes (the number of epochs only counts
    under a learning-rate schedule, which spans them)."""
    changed = _differences(saved.to_dict(), current.to_dict())
    if current.training.lr_schedule != "constant" and (
        saved.training.epochs != current.training.epochs
    ):
        changed.append("training.epochs (the learning-rate schedule spans the epochs)")
    return changed


def check_same_run(run_dir: Path, saved: ExperimentConfig, current: ExperimentConfig) -> None:
    """Refuse to touch a run directory that holds a run made with another config."""
    changed = config_changes(saved, current)
    if changed:
        raise ConfigError(
            f"{run_dir}: holds a run with a different config ({', '.join(changed)}); use a new "
            "run directory, the same config, or --force to start over in this one"
        )


def _differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(saved) | set(current)):
        before, after = saved.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changed += _differences(before, after, f"{prefix}{key}.")
        elif before != after and (prefix.rstrip("."), key) not in RESUMABLE_OVERRIDES:
            changed.append(f"{prefix}{key}")
    return changed


class Trainer:
    """Trains a model on ``train`` items, selecting the epoch with the lowest development loss.

    ``extractors`` describes the feature extractors that produced the items' features (e.g. from
    ``FeatureStore.extractor_description``); it is recorded in the checkpoints, so that features
    from another extractor can be refused later. It defaults to the ids in ``config.features``.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        train: Sequence[Item],
        dev: Sequence[Item],
        run_dir: str | Path,
        extractors: dict[str, Any] | None = None,
    ) -> None:
        check_items(train, config, "training set")
        if dev or config.training.selection_path != "last":
            check_items(dev, config, "development set")
        self.config = config
        self.train_items, self.dev_items = list(train), list(dev)
        if config.training.pair_unpaired:  # the audio-visual path is selected and calibrated too
            self.dev_items = pair_unpaired(self.dev_items, (config.training.seed, DEV_PAIRING))
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.training.device)
        self.extractors = extractors or {m: getattr(config.features, m) for m in MODALITIES}
        torch.manual_seed(config.training.seed)
        self.model = build_model(config.model, config.task.output_dim).to(self.device)
        self.class_weights = class_weights_for(config.task, self.train_items)
        self.recipe = build_recipe(self.model, config, self.device, self.class_weights)
        self.normalizer = FeatureNormalizer.fit(self.train_items)
        self.state = TrainerState()
        self.history: list[dict[str, Any]] = []
        self.calibration: dict[str, PathReliability] = {}
        if self.last_path.exists() or self.previous_path.exists():
            self._resume()
        elif self.best_path.exists():  # finished, but its training state is gone
            check_same_run(self.run_dir, load_checkpoint(self.best_path).config, self.config)

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST_CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.run_dir / BEST_CHECKPOINT

    @property
    def previous_path(self) -> Path:
        return self.run_dir / PREVIOUS_CHECKPOINT

    def _checkpoint(self, with_training_state: bool) -> Checkpoint:
        trainer_state = None
        optimizer_states = None
        if with_training_state:
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
            trainer_state = {**asdict(self.state), "rng": rng}
            optimizer_states = self.recipe.state_dict()
        return Checkpoint(
            config=self.config,
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            normalizer=self.normalizer,
            extractors=self.extractors,
            optimizer_states=optimizer_states,
            trainer_state=trainer_state,
            history=list(self.history),
            calibration=dict(self.calibration),
        )

    def _last_checkpoint(self) -> Checkpoint:
        """``last.pt``, or the checkpoint before it when ``last.pt`` is missing or damaged."""
        try:
            return load_checkpoint(self.last_path, map_location=self.device)
        except CheckpointError as damaged:
            if not self.previous_path.exists():
                raise CheckpointError(
                    f"{damaged}; no earlier checkpoint to resume from: run again with --force "
                    "to start over in this directory"
                ) from None
            try:
                previous = load_checkpoint(self.previous_path, map_location=self.device)
            except CheckpointError as also:
                raise CheckpointError(
                    f"{damaged}; {also}: run again with --force to start over in this directory"
                ) from None
            logger.warning("%s; resuming from %s instead", damaged, self.previous_path.name)
            return previous

    def _resume(self) -> None:
        checkpoint = self._last_checkpoint()
        check_same_run(self.run_dir, checkpoint.config, self.config)
        if checkpoint.trainer_state is None or checkpoint.optimizer_states is None:
            raise ConfigError(f"{self.last_path}: has no training state to resume from")
        trained = int(checkpoint.trainer_state["epoch"])
        if trained > self.config.training.epochs:
            raise ConfigError(
                f"{self.run_dir}: has trained {trained} epochs already, more than the "
                f"{self.config.training.epochs} asked for; ask for at least {trained} (its "
                "weights come from those epochs) or use a new run directory"
            )
        self.model.load_state_dict(checkpoint.model_state)
        self.recipe.load_state_dict(checkpoint.optimizer_states)
        self.normalizer = checkpoint.normalizer
        self.history = checkpoint.history
        saved = dict(checkpoint.trainer_state)
        rng = saved.pop("rng")
        self.state = TrainerState(**saved)
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(rng["cuda"].cpu()))
        logger.info(
            "resuming %s at epoch %d, step %d",
            self.run_dir,
            self.state.epoch + 1,
            self.state.step_in_epoch,
        )

    def _save_last(self) -> None:
        if distributed.is_main():  # the processes hold the same weights: one writes them
            if self.last_path.exists():  # kept, so that a damaged last.pt is not a dead end
                os.replace(self.last_path, self.previous_path)
            save_checkpoint(self._checkpoint(with_training_state=True), self.last_path)

    def _loader(self, items: Sequence[Item], sampler: BucketBatchSampler) -> DataLoader[Item]:
        return DataLoader(
            ItemDataset(items),
            batch_sampler=sampler,
            collate_fn=Collator(self.config.task, self.normalizer),
            num_workers=self.config.training.num_workers,
            # Its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run would see different dropout masks than an uninterrupted one.
            generator=torch.Generator().manual_seed(self.config.training.seed),
        )

    def _dev_predictions(self) -> dict[PathName, PathPredictions]:
        """Every path's outputs on the whole development set (each process predicts a share)."""
        if not self.dev_items:
            return {}
        share = self.dev_items[distributed.rank() :: distributed.world_size()]
        predictions = predict_items(
            self.model,
            share,
            self.config.task,
            self.normalizer,
            batch_size=self.config.training.batch_size,
            device=self.device,
        ) if share else {}  # fmt: skip
        return merge_predictions(distributed.all_gather_objects(predictions))

    def evaluate_dev(self) -> dict[str, dict[str, Any]]:
        """Development metrics over the whole set."""
        predictions = self._dev_predictions()
        return evaluate_predictions(self.config.task, predictions, self.class_weights)

    def _calibrate(self) -> dict[str, PathReliability]:
        """Each path's temperature and development figures (classification; none without a
        development set)."""
        if self.config.task.kind != "classification":
            return {}
        dev: dict[str, DevOutputs] = {
            path: (result.ids, result.outputs, hard_labels(result.targets))
            for path, result in self._dev_predictions().items()
            if result.targets is not None
        }
        return calibrate(dev)

    def _selection_loss(self, dev: dict[str, dict[str, Any]]) -> float:
        choice = self.config.training.selection_path
        if choice == "last":
            return -float(self.state.epoch + 1)  # later epochs always win
        if choice == "mean":
            return float(np.mean([result["loss"] for result in dev.values()]))
        if choice not in dev:
            raise ConfigError(
                f"training.selection_path is '{choice}' but the development set has no clip "
                f"for that path (paths: {', '.join(dev) or 'none'})"
            )
        return float(dev[choice]["loss"])

    def _reduce_losses(self) -> None:
        """Training loss sums and counts over every process."""
        names = sorted(
            {n for sums in distributed.all_gather_objects(self.state.loss_sums) for n in sums}
        )
        sums = torch.tensor(
            [self.state.loss_sums.get(n, 0.0) for n in names]
            + [float(self.state.loss_counts.get(n, 0)) for n in names],
            dtype=torch.float64,
        )
        distributed.all_reduce_sum(sums)
        self.state.loss_sums = {n: float(v) for n, v in zip(names, sums[: len(names)], strict=True)}
        self.state.loss_counts = {n: int(v) for n, v in zip(names, sums[len(names) :], strict=True)}

    def _end_epoch(self) -> None:
        if distributed.active():
            self._reduce_losses()
        dev = self.evaluate_dev()
        selection = self._selection_loss(dev)
        if not math.isfinite(selection):
            raise TrainingError(
                f"{self.run_dir}: the development loss is {selection} after epoch "
                f"{self.state.epoch + 1}; training diverged (try a lower training.learning_rate)"
            )
        train_losses = {
            name: total / self.state.loss_counts[name]
            for name, total in self.state.loss_sums.items()
        }
        record = {
            "epoch": self.state.epoch + 1,
            "steps": self.state.global_step,
            "train": train_losses,
            "dev": {
                path: {k: v for k, v in result.items() if isinstance(v, int | float)}
                for path, result in dev.items()
            },
            "selection_loss": selection,
        }
        self.history.append(record)
        improved = selection < self.state.best_loss
        if improved:
            self.state.best_loss, self.state.best_epoch = selection, self.state.epoch + 1
            if distributed.is_main():
                save_checkpoint(self._checkpoint(with_training_state=False), self.best_path)
        self.state.epoch += 1
        self.state.step_in_epoch = 0
        self.state.loss_sums, self.state.loss_counts = {}, {}
        self._save_last()
        if distributed.is_main():
            write_json_atomically(self.run_dir / "history.json", self.history)
        if dev:
            summary = "dev loss " + ", ".join(f"{p} {r['loss']:.4f}" for p, r in dev.items())
        else:
            summary = "train loss " + ", ".join(f"{n} {v:.4f}" for n, v in train_losses.items())
        logger.info("epoch %d: %s%s", record["epoch"], summary, " (best)" if improved else "")

    def fit(self) -> TrainingResult:
        """Train to the configured number of epochs (or finish a resumed run)."""
        training = self.config.training
        progress = training.progress and distributed.is_main()
        self.model.train()
        while self.state.epoch < training.epochs:
            items = self.train_items
            if training.pair_unpaired:  # new pairs every epoch, the same after a resume
                items = pair_unpaired(items, (training.seed, self.state.epoch))
            sampler = BucketBatchSampler(
                [item.length() for item in items],
                training.batch_size,
                seed=training.seed,
                rank=distributed.rank(),
                world_size=distributed.world_size(),
            )
            loader = self._loader(items, sampler)
            sampler.set_epoch(self.state.epoch, start_batch=self.state.step_in_epoch)
            total = len(sampler.batches())
            with tqdm(
                total=total,
                initial=self.state.step_in_epoch,
                desc=f"epoch {self.state.epoch + 1}/{training.epochs}",
                disable=not progress,
                leave=False,
            ) as bar:
                for batch in loader:
                    if distributed.active():
                        batch = complete_batch(batch, self.config)
                    batch = augment(batch.to(self.device), training)
                    self.recipe.set_progress(
                        (self.state.epoch + self.state.step_in_epoch / max(total, 1))
                        / training.epochs
                    )
                    losses = self.recipe.train_step(batch)
                    for name, value in losses.items():
                        self.state.loss_sums[name] = self.state.loss_sums.get(name, 0.0) + value
                        self.state.loss_counts[name] = self.state.loss_counts.get(name, 0) + 1
                    self.state.step_in_epoch += 1
                    self.state.global_step += 1
                    bar.update()
                    bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if "loss" in k})
                    if (
                        training.checkpoint_every
                        and self.state.global_step % training.checkpoint_every == 0
                        and self.state.step_in_epoch < total
                    ):
                        self._save_last()
            self._end_epoch()
        distributed.barrier()  # best.pt is written by the main process
        best = load_checkpoint(self.best_path, map_location=self.device)
        self.model.load_state_dict(best.model_state)
        self.model.eval()
        self.calibration = self._calibrate()
        if self.calibration and distributed.is_main():
            best.calibration = self.calibration
            save_checkpoint(best, self.best_path)
        distributed.barrier()
        return TrainingResult(
            best_epoch=self.state.best_epoch,
            best_loss=self.state.best_loss,
            history=self.history,
            best_checkpoint=self.best_path,
            last_checkpoint=self.last_path,
        )
