"""Training recipes: how one batch updates a model.

VAVL's recipe (``three-step``): per batch, three steps, each with its own backward pass and
optimizer:

1. visual step: visual branch + shared block + visual head + visual reconstruction head, on
   task loss + w * reconstruction MSE, over the clips that have video;
2. acoustic step: the same for audio, over the clips that have audio;
3. fusion step: branches and shared block in eval mode without gradients; only the fusion head is
   trained, on the task loss, over the clips that have both.

Clips lacking a modality still train the steps they can feed. The other models (AuxFormer, the
baselines) and VAVL's single-step ablation use the ``joint`` recipe: one optimizer on the mean of
every path's loss. Under torch.distributed each process weighs its losses by its share of the
rows and the gradients are summed (:mod:`vavl.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vavl import distributed
from vavl.config import ExperimentConfig, TaskConfig
from vavl.data import Batch, Item
from vavl.errors import ConfigError
from vavl.losses import balanced_class_weights, reconstruction_loss, task_loss
from vavl.models import EmotionModel
from vavl.models.base import RecipeStep, ThreeStepModel
from vavl.sampling import pair_unpaired
from vavl.types import MODALITIES, PATH_MODALITIES, PATHS, Modality, PathName

logger = logging.getLogger("vavl")


PathWeights = dict[PathName, Tensor]  # each path's class weights


def class_weights_for(
    task: TaskConfig, items: Sequence[Item], paired: bool = False
) -> PathWeights | None:
    """Each path's class weights: the configured ones, or (``balanced``) the inverse of each
    class's frequency among the training clips that path learns from, so that a head trained
    mostly on one corpus (faces of FER+, say) is balanced over its own data, not another's.
    ``paired``: the audio-visual path learns from audio-only and visual-only clips of one class
    joined into pairs (``training.pair_unpaired``), and is balanced over those pairs."""
    if task.kind != "classification" or task.class_weights == "none":
        return None
    if isinstance(task.class_weights, tuple):
        given = torch.tensor(task.class_weights, dtype=torch.float32)
        return {path: given for path in PATHS}
    power = 0.5 if task.class_weights == "balanced-sqrt" else 1.0
    weights: PathWeights = {}
    for path in PATHS:
        learned_from = pair_unpaired(items, (0,)) if paired and path == "audiovisual" else items
        labels = [
            item.label
            for item in learned_from
            if item.label is not None and all(item.has(m) for m in PATH_MODALITIES[path])
        ]
        if labels:
            weights[path] = balanced_class_weights(torch.tensor(labels), task.output_dim, power)
    return weights


def autocast_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for ``training.amp`` on ``device`` (None: full precision)."""
    if amp is False:
        return None
    if amp is True:  # automatic: on CUDA only, where it pays
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bfloat16" else torch.float16


