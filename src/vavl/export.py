"""ONNX export: one graph per path (audio, visual, audio-visual), batch and time axes dynamic.

The graphs take normalised features and boolean masks and return the path's outputs (logits or
attribute values). ``onnx.json`` beside them carries what running them needs: the labels, the
feature normalisation, the extractors (so features are computed exactly as in training) and the
input names. ``vavl predict --backend onnx`` runs them with onnxruntime instead of PyTorch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vavl.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from vavl.errors import CheckpointError, VavlError
from vavl.files import write_json_atomically
from vavl.models import Ensemble
from vavl.models.base import ThreeStepModel
from vavl.models.ensemble import combine_outputs
from vavl.types import PATH_MODALITIES, PATHS, Modality, TaskKind

OPSET = 17


class UnimodalPath(nn.Module):
    """One modality's path of a three-step model, as a graph of its own."""

    def __init__(self, model: ThreeStepModel, modality: Modality) -> None:
        super().__init__()
        self.model = model
        self.modality: Modality = modality

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        embedding = self.model.encode(self.modality, features, mask)
        return self.model.predict(self.modality, embedding, features, mask)


class AudioVisualPath(nn.Module):
    def __init__(self, model: ThreeStepModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, audio: Tensor, audio_mask: Tensor, visual: Tensor, visual_mask: Tensor
    ) -> Tensor:
        return self.model.fuse(
            self.model.encode("audio", audio, audio_mask),
            self.model.encode("visual", visual, visual_mask),
        )


class CombinedPath(nn.Module):
    """One path of an ensemble: the members' own path graphs, combined as the ensemble does."""

    def __init__(self, paths: list[nn.Module], kind: TaskKind) -> None:
        super().__init__()
        self.paths = nn.ModuleList(paths)
        self.kind: TaskKind = kind

    def forward(self, *inputs: Tensor) -> Tensor:
        return combine_outputs([path(*inputs) for path in self.paths], self.kind)


def _path_graphs(model: ThreeStepModel) -> dict[str, nn.Module]:
    return {
        "audio": UnimodalPath(model, "audio"),
        "visual": UnimodalPath(model, "visual"),
        "audiovisual": AudioVisualPath(model),
    }


# Each graph's inputs: the features and mask of every modality its path reads.
INPUTS = {
    path: [name for m in modalities for name in (m, f"{m}_mask")]
    for path, modalities in PATH_MODALITIES.items()
}


def _example(names: list[str], checkpoint: Checkpoint) -> tuple[Tensor, ...]:
    dims = {
        "audio": checkpoint.config.model.audio_dim,
        "visual": checkpoint.config.model.visual_dim,
    }
    tensors: list[Tensor] = []
    for name in names:
        modality = name.removesuffix("_mask")
        if name.endswith("_mask"):
            mask = torch.ones(2, 17, dtype=torch.bool)
            mask[1, 11:] = False
            tensors.append(mask)
        else:
            tensors.append(torch.randn(2, 17, dims[modality]))
    return tuple(tensors)


def export_onnx(checkpoint_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``audio.onnx``, ``visual.onnx``, ``audiovisual.onnx`` and ``onnx.json``."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    graphs = [_path_graphs(member) for member in members if isinstance(member, ThreeStepModel)]
    if len(graphs) != len(members):
        raise CheckpointError(
            f"{checkpoint_path}: ONNX export handles models with per-modality encoders and a "
            f"fusion head (VAVL), not '{checkpoint.config.model.name}'"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task_kind = checkpoint.config.task.kind
    wrappers = {
        path: graphs[0][path]
        if len(graphs) == 1
        else CombinedPath([member[path] for member in graphs], task_kind)
        for path in PATHS
    }
    written: dict[str, Path] = {}
    for path in PATHS:
        names = INPUTS[path]
        axes = {name: {0: "batch", 1: f"{name.removesuffix('_mask')}_frames"} for name in names}
        axes["output"] = {0: "batch"}
        target = out / f"{path}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation chatter
            torch.onnx.export(
                wrappers[path].eval(),
                _example(names, checkpoint),
                str(target),
                input_names=names,
                output_names=["output"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        written[path] = target
    card = {
        "format": 1,
        "paths": {path: {"file": f"{path}.onnx", "inputs": INPUTS[path]} for path in PATHS},
        "task": checkpoint.config.task.model_dump(mode="json"),
        "extractors": {m: d and d.to_dict() for m, d in checkpoint.extractors.items()},
        "normalizer": {
            kind: {m: v.tolist() for m, v in values.items()}
            for kind, values in (
                ("mean", checkpoint.normalizer.mean),
                ("std", checkpoint.normalizer.std),
            )
        },
        # What turns outputs into answers: each path's temperature (and, for labels present,
        # its threshold per label), chosen on development clips.
        "calibration": {path: value.to_dict() for path, value in checkpoint.calibration.items()},
        "checkpoint": str(checkpoint_path),
    }
    written["card"] = write_json_atomically(out / "onnx.json", card)
    return written


class OnnxModel:
    """Runs exported paths with onnxruntime, as a stand-in for the PyTorch model's forward."""

    def __init__(self, folder: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise VavlError(
                "the ONNX backend needs onnxruntime: pip install 'vavl[onnx]'"
            ) from None
        self.folder = Path(folder)
        card_path = self.folder / "onnx.json"
        if not card_path.is_file():
            raise VavlError(f"{self.folder}: no onnx.json here; run `vavl export --onnx` first")
        self.card = json.loads(card_path.read_text())
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.sessions: dict[str, Any] = {
            path: onnxruntime.InferenceSession(
                str(self.folder / spec["file"]), options, providers=["CPUExecutionProvider"]
            )
            for path, spec in self.card["paths"].items()
        }

    def run(self, path: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        names = self.card["paths"][path]["inputs"]
        feeds = {name: inputs[name] for name in names}
        return np.asarray(self.sessions[path].run(["output"], feeds)[0])
