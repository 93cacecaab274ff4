"""Emotion predictions for media files, waveforms or frames: the code path the CLI, the Python
API and the web page share.

A :class:`Predictor` holds a trained model and rebuilds, from its checkpoint, the very feature
extractors it was trained on (a model never sees features from another extractor). Each input
gets a prediction from every path it can feed: audio, visual, and audio-visual when it has both,
with probabilities calibrated on the development set; ``best_path`` names the path the model's
own development figures say is most reliable for that input (``best_reason`` says which), and
when a modality is missing the result says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from vavl.calibration import best_path, softmax
from vavl.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from vavl.config import FaceSettings
from vavl.data import Batch, Collator, Item
from vavl.devices import resolve_device
from vavl.errors import CheckpointError, MediaError
from vavl.features.pipeline import FeaturePipeline
from vavl.features.records import FaceSummary, FileFeatures
from vavl.features.store import FeatureStore
from vavl.files import cache_dir, sha256_file
from vavl.media import probe
from vavl.model_card import DEFAULT_MODEL, default_model_card
from vavl.models import EmotionModel
from vavl.results import PathPrediction, Prediction
from vavl.timeline import Timeline, predict_timeline
from vavl.types import MODALITIES, PATH_MODALITIES, PATHS, Modality

logger = logging.getLogger("vavl")


class Predictor:
    """A trained model and its feature extractors, ready to predict."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        name: str,
        device: str = "auto",
        extractor_options: dict[str, dict[str, Any]] | None = None,
        preview_crops: int = 0,
        onnx_dir: str | Path | None = None,
        faces_override: dict[str, Any] | None = None,
        face: int = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.name = name
        self.task = checkpoint.config.task
        self.device = resolve_device(device)
        self.model: EmotionModel = model_from_checkpoint(checkpoint).to(self.device)
        self.collate = Collator(self.task, checkpoint.normalizer)
        faces = FaceSettings()
        built: dict[str, Any] = {}
        for modality in MODALITIES:
            trained = checkpoint.extractors.get(modality)
            if trained is not None and not trained.rebuildable:
                raise CheckpointError(
                    f"{name}: was trained on '{trained.id}' {modality} features, which cannot "
                    "be computed from media (only full extractor descriptions can)"
                )
            if trained is not None and trained.faces is not None:
                faces = FaceSettings.model_validate(trained.faces)
            changes = (extractor_options or {}).get(modality, {})
            built[modality] = None if trained is None else trained.build(**changes)
        descriptions = {m: e and e.describe(faces.model_dump()) for m, e in built.items()}
        # The rebuilt extractors must produce what the model was trained on.
        checkpoint.check_features(descriptions, name)
        if faces_override:
            # How faces are found is the user's choice; what is made of a face stays the model's.
            faces = FaceSettings.model_validate(faces.model_dump() | faces_override)
        self.pipeline = FeaturePipeline(built["audio"], built["visual"], faces, preview_crops, face)
        self.extractors = {m: (e.id if e is not None else None) for m, e in built.items()}
        # Store keys of the features this predictor makes (with the faces found the user's way).
        self.keys = {m: e.describe(faces.model_dump()).key for m, e in built.items() if e}
        self.onnx = None
        if onnx_dir is not None:
            from vavl.export import OnnxModel

            self.onnx = OnnxModel(onnx_dir)
            saved = {m: d and d.to_dict() for m, d in checkpoint.extractors.items()}
            if self.onnx.card["extractors"] != saved:
                raise CheckpointError(f"{onnx_dir}: was exported from another model than {name}")

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        extractor_options: dict[str, dict[str, Any]] | None = None,
        preview_crops: int = 0,
        backend: Literal["torch", "onnx"] = "torch",
        onnx_dir: str | Path | None = None,
        faces: dict[str, Any] | None = None,
        face: int = 0,
    ) -> Predictor:
        """A predictor for the checkpoint at ``path`` (a run's ``best.pt``); without a path,
        vavl's default model (for non-commercial research use: see its notice).

        ``backend="onnx"`` runs the model with onnxruntime, from ``onnx_dir`` (written by
        ``vavl export --onnx``) or from an export cached per checkpoint. ``faces`` changes how
        faces are found (:class:`~vavl.config.FaceSettings` fields, e.g. ``{"detector": "none"}``
        for pre-cropped face images); ``face`` picks the N-th most prominent face of videos
        with several (0: the largest and most persistent).
        """
        if path is None:
            path = DEFAULT_MODEL
            logger.warning(default_model_card()["notice"])
        checkpoint = load_checkpoint(path)
        if backend == "onnx" and onnx_dir is None:
            from vavl.export import export_onnx

            onnx_dir = cache_dir() / "onnx" / sha256_file(Path(path))[:16]
            if not (onnx_dir / "onnx.json").is_file():
                export_onnx(path, onnx_dir)
        onnx = onnx_dir if backend == "onnx" else None
        return cls(
            checkpoint, str(path), device, extractor_options, preview_crops, onnx, faces, face
        )

    def predict(
        self,
        source: str | Path | NDArray[Any] | Sequence[NDArray[np.uint8]],
        fps: float = 25.0,
        waveform: NDArray[np.float32] | None = None,
        store: FeatureStore | None = None,
    ) -> Prediction:
        """Predict from a media file (video, audio or a still image), a 16 kHz mono waveform
        (1-D array), one RGB image ((height, width, 3) array) or RGB frames at ``fps`` (a
        (frames, height, width, 3) array or a list of images; give their sound with
        ``waveform``). With a feature ``store``, a file's features already there are reused."""
        limit = self.checkpoint.config.prediction.max_clip_seconds
        if isinstance(source, str | Path) and (probe(source).duration or 0.0) > limit:
            return self._predict_long(Path(source), limit)
        if isinstance(source, str | Path) and store is not None:
            features = self._from_store(Path(source), store)
        elif isinstance(source, str | Path):
            features = self.pipeline.extract(source)
        elif isinstance(source, np.ndarray) and source.ndim == 1:
            features = self.pipeline.extract_arrays(
                waveform=source.astype(np.float32), name="<waveform>"
            )
        elif isinstance(source, np.ndarray) and source.ndim == 3:
            features = self.pipeline.extract_arrays(waveform, [source], fps, name="<image>")
        else:
            frames = list(source)
            features = self.pipeline.extract_arrays(waveform, frames, fps, name="<frames>")
        return self.predict_features(features)

    def _predict_long(self, path: Path, window: float) -> Prediction:
        """A long file: the mean of each path's calibrated probabilities (or values) over
        consecutive ``window``-second windows, read in one pass; memory does not grow with it."""
        sums: dict[str, NDArray[np.float64]] = {}
        counts: dict[str, int] = {}
        totals = {"windows": 0, "frames_sampled": 0, "frames_with_face": 0, "faces": 0}
        found: set[str] = set()
        last: FileFeatures | None = None
        for features in self.pipeline.windows(path, window, window, cover=True):
            item = Item.from_features(f"{features.start:.3f}", features)
            for name, result in self.predict_items([item])[0].items():
                scores = result.probabilities or result.values
                vector = np.array([scores[label] for label in self.task.labels], np.float64)
                sums[name] = sums.get(name, 0.0) + vector
                counts[name] = counts.get(name, 0) + 1
            found |= {m for m in MODALITIES if item.has(m)}
            totals["windows"] += 1
            totals["frames_sampled"] += features.frames_sampled
            totals["frames_with_face"] += features.frames_with_face
            totals["faces"] = max(totals["faces"], len(features.faces))
            last = features
        assert last is not None
        paths = {name: self._from_scores(sums[name] / counts[name]) for name in sums}
        whole = FileFeatures(path, probe(path).duration, notes=list(last.notes))
        whole.missing = {m: r for m, r in last.missing.items() if m not in found}
        for modality in MODALITIES:
            if modality not in found and modality not in whole.missing:
                whole.missing[modality] = "not found in any window"
        whole.frames_sampled = totals["frames_sampled"]
        whole.frames_with_face = totals["frames_with_face"]
        aggregated = {
            "windows": totals["windows"],
            "window_seconds": window,
            "windows_per_path": counts,
            "method": "mean of the calibrated probabilities (values) of consecutive windows",
        }
        asked = self.pipeline.face
        rank = "most prominent" if asked == 0 else f"number {asked}"
        face = f"the {rank} face of each {window:g} s window"
        if asked >= totals["faces"] > 0:
            face = (
                f"the last face tracked in each {window:g} s window (face {asked} was asked for "
                f"but at most {totals['faces']} were tracked in one)"
            )
        return self._prediction(whole, paths, totals["faces"], face, aggregated)

    def timeline(
        self, path: str | Path, window: float = 3.0, hop: float = 1.0, progress: bool = False
    ) -> Timeline:
        """Every path's prediction for each ``window``-second window, every ``hop`` seconds."""
        return predict_timeline(
            self.pipeline, self.predict_items, self.task, path, window, hop, progress=progress
        )

    def _from_store(self, path: Path, store: FeatureStore) -> FileFeatures:
        """The file's stored features; the modalities the store lacks are extracted now."""
        if not path.is_file():
            raise MediaError(f"{path}: file not found")
        content = sha256_file(path)
        entries = {m: store.load(key, content) for m, key in self.keys.items()}
        todo = tuple(m for m, entry in entries.items() if entry is None)
        features = self.pipeline.extract(path, todo) if todo else FileFeatures(path, None)
        for modality, entry in entries.items():
            if entry is None:
                continue
            metadata = entry.metadata
            setattr(features, modality, entry.features)
            if entry.missing_reason:
                features.missing[modality] = entry.missing_reason
            features.duration = features.duration or metadata.get("duration_s")
            features.notes += [n for n in metadata.get("notes", []) if n not in features.notes]
            if modality == "visual":
                features.frames_sampled = metadata.get("frames_sampled", 0)
                features.frames_with_face = metadata.get("frames_with_face", 0)
                features.faces = [FaceSummary(**face) for face in metadata.get("faces", [])]
                features.face_used = metadata.get("face_used")
        return features

    @torch.no_grad()
    def predict_items(self, items: Sequence[Item]) -> list[dict[str, PathPrediction]]:
        """Every path's prediction for each item (batched); {} for an item with no features."""
        results: list[dict[str, PathPrediction]] = [{} for _ in items]
        usable = [i for i, item in enumerate(items) if item.has("audio") or item.has("visual")]
        if not usable:
            return results
        batch = self.collate([items[i] for i in usable])
        for path, (values, present) in self._forward(batch).items():
            for row, index in enumerate(usable):
                if present[row]:
                    results[index][path] = self._path_prediction(path, values[row])
        return results

    def _forward(self, batch: Batch) -> dict[str, tuple[NDArray[np.float32], NDArray[np.bool_]]]:
        """Each path's outputs for the batch and which rows could feed it."""
        if self.onnx is None:
            self.model.eval()
            output = self.model(**batch.to(self.device).inputs())
            return {
                path: (output.predictions[path].float().cpu().numpy(), present.cpu().numpy())
                for path, present in output.present.items()
            }
        has: dict[Modality, NDArray[np.bool_]] = {m: batch.present(m).numpy() for m in MODALITIES}
        results: dict[str, tuple[NDArray[np.float32], NDArray[np.bool_]]] = {}
        for path, modalities in PATH_MODALITIES.items():
            rows = np.logical_and.reduce([has[m] for m in modalities])
            if not rows.any():
                continue
            subset = batch.select(torch.from_numpy(rows), modalities)
            inputs = {k: v.numpy() for k, v in subset.inputs().items() if v is not None}
            values = np.zeros((len(batch), self.task.output_dim), np.float32)
            values[rows] = self.onnx.run(path, inputs)
            results[path] = (values, rows)
        return results

    def predict_features(self, features: FileFeatures) -> Prediction:
        paths = self.predict_items([Item.from_features(str(features.path), features)])[0]
        used = features.face_reason if features.face_used is not None else "none"
        return self._prediction(features, paths, len(features.faces), used)

    def _prediction(
        self,
        features: FileFeatures,
        paths: dict[str, PathPrediction],
        faces: int,
        face_used: str,
        aggregated: dict[str, Any] | None = None,
    ) -> Prediction:
        # A modality was found exactly when its own path could be fed.
        modalities: dict[str, str] = {
            m: "found" if m in paths else f"missing: {features.missing.get(m, 'not used')}"
            for m in MODALITIES
        }
        best, reason = best_path([p for p in PATHS if p in paths], self.checkpoint.calibration)
        return Prediction(
            source=str(features.path),
            duration=features.duration,
            modalities=modalities,
            frames_sampled=features.frames_sampled,
            frames_with_face=features.frames_with_face,
            faces_tracked=faces,
            face_used=face_used,
            paths=paths,
            best_path=best,
            best_reason=reason,
            fallback=self._fallback(paths, modalities),
            model=self.name,
            extractors=self.extractors,
            notes=list(features.notes),
            aggregated=aggregated,
            face_crops=list(features.preview),
        )

    def _path_prediction(self, path: str, values: NDArray[np.float32]) -> PathPrediction:
        if self.task.kind == "regression":
            return PathPrediction(
                values={a: float(v) for a, v in zip(self.task.labels, values, strict=True)}
            )
        reliability = self.checkpoint.calibration.get(path)
        probabilities = softmax(values, reliability.temperature if reliability else 1.0)
        return self._from_scores(probabilities)

    def _from_scores(self, scores: NDArray[np.floating[Any]]) -> PathPrediction:
        """A path's answer from its class probabilities (or its attribute values)."""
        if self.task.kind == "regression":
            return PathPrediction(
                values={a: float(v) for a, v in zip(self.task.labels, scores, strict=True)}
            )
        probabilities = scores
        return PathPrediction(
            label=self.task.labels[int(probabilities.argmax())],
            probabilities={
                c: float(p) for c, p in zip(self.task.labels, probabilities, strict=True)
            },
        )

    @staticmethod
    def _fallback(paths: dict[str, PathPrediction], modalities: dict[str, str]) -> str | None:
        missing = [f"{m} {status}" for m, status in modalities.items() if status != "found"]
        if not missing:
            return None
        if not paths:
            return "no prediction: " + "; ".join(missing)
        return f"{' and '.join(paths)} only: " + "; ".join(missing)