class Recipe:
    """Optimizers (one per named group of parameters), mixed precision and the update rule."""

    def __init__(
        self,
        model: EmotionModel,
        config: ExperimentConfig,
        device: torch.device,
        class_weights: PathWeights | None,
        groups: dict[str, list[torch.nn.Parameter]],
    ) -> None:
        self.model = model
        self.task = config.task
        self.training = config.training
        self.device = device
        self.class_weights = {
            path: weights.to(device) for path, weights in (class_weights or {}).items()
        }
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
        self.amp_dtype = autocast_dtype(config.training.amp, device)
        # float16's narrow range needs the loss scaled (and an overflowing step skipped).
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.skipped_steps = 0  # updates not made: non-finite loss or gradients
        # A step's name -> the optimizers it steps (by default, its own only).
        self.stepped_with: dict[str, tuple[str, ...]] = {}

    def weights_of(self, path: PathName) -> Tensor | None:
        """``path``'s class weights (None: unweighted)."""
        return self.class_weights.get(path)

    def train_step(self, batch: Batch) -> dict[str, float]:
        """Update the model on one batch; the losses of the updates made, by name."""
        raise NotImplementedError

    def step(self, batch: Batch) -> dict[str, float]:
        """:meth:`train_step`, undoing what a skipped update's forward pass did to the model's
        buffers (batch norm's running statistics would keep its non-finite values)."""
        skipped = self.skipped_steps
        buffers = [buffer.detach().clone() for buffer in self.model.buffers()]
        losses = self.train_step(batch)
        if self.skipped_steps > skipped:
            with torch.no_grad():
                for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
        return losses

    def set_progress(self, progress: float) -> None:
        """The learning rate for ``progress`` (0 to 1) through training, by the schedule."""
        rate = self.training.learning_rate
        if self.training.lr_schedule == "cosine":
            rate *= 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rate

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _update(self, step: str, loss: Tensor) -> bool:
        """Backward, sum over processes, clip, step; an update whose gradients are not finite
        (a NaN or infinite loss, a float16 overflow) is skipped and logged, so that no such
        value ever reaches the weights (or a checkpoint). Every process sees the same summed
        gradients, so all skip together."""
        optimizers = [self.optimizers[name] for name in self.stepped_with.get(step, (step,))]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        parameters = [p for o in optimizers for group in o.param_groups for p in group["params"]]
        distributed.sum_gradients(parameters)
        for optimizer in optimizers:
            self.scaler.unscale_(optimizer)
        limit = self.training.max_grad_norm if self.training.max_grad_norm is not None else math.inf
        grads = [p for p in parameters if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(grads, limit) if grads else torch.zeros(())
        finite = bool(torch.isfinite(norm))
        if not finite:
            self.skipped_steps += 1
            scale = f"; float16 loss scale now {self.scaler.get_scale() / 2:g}"
            logger.warning(
                "%s step skipped: its gradients are not finite (loss %.4g)%s",
                step,
                float(loss.detach()),
                scale if self.scaler.is_enabled() else "",
            )
        for optimizer in optimizers:
            if self.scaler.is_enabled():
                self.scaler.step(optimizer)  # skips the update itself when gradients overflowed
            elif finite:
                optimizer.step()
        self.scaler.update()
        return finite

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if state["scaler"]:  # empty when the run had no float16 scaler
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = int(state.get("skipped_steps", 0))


class ThreeStepRecipe(Recipe):
    """VAVL's recipe: a visual, an acoustic and a fusion step per batch, each its own optimizer."""

    def __init__(
        self,
        model: EmotionModel,
        config: ExperimentConfig,
        device: torch.device,
        class_weights: PathWeights | None,
    ) -> None:
        if not isinstance(model, ThreeStepModel):
            raise ConfigError(
                f"the three-step recipe trains models with per-modality encoders, heads and a "
                f"fusion head (VAVL), not '{config.model.name}'"
            )
        self.steps: ThreeStepModel = model

        def parameters(step: RecipeStep) -> list[torch.nn.Parameter]:
            return [p for module in model.step_modules(step) for p in module.parameters()]

        groups = {step: parameters(step) for step in ("visual", "audio", "fusion")}
        single = config.training.shared_optimizer == "single"
        if single:  # the reference's way: one Adam state for the shared block, stepped twice
            shared = {id(p) for p in parameters("shared")}
            for step in ("visual", "audio"):
                groups[step] = [p for p in groups[step] if id(p) not in shared]
            groups["shared"] = parameters("shared")
        super().__init__(model, config, device, class_weights, groups)
        if single:
            self.stepped_with = {"visual": ("visual", "shared"), "audio": ("audio", "shared")}

    def unimodal_step(self, modality: Modality, batch: Batch) -> dict[str, float]:
        rows = batch.present(modality)
        local = int(rows.sum())
        (total,) = distributed.row_totals(local, device=self.device)
        if total == 0:
            return {}
        # Under torch.distributed a process whose share has no such clip still runs the step on
        # zero rows: every process takes part in the same collective operations.
        clips = batch.select(rows, (modality,))
        features, mask = clips.modality(modality)
        assert features is not None and mask is not None and clips.target is not None
        self.model.train()
        reconstruction_head = self.steps.heads(modality)[1]
        with self.autocast():
            embedding = self.steps.encode(modality, features, mask)
            if not local:
                self._update(modality, embedding.sum() * 0.0)
                return {}
            predicted = self.steps.predict(modality, embedding, features, mask)
            loss_task = task_loss(
                self.task.kind, predicted, clips.target, self.weights_of(modality)
            )
            loss_reconstruction = reconstruction_loss(
                reconstruction_head(embedding), features, mask
            )
            loss = loss_task + self.reconstruction_weight * loss_reconstruction
        if not self._update(modality, loss * distributed.row_share(local, total)):
            return {}
        return {
            f"{modality}_loss": loss_task.item(),
            f"{modality}_reconstruction": loss_reconstruction.item(),
        }

    def fusion_step(self, batch: Batch) -> dict[str, float]:
        rows = batch.present("audio") & batch.present("visual")
        local = int(rows.sum())
        (total,) = distributed.row_totals(local, device=self.device)
        if total == 0:
            return {}
        pairs = batch.select(rows)
        assert pairs.audio is not None and pairs.audio_mask is not None
        assert pairs.visual is not None and pairs.visual_mask is not None
        assert pairs.target is not None
        self.model.eval()
        with torch.no_grad(), self.autocast():
            audio = self.steps.encode("audio", pairs.audio, pairs.audio_mask)
            visual = self.steps.encode("visual", pairs.visual, pairs.visual_mask)
        if self.training.modality_dropout > 0:
            dropped = torch.rand(len(pairs), device=self.device) < self.training.modality_dropout
            drop_audio = torch.rand(len(pairs), device=self.device) < 0.5
            audio = audio.masked_fill((dropped & drop_audio)[:, None], 0.0)
            visual = visual.masked_fill((dropped & ~drop_audio)[:, None], 0.0)
        for module in self.steps.step_modules("fusion"):
            module.train()
        with self.autocast():
            fused = self.steps.fuse(audio, visual)
            if local:
                loss = task_loss(
                    self.task.kind, fused, pairs.target, self.weights_of("audiovisual")
                )
                updated = self._update("fusion", loss * distributed.row_share(local, total))
            else:
                updated = self._update("fusion", fused.sum() * 0.0)
        self.model.train()
        return {"audiovisual_loss": loss.item()} if local and updated else {}

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
        class_weights: PathWeights | None,
    ) -> None:
        super().__init__(model, config, device, class_weights, {"joint": list(model.parameters())})

    def train_step(self, batch: Batch) -> dict[str, float]:
        assert batch.target is not None
        inputs = batch.inputs()
        dropout = self.training.modality_dropout
        if dropout > 0:
            # One draw per batch, as AuxFormer's code: the audio goes below p, the video from p
            # to 2p; never both.
            draw = float(torch.rand(()))
            for rank, modality in enumerate(MODALITIES):
                features = inputs[modality]
                if features is not None and rank * dropout <= draw < (rank + 1) * dropout:
                    inputs[modality] = torch.zeros_like(features)
        self.model.train()
        losses: dict[str, float] = {}
        with self.autocast():
            output = self.model(**inputs)
            # Each term is a mean over its rows; under torch.distributed each process weighs
            # its term by its share of those rows, and the gradients are summed.
            terms: list[tuple[PathName, Tensor, Tensor]] = []
            for path in output.present:
                predictions, rows = output.rows(path)
                terms.append((path, predictions, rows))
            reconstructions = []
            if self.reconstruction_weight > 0:
                for modality, reconstruction in output.reconstructions.items():
                    rows = output.present[modality].nonzero().squeeze(-1)
                    reconstructions.append((modality, reconstruction, rows))
            totals = distributed.row_totals(
                *(len(rows) for *_, rows in terms + reconstructions), device=self.device
            )
            paths = sum(1 for total in totals[: len(terms)] if total)
            if not paths:
                return {}
            loss = torch.zeros((), device=self.device)
            for (path, predictions, rows), total in zip(terms, totals, strict=False):
                if not len(rows):
                    loss = loss + predictions.sum() * 0.0
                    continue
                term = task_loss(
                    self.task.kind, predictions, batch.target[rows], self.weights_of(path)
                )
                loss = loss + term * (distributed.row_share(len(rows), total) / paths)
                losses[f"{path}_loss"] = term.item()
            for (modality, reconstruction, rows), total in zip(
                reconstructions, totals[len(terms) :], strict=True
            ):
                features, mask = batch.modality(modality)
                if not len(rows) or features is None or mask is None:
                    loss = loss + reconstruction[rows].sum() * 0.0  # rows of absent clips are NaN
                    continue
                term = reconstruction_loss(reconstruction[rows], features[rows], mask[rows])
                share = distributed.row_share(len(rows), total)
                loss = loss + self.reconstruction_weight * term * share
                losses[f"{modality}_reconstruction"] = term.item()
        return losses if self._update("joint", loss) else {}


def build_recipe(
    model: EmotionModel,
    config: ExperimentConfig,
    device: torch.device,
    weights: PathWeights | None,
) -> Recipe:
    """The configured recipe; ``auto`` is three-step for VAVL and joint for the others."""
    name = config.training.recipe
    if name == "auto":
        name = "three-step" if isinstance(model, ThreeStepModel) else "joint"
    if name == "joint":
        return JointRecipe(model, config, device, weights)
    return ThreeStepRecipe(model, config, device, weights)
