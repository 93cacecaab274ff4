"""Checkpoints: weights plus everything needed to trust and reuse them.

A checkpoint holds the model weights, the full configuration, the label set, the feature
normalisation statistics, the feature extractors that fed the model and, once trained, each
path's calibration and development figures (:mod:`vavl.calibration`); a training
checkpoint also holds the optimizer states, the trainer's position and random states, so that a
killed run resumes exactly. Files are written atomically (temporary file, fsync, rename) and read
with ``weights_only=True``, so loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vavl import __version__
from vavl.calibration import PathReliability
from vavl.config import ExperimentConfig, config_from_dict
from vavl.data import FeatureNormalizer
from vavl.errors import CheckpointError, ConfigError
from vavl.features.base import Descriptions, ExtractorDescription, check_extractors
from vavl.files import write_atomically
from vavl.models import EmotionModel, Ensemble, build_model
from vavl.records import EpochRecord

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    config: ExperimentConfig
    model_state: dict[str, Tensor]
    normalizer: FeatureNormalizer
    # modality -> what made the features it was trained on (None: a modality it never saw)
    extractors: dict[str, ExtractorDescription | None]
    optimizer_states: dict[str, Any] | None = None
    trainer_state: dict[str, Any] | None = None
    history: list[EpochRecord] = field(default_factory=list)
    vavl_version: str = __version__
    # Per path: temperature and development figures (empty before calibration).
    calibration: dict[str, PathReliability] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.task.labels

    def summary_lines(self) -> list[str]:
        """What ``vavl info`` says of a checkpoint: its model, task, extractors, training state
        and each path's calibration."""
        values = sum(v.numel() for v in self.model_state.values())
        extractors = ", ".join(
            f"{modality}={described.key if described else 'none'}"
            for modality, described in self.extractors.items()
        )
        count = self.config.training.ensemble
        members = f" (ensemble of {count} members)" if count > 1 else ""
        resumable = "yes" if self.trainer_state else "no (inference checkpoint)"
        lines = [
            f"written by: vavl {self.vavl_version}",
            f"model: {self.config.model.name}{members}, {values:,} values",
            f"task: {self.config.task.kind}, labels: {', '.join(self.labels)}",
            f"extractors: {extractors}",
            f"epochs recorded: {len(self.history)}"
            + (" (an ensemble: its members' runs hold theirs)" if count > 1 else ""),
            f"resumable: {resumable}",
        ]
        for path, figures in self.calibration.items():
            lines.append(
                f"calibration, {path}: temperature {figures.temperature:.2f}, development UA "
                f"{figures.unweighted_accuracy:.3f} ({figures.dev_clips} clips), expected "
                f"calibration error {figures.ece_before:.3f} -> {figures.ece:.3f}"
            )
        return lines

    def check_features(self, given: Descriptions, model_name: str = "the model") -> None:
        """Refuse features from other extractors than those this model was trained on."""
        check_extractors(self.extractors, given, model_name)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "vavl_version": self.vavl_version,
            "config": self.config.to_dict(),
            "labels": list(self.labels),
            "extractors": {m: d and d.to_dict() for m, d in self.extractors.items()},
            "normalizer": self.normalizer.state_dict(),
            "model_state": self.model_state,
            "optimizer_states": self.optimizer_states,
            "trainer_state": self.trainer_state,
            "history": self.history,
            "calibration": {path: value.to_dict() for path, value in self.calibration.items()},
        }


def _tensor_digest(value: Any, digest: Any = None) -> str:
    """SHA-256 over every tensor in a nested payload, in a fixed order (names and bytes)."""
    digest = digest or hashlib.sha256()
    if isinstance(value, Tensor):
        digest.update(str((value.dtype, tuple(value.shape))).encode())
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _tensor_digest(value[key], digest)
    elif isinstance(value, list | tuple):
        for item in value:
            _tensor_digest(item, digest)
    return str(digest.hexdigest())


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    payload = checkpoint.to_payload()
    # torch's archive reader does not check CRCs: a flipped byte in the weights would load.
    payload["tensor_sha256"] = _tensor_digest(payload)
    return write_atomically(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a readable vavl checkpoint (not a PyTorch zip archive: empty, "
            "truncated or another kind of file)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a damaged archive can fail in many ways inside torch.load
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable vavl checkpoint ({reason})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a vavl checkpoint (no format_version)")
    if payload.get("tensor_sha256") != _tensor_digest(
        {key: value for key, value in payload.items() if key != "tensor_sha256"}
    ):
        raise CheckpointError(
            f"{path}: not a readable vavl checkpoint (its tensors fail their checksum: the file "
            "is damaged)"
        )
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is not supported by "
            f"vavl {__version__} (format {FORMAT_VERSION})"
        )
    try:
        config = config_from_dict(payload["config"], source=f"{path} (saved config)")
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    return Checkpoint(
        config=config,
        model_state=payload["model_state"],
        normalizer=FeatureNormalizer.from_state_dict(payload["normalizer"]),
        extractors={
            modality: None if saved is None else ExtractorDescription.from_saved(saved)
            for modality, saved in payload["extractors"].items()
        },
        optimizer_states=payload["optimizer_states"],
        trainer_state=payload["trainer_state"],
        history=payload["history"],
        vavl_version=payload["vavl_version"],
        calibration={
            path: PathReliability(**values)
            for path, values in payload.get("calibration", {}).items()
        },
    )


def release_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """An inference-only copy for shipping: no optimizer or trainer state, weights stored in
    float16 (half the size; loading casts them back to the model's float32 parameters)."""
    return Checkpoint(
        config=checkpoint.config,
        model_state={
            name: value.half() if value.is_floating_point() else value
            for name, value in checkpoint.model_state.items()
        },
        normalizer=checkpoint.normalizer,
        extractors=checkpoint.extractors,
        history=checkpoint.history,
        vavl_version=checkpoint.vavl_version,
        calibration=checkpoint.calibration,
    )


def model_from_checkpoint(checkpoint: Checkpoint) -> EmotionModel:
    """The checkpoint's model (an :class:`~vavl.models.Ensemble` of ``training.ensemble``
    members when that is above 1) with its weights, in eval mode."""
    config = checkpoint.config
    members = [
        build_model(config.model, config.task.output_dim) for _ in range(config.training.ensemble)
    ]
    model = members[0] if len(members) == 1 else Ensemble(members, config.task.kind)
    model.load_state_dict(checkpoint.model_state)
    return model.eval()
