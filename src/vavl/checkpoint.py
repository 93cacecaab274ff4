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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vavl import __version__
from vavl.calibration import PathReliability
from vavl.config import ExperimentConfig, config_from_dict
from vavl.errors import CheckpointError, ConfigError
from vavl.features.base import Descriptions, ExtractorDescription, check_extractors
from vavl.files import write_atomically
from vavl.models import EmotionModel, Ensemble, build_model
from vavl.normalization import FeatureNormalizer
from vavl.records import EpochRecord

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A model and what it carries. Every field is saved and read back through its entry in
    :data:`FIELDS` (how it becomes plain data and back), and only there."""

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
    # What it holds: 1, one model; N, an ensemble answering with the mean of N models.
    members: int = 1
    # The epoch kept and the development loss that chose it (None: an ensemble, or unknown).
    best_epoch: int | None = None
    selection: str | None = None

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
        members = f" (ensemble of {self.members} members)" if self.members > 1 else ""
        resumable = "yes" if self.trainer_state else "no (inference checkpoint)"
        chosen = ""
        if self.best_epoch is not None:
            chosen = f" (epoch {self.best_epoch} kept, by the development {self.selection} loss)"
        lines = [
            f"written by: vavl {self.vavl_version}",
            f"model: {self.config.model.name}{members}, {values:,} values",
            f"task: {self.config.task.kind}, labels: {', '.join(self.labels)}",
            f"extractors: {extractors}",
            f"epochs recorded: {len(self.history)}{chosen}"
            + (" (an ensemble: its members' runs hold theirs)" if self.members > 1 else ""),
            f"resumable: {resumable}",
        ]
        # A multi-label path's figure is the mean over labels of each one's UA (its WA).
        figure = "mean WA" if self.config.task.kind == "multilabel" else "UA"
        for path, figures in self.calibration.items():
            lines.append(
                f"calibration, {path}: temperature {figures.temperature:.2f}, development "
                f"{figure} {figures.unweighted_accuracy:.3f} ({figures.dev_clips} clips), "
                f"expected calibration error {figures.ece_before:.3f} -> {figures.ece:.3f}"
            )
            if figures.thresholds is not None:
                each = zip(self.labels, figures.thresholds, strict=True)
                lines.append(f"thresholds, {path}: " + ", ".join(f"{n} {t:.3f}" for n, t in each))
        return lines

    def check_features(self, given: Descriptions, model_name: str = "the model") -> None:
        """Refuse features from other extractors than those this model was trained on."""
        check_extractors(self.extractors, given, model_name)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"format_version": FORMAT_VERSION, "labels": list(self.labels)}
        for name, (save, _) in FIELDS.items():
            payload[name] = save(getattr(self, name))
        return payload


def _same(value: Any) -> Any:
    return value


# Each field of a checkpoint: how it is saved, and read back (plain data only: the file is
# read with weights_only=True). A new field is one line here and one in the dataclass.
FIELDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "vavl_version": (_same, _same),
    "config": (lambda config: config.to_dict(), _same),  # validated with its source's name
    "extractors": (
        lambda found: {m: d and d.to_dict() for m, d in found.items()},
        lambda saved: {
            m: None if d is None else ExtractorDescription.from_saved(d) for m, d in saved.items()
        },
    ),
    "normalizer": (lambda n: n.state_dict(), FeatureNormalizer.from_state_dict),
    "model_state": (_same, _same),
    "optimizer_states": (_same, _same),
    "trainer_state": (_same, _same),
    "history": (_same, _same),
    "calibration": (
        lambda found: {path: value.to_dict() for path, value in found.items()},
        lambda saved: {path: PathReliability(**values) for path, values in saved.items()},
    ),
    "members": (_same, int),
    "best_epoch": (_same, _same),
    "selection": (_same, _same),
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
    values = {name: load(payload[name]) for name, (_, load) in FIELDS.items() if name in payload}
    # Checkpoints written before these fields: an ensemble said so in its config only, and a
    # model's history stopped at the epoch kept.
    values.setdefault("members", config.training.ensemble)
    if values["members"] == 1 and values.get("history"):
        values.setdefault("best_epoch", len(values["history"]))
    return Checkpoint(**values | {"config": config})


def release_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """An inference-only copy for shipping: no optimizer or trainer state, weights stored in
    float16 (half the size; loading casts them back to the model's float32 parameters)."""
    halved = {
        name: value.half() if value.is_floating_point() else value
        for name, value in checkpoint.model_state.items()
    }
    return replace(checkpoint, model_state=halved, optimizer_states=None, trainer_state=None)


def model_from_checkpoint(checkpoint: Checkpoint) -> EmotionModel:
    """The checkpoint's model (an :class:`~vavl.models.Ensemble` when it holds several
    members) with its weights, in eval mode."""
    config = checkpoint.config
    members = [build_model(config.model, config.task.output_dim) for _ in range(checkpoint.members)]
    model = members[0] if len(members) == 1 else Ensemble(members, config.task.kind)
    model.load_state_dict(checkpoint.model_state)
    return model.eval()
