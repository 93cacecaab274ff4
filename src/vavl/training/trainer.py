"""The resumable trainer: epochs of a recipe, development figures, the selected epoch,
calibration, and checkpoints that let a killed run continue exactly where it stopped.

The best epoch is chosen on the development loss, and test data is never seen here.
Checkpoints are written every ``training.checkpoint_every`` steps and at every epoch's end; a run
directory that holds one resumes from it and reaches the same weights as an uninterrupted run.
A run directory that holds a run of another config is refused (:func:`check_same_run`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vavl import distributed
from vavl.augmentation import augment
from vavl.calibration import PathReliability
from vavl.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from vavl.config import ExperimentConfig
from vavl.data import (
    Batch,
    Collator,
    Item,
    ItemDataset,
    check_items,
    fit_normalizer,
    statistics_path,
)
from vavl.devices import compile_model, resolve_device
from vavl.errors import CheckpointError, ConfigError, TrainingError, VavlError
from vavl.evaluation import calibrate_predictions, evaluate_predictions
from vavl.features.base import Descriptions, ExtractorDescription
from vavl.files import write_json_atomically
from vavl.inference import InferenceEngine, PathOutputs, merge_outputs
from vavl.models import build_model
from vavl.records import EpochRecord, PathMetrics
from vavl.sampling import BucketBatchSampler, balanced_draw, pair_unpaired
from vavl.training.cost import RunCost
from vavl.training.recipes import build_recipe, class_weights_for
from vavl.training.same_run import check_same_run
from vavl.types import MODALITIES, PathName

logger = logging.getLogger("vavl")

LAST_CHECKPOINT = "last.pt"
PREVIOUS_CHECKPOINT = "last.previous.pt"  # the one before last.pt: a way on if last.pt is damaged
DEV_PAIRING = 2**31 - 1  # the seed stream of the development set's fixed pairs
BEST_CHECKPOINT = "best.pt"


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
    history: list[EpochRecord]
    best_checkpoint: Path
    last_checkpoint: Path


def development_items(config: ExperimentConfig, dev: Sequence[Item]) -> list[Item]:
    """The development set as selection and calibration see it: with
    ``training.pair_unpaired``, plus fixed pairs of audio-only and visual-only clips of one
    class, so that the audio-visual path is selected and calibrated too."""
    if not config.training.pair_unpaired:
        return list(dev)
    return pair_unpaired(dev, (config.training.seed, DEV_PAIRING))


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
        extractors: Descriptions | None = None,
    ) -> None:
        check_items(train, config, "training set")
        if dev or config.training.selection_path != "last":
            check_items(dev, config, "development set")
        self.config = config
        self.train_items = list(train)
        self.dev_items = development_items(config, dev)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.training.device)
        self.extractors = dict(extractors or {}) or {
            m: None if name is None else ExtractorDescription.from_saved(name)
            for m in MODALITIES
            for name in [config.features.extractor(m)]
        }
        torch.manual_seed(config.training.seed)
        self.model = build_model(config.model, config.task.output_dim).to(self.device)
        if config.training.compile:
            compile_model(self.model)
        self.class_weights = class_weights_for(
            config.task, self.train_items, paired=config.training.pair_unpaired
        )
        self.recipe = build_recipe(self.model, config, self.device, self.class_weights)
        self.state = TrainerState()
        self.history: list[EpochRecord] = []
        self.calibration: dict[str, PathReliability] = {}
        if self.last_checkpoint.exists() or self.previous_checkpoint.exists():
            self._resume()  # with the statistics it saved: no pass over the training features
            return
        if self.best_checkpoint.exists():  # finished, but its training state is gone
            check_same_run(self.run_dir, load_checkpoint(self.best_checkpoint).config, self.config)
        # Statistics kept in a store are computed by the main process; the others read them.
        kept = statistics_path(self.train_items, config.features) is not None
        with distributed.main_first() if kept else nullcontext():
            self.normalizer = fit_normalizer(self.train_items, config.features)

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / BEST_CHECKPOINT

    @property
    def previous_checkpoint(self) -> Path:
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
        model_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        broken = [
            k for k, v in model_state.items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if broken:  # the update rule skips such steps; this is the last line of defence
            raise TrainingError(
                f"{self.run_dir}: weights are not finite ({', '.join(broken[:3])}); not saved"
            )
        return Checkpoint(
            config=self.config,
            model_state=model_state,
            normalizer=self.normalizer,
            extractors=self.extractors,
            optimizer_states=optimizer_states,
            trainer_state=trainer_state,
            history=list(self.history),
            calibration=dict(self.calibration),
            best_epoch=self.state.best_epoch if self.state.best_epoch > 0 else None,
            selection=self.config.training.selection_path,
        )

    def _last_checkpoint(self) -> Checkpoint:
        """``last.pt``, or the checkpoint before it when ``last.pt`` is missing or damaged."""
        try:
            return load_checkpoint(self.last_checkpoint, map_location=self.device)
        except CheckpointError as damaged:
            if not self.previous_checkpoint.exists():
                raise CheckpointError(
                    f"{damaged}; no earlier checkpoint to resume from: run again with --force "
                    "to start over in this directory"
                ) from None
            try:
                previous = load_checkpoint(self.previous_checkpoint, map_location=self.device)
            except CheckpointError as also:
                raise CheckpointError(
                    f"{damaged}; {also}: run again with --force to start over in this directory"
                ) from None
            logger.warning("%s; resuming from %s instead", damaged, self.previous_checkpoint.name)
            return previous

    def _resume(self) -> None:
        checkpoint = self._last_checkpoint()
        check_same_run(self.run_dir, checkpoint.config, self.config)
        if checkpoint.trainer_state is None or checkpoint.optimizer_states is None:
            raise ConfigError(f"{self.last_checkpoint}: has no training state to resume from")
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
            if self.last_checkpoint.exists():  # kept, so that a damaged last.pt is not a dead end
                os.replace(self.last_checkpoint, self.previous_checkpoint)
            save_checkpoint(self._checkpoint(with_training_state=True), self.last_checkpoint)

    def _loader(self, items: Sequence[Item], sampler: BucketBatchSampler) -> DataLoader[Item]:
        return DataLoader(
            ItemDataset(items),
            batch_sampler=sampler,
            collate_fn=Collator(self.config.task, self.normalizer),
            num_workers=self.config.training.num_workers,
            pin_memory=self.device.type == "cuda",  # so that .to(device) can copy asynchronously
            # Its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run would see different dropout masks than an uninterrupted one.
            generator=torch.Generator().manual_seed(self.config.training.seed),
        )

    def _dev_predictions(self) -> dict[PathName, PathOutputs]:
        """Every path's outputs on the whole development set (each process predicts a share)."""
        if not self.dev_items:
            return {}
        share = self.dev_items[distributed.rank() :: distributed.world_size()]
        engine = InferenceEngine.for_model(
            self.model, self.config.task,
            self.normalizer.for_items(self.dev_items, self.config.features.normalise),
            self.config.training.batch_size,
            self.device,
        )  # fmt: skip
        predictions = engine.outputs(share) if share else {}
        return merge_outputs(distributed.all_gather_objects(predictions))

    def evaluate_dev(self) -> dict[str, PathMetrics]:
        """Development metrics over the whole set."""
        predictions = self._dev_predictions()
        return evaluate_predictions(self.config.task, predictions, self.class_weights)

    def _calibrate(self) -> dict[str, PathReliability]:
        """Each path's temperature and development figures (classification; none without a
        development set)."""
        return calibrate_predictions(self.config.task, self._dev_predictions())

    def _selection_loss(self, dev: dict[str, PathMetrics]) -> float:
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

    def _end_epoch(self) -> None:
        if distributed.active():
            self.state.loss_sums, self.state.loss_counts = distributed.sum_named(
                self.state.loss_sums, self.state.loss_counts, self.device
            )
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
        record: EpochRecord = {
            "epoch": self.state.epoch + 1,
            "steps": self.state.global_step,
            "train": train_losses,
            "dev": {
                path: {k: v for k, v in result.items() if isinstance(v, int | float)}
                for path, result in dev.items()
            },
            "selection_loss": selection,
            "skipped_steps": self.recipe.skipped_steps,  # since the start of training
        }
        self.history.append(record)
        improved = selection < self.state.best_loss
        if improved:
            self.state.best_loss, self.state.best_epoch = selection, self.state.epoch + 1
            if distributed.is_main():
                save_checkpoint(self._checkpoint(with_training_state=False), self.best_checkpoint)
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
        best = " (best)" if improved and self.config.training.selection_path != "last" else ""
        logger.info("epoch %d: %s%s", record["epoch"], summary, best)

    def fit(self) -> TrainingResult:
        """Train to the configured number of epochs (or finish a resumed run)."""
        training = self.config.training
        progress = training.progress and distributed.is_main()
        self.model.train()
        cost: RunCost | None = None
        while self.state.epoch < training.epochs:
            items = self.train_items
            if training.pair_unpaired:  # new pairs every epoch, the same after a resume
                items = pair_unpaired(items, (training.seed, self.state.epoch))
            if training.balance != "none":  # a new draw every epoch, the same after a resume
                items = balanced_draw(items, training.balance, (training.seed, self.state.epoch))
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
            if cost is None:
                left = (training.epochs - self.state.epoch) * total - self.state.step_in_epoch
                cost = RunCost(self.model, self.device, left)
                cost.announce(len(self.train_items), total, training.epochs)
            with tqdm(
                total=total,
                initial=self.state.step_in_epoch,
                desc=f"epoch {self.state.epoch + 1}/{training.epochs}",
                disable=not progress,
                leave=False,
            ) as bar:
                for batch in _own_errors(loader):
                    if distributed.active():
                        batch = distributed.complete_batch(batch, self.config)
                    batch = augment(batch.to(self.device), training)
                    self.recipe.set_progress(
                        (self.state.epoch + self.state.step_in_epoch / max(total, 1))
                        / training.epochs
                    )
                    losses = self.recipe.step(batch)
                    for name, value in losses.items():
                        self.state.loss_sums[name] = self.state.loss_sums.get(name, 0.0) + value
                        self.state.loss_counts[name] = self.state.loss_counts.get(name, 0) + 1
                    self.state.step_in_epoch += 1
                    self.state.global_step += 1
                    cost.stepped()
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
        best = load_checkpoint(self.best_checkpoint, map_location=self.device)
        self.model.load_state_dict(best.model_state)
        self.model.eval()
        self.calibration = self._calibrate()
        if self.calibration and distributed.is_main():
            best.calibration = self.calibration
            save_checkpoint(best, self.best_checkpoint)
        distributed.barrier()
        return TrainingResult(
            best_epoch=self.state.best_epoch,
            best_loss=self.state.best_loss,
            history=self.history,
            best_checkpoint=self.best_checkpoint,
            last_checkpoint=self.last_checkpoint,
        )


def _own_errors(loader: DataLoader[Item]) -> Iterator[Batch]:
    """The loader's batches. One of vavl's errors in a DataLoader worker (a damaged store entry)
    comes back as its own one line: PyTorch raises it again with the worker's traceback in it."""
    try:
        yield from loader
    except VavlError as error:
        message = str(error)
        if "Original Traceback" not in message:
            raise
        last = message.rstrip().splitlines()[-1]  # "vavl.errors.DataError: <the line>"
        raise type(error)(last.split(": ", 1)[-1]) from None
