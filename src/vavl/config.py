"""The typed schema of an experiment's configuration (reading and writing config files, and
command-line overrides, are in :mod:`vavl.config_files`).

Every size of the model, every setting of the recipe and the data source is a field here. The
resolved configuration is saved inside every checkpoint and report, so a run can always be
reproduced from its outputs. Unknown fields and inconsistent values fail at load with one line.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from vavl.config_base import _Strict
from vavl.config_data import (
    CorporaDataConfig,
    SyntheticDataConfig,
)
from vavl.config_model import ModelConfig
from vavl.errors import ConfigError
from vavl.types import CREMA_D_EMOTIONS, MODALITIES, Modality, TaskKind


class TaskConfig(_Strict):
    """What is predicted: one emotion class (classification), attributes (regression) or every
    emotion present (multilabel: a sigmoid per label; a clip's labels are intensities, present
    when above 0)."""

    kind: TaskKind = "classification"
    labels: tuple[str, ...] = CREMA_D_EMOTIONS
    soft_labels: bool = Field(
        False, description="train on annotator proportions when items carry them"
    )
    intensity_scale: float | None = Field(
        None,
        gt=0,
        description="multilabel: learn intensity / this value (CMU-MOSEI: 3) instead of "
        "presence (0 or 1); presence decides the metrics either way",
    )
    sentiment: bool = Field(
        False,
        description="regression of a signed sentiment score on [-3, 3] (CMU-MOSEI): also report "
        "the field's MAE, Acc-2, F1 and Acc-7",
    )
    # balanced: n / (classes * count); balanced-sqrt: its square root, for a class so rare
    # (FER+'s disgust, 0.2%) that full weight makes a head say it far too often.
    class_weights: Literal["none", "balanced", "balanced-sqrt"] | tuple[float, ...] = "none"

    @model_validator(mode="after")
    def _check_labels(self) -> TaskConfig:
        if len(self.labels) < (2 if self.kind == "classification" else 1):
            raise ValueError(f"task.labels needs more entries for {self.kind}: {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task.labels has duplicates: {list(self.labels)}")
        if self.intensity_scale is not None and self.kind != "multilabel":
            raise ValueError("task.intensity_scale applies to multilabel tasks only")
        if self.sentiment and (self.kind != "regression" or len(self.labels) != 1):
            raise ValueError("task.sentiment applies to a regression of one score")
        if isinstance(self.class_weights, tuple):
            if self.kind != "classification":
                raise ValueError("class_weights only apply to classification")
            if len(self.class_weights) != len(self.labels):
                raise ValueError(
                    f"class_weights has {len(self.class_weights)} values for "
                    f"{len(self.labels)} labels"
                )
        return self

    @property
    def output_dim(self) -> int:
        return len(self.labels)


class TrainingConfig(_Strict):
    """The three-step recipe (defaults: the paper's CREMA-D settings)."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="constant (the paper's), or cosine decay to 0 over training.epochs",
    )
    weight_decay: float = Field(5e-7, ge=0)
    betas: tuple[float, float] = (0.95, 0.999)
    reconstruction_weight: float | None = Field(
        None, ge=0, description="weight of the reconstruction MSE; default 2 (classes) / 1 (attrs)"
    )
    max_grad_norm: float | None = Field(5.0, gt=0)
    recipe: Literal["auto", "three-step", "joint"] = Field(
        "auto",
        description="three-step: VAVL's alternating visual/acoustic/fusion steps; joint: one "
        "optimizer on the mean of every path's loss (AuxFormer, baselines); auto: three-step for "
        "VAVL, joint otherwise",
    )
    modality_dropout: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="three-step: chance that a pair's audio or visual representation is zeroed "
        "in the fusion step (an extension); joint: one draw per batch zeroes its audio with "
        "this chance, else its video with this chance, never both (AuxFormer's 0.2)",
    )
    pair_unpaired: bool = Field(
        False,
        description="join audio-only and visual-only clips of the same class into pairs (new "
        "ones every epoch; the development set's are fixed), so that the fusion head also "
        "learns from corpora that have one modality",
    )
    crop_min_share: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="augmentation: each training clip keeps a random stretch of at least this "
        "share of its frames (1: no cropping)",
    )
    frame_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="augmentation: chance that a training frame is masked"
    )
    balance: Literal["none", "corpus", "corpus-class"] = Field(
        "none",
        description="each epoch draws its clips (as many as there are, with replacement) so "
        "that every corpus, or every class of every corpus, weighs the same: a large corpus "
        "does not drown the voices of the small ones",
    )
    shared_optimizer: Literal["per-step", "single"] = Field(
        "per-step",
        description="three-step recipe: the shared block's parameters in the visual and the "
        "audio step's optimizers (two Adam states), or in one optimizer stepped in both "
        "(reference)",
    )
    selection_path: Literal["mean", "audio", "visual", "audiovisual", "last"] = Field(
        "mean",
        description="which development loss picks the best epoch ('last': the final epoch, "
        "for data too small to set speakers aside for development)",
    )
    seed: int = 0
    ensemble: int = Field(
        1,
        ge=1,
        description="train this many members (seeds seed, seed+1, ...; each a run of its own in "
        "run_dir/member-K) and predict with the mean of their probabilities (of their values "
        "for attributes)",
    )
    amp: bool | Literal["bfloat16", "float16"] = Field(
        True,
        description="mixed precision: true on CUDA only (bfloat16 where the GPU has it, else "
        "float16 with a loss scaler); 'bfloat16' or 'float16' on any device (the CPU too)",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    checkpoint_every: int = Field(
        200, ge=0, description="also checkpoint every N steps inside an epoch (0: epoch ends only)"
    )
    num_workers: int = Field(0, ge=0)
    compile: bool = Field(
        False, description="torch.compile the model (pays on GPUs for long runs; see benchmarks)"
    )
    progress: bool = True

    @field_validator("device")
    @classmethod
    def _a_device(cls, name: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, not '{name}'")
        return name

    def resolved_reconstruction_weight(self, task_kind: str) -> float:
        if self.reconstruction_weight is not None:
            return self.reconstruction_weight
        return 2.0 if task_kind == "classification" else 1.0


class FaceSettings(_Strict):
    """How faces are found and cropped before visual features are extracted."""

    detector: Literal["auto", "short", "full", "none"] = Field(
        "auto",
        description="BlazeFace short range (close-ups), full range, or short then full; 'none': "
        "the whole image is the face (pre-cropped face datasets such as FER2013 or CK+ crops)",
    )
    min_score: float = Field(0.6, gt=0.0, lt=1.0)
    min_track_frames: int = Field(
        3, ge=1, description="fewer sampled frames with the face: no face (a still needs one)"
    )
    crop_size: int = Field(224, ge=16, description="aligned crop side, pixels")
    margin: float = Field(0.25, ge=0.0, description="added around the face box, share of its side")
    max_side: int = Field(1280, ge=64, description="larger frames are downscaled when decoded")


class FeaturesConfig(_Strict):
    """The feature extractors that feed the model (recorded in every checkpoint)."""

    audio: str | None = None
    visual: str | None = None
    audio_options: dict[str, Any] = Field(default_factory=dict)
    visual_options: dict[str, Any] = Field(default_factory=dict)
    faces: FaceSettings = FaceSettings()
    standardise: tuple[Literal["audio", "visual"], ...] = Field(
        ("audio", "visual"),
        description="the modalities whose features are standardised per dimension by the "
        "training statistics; the others reach the model as extracted (reference: [visual], "
        "its wav2vec2 states go in raw)",
    )
    normalise: Literal["global", "source"] = Field(
        "global",
        description="'source': every training corpus standardised by its own statistics, and "
        "so is every set of clips predicted together (a folder, a corpus); one file alone is "
        "standardised by the training statistics. 'global': the training statistics for all",
    )

    def extractor(self, modality: Modality) -> str | None:
        return self.audio if modality == "audio" else self.visual

    def options(self, modality: Modality) -> dict[str, Any]:
        return dict(self.audio_options if modality == "audio" else self.visual_options)


class PredictionConfig(_Strict):
    """How a trained model is applied to media (saved with it; changing it retrains nothing)."""

    max_clip_seconds: float = Field(
        12.0,
        gt=0,
        description="longer files are predicted as the mean of the calibrated probabilities of "
        "consecutive windows this long, never by attending over the whole file",
    )


class ExperimentConfig(_Strict):
    method: str | None = Field(
        None, description="the compared method's name (vavl train/cv --model sets it)"
    )
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    training: TrainingConfig = TrainingConfig()
    features: FeaturesConfig = FeaturesConfig()
    prediction: PredictionConfig = PredictionConfig()
    data: SyntheticDataConfig | CorporaDataConfig | None = Field(None, discriminator="source")

    @model_validator(mode="after")
    def _check_consistency(self) -> ExperimentConfig:
        if isinstance(self.data, SyntheticDataConfig):
            for modality in MODALITIES:
                model_dim = self.model.dim(modality)
                data_dim = self.data.dim(modality)
                if model_dim != data_dim:
                    raise ValueError(
                        f"model.{modality}_dim is {model_dim} but the {modality} features "
                        f"(data.{modality}_dim) are {data_dim}-d; set model.{modality}_dim: "
                        f"{data_dim}"
                    )
        self._check_task_fits()
        from vavl.features import registered_dim  # each extractor declares its size

        for modality in MODALITIES:
            extractor = self.features.extractor(modality)
            options = self.features.options(modality)
            dim = registered_dim(extractor, options) if extractor else None
            model_dim = self.model.dim(modality)
            if dim is not None and dim != model_dim:
                raise ValueError(
                    f"model.{modality}_dim is {model_dim} but '{extractor}' features are {dim}-d; "
                    f"set model.{modality}_dim: {dim}"
                )
        return self

    def _check_task_fits(self) -> None:
        """Settings that would do nothing (or something wrong) for the task's kind."""
        task, training = self.task, self.training
        prior = self.model.visual_prior
        if prior and task.kind != "classification":
            raise ValueError(
                f"model.visual_prior adds class log-probabilities: it is for classification, "
                f"not {task.kind} (set model.visual_prior=[])"
            )
        if prior and len(prior) != task.output_dim:
            raise ValueError(
                f"model.visual_prior gives a column for each class: {len(task.labels)} labels, "
                f"{len(prior)} columns"
            )
        from vavl.features.visual import FER_PRIOR_OUTPUT  # features import this module

        visual = self.features.visual
        output = self.features.visual_options.get("output")
        if prior and visual is not None and (visual, output) != ("fer", FER_PRIOR_OUTPUT):
            raise ValueError(
                f"model.visual_prior reads class log-probabilities, which only fer's output "
                f"{FER_PRIOR_OUTPUT} gives ('{visual}' features here; set "
                f"features.visual_options.output={FER_PRIOR_OUTPUT}, or model.visual_prior=[])"
            )
        if task.kind == "multilabel":
            if task.class_weights != "none" or task.soft_labels:
                raise ValueError(
                    "task.class_weights and task.soft_labels are for one class per clip, not "
                    "multilabel (each label gets its own threshold on development clips)"
                )
            if training.pair_unpaired or training.balance == "corpus-class":
                raise ValueError(
                    "training.pair_unpaired and balance: corpus-class group clips by their one "
                    "class; a multilabel clip has none"
                )
        scale = getattr(self.data, "scale_attributes", "none")
        if task.sentiment and scale != "none":
            raise ValueError(
                "task.sentiment scores need data.scale_attributes: none (Acc-2 and Acc-7 read "
                "the [-3, 3] scale)"
            )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"])
        if detail["type"] == "extra_forbidden":
            parts.append(f"unknown field '{location}'")
            continue
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def config_from_dict(values: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a plain dictionary (e.g. from a checkpoint); ``source`` names it in errors."""
    try:
        return ExperimentConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None
