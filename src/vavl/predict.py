"""Emotion predictions for media files, waveforms, frames or photos: the facade the CLI, the
Python API and the web page share. It turns an input into features (the extractors the model
was trained on, rebuilt from its checkpoint), runs the inference engine over them and hands
the outputs to :mod:`vavl.answers`: every path the input can feed, calibrated, with the path to
trust and what was missing. A file longer than the model's longest clip is the mean of its
windows, and a timeline is one answer per window: each window as if it were its own file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from vavl.answers import Answers
from vavl.checkpoint import Checkpoint, load_checkpoint
from vavl.data import Item
from vavl.devices import resolve_device
from vavl.errors import VavlError
from vavl.features.pipeline import EVERYONE, SPEAKER, FaceChoice
from vavl.features.rebuild import rebuild_features
from vavl.features.records import FileFeatures
from vavl.features.store import FeatureStore
from vavl.files import cache_dir, sha256_file
from vavl.inference import InferenceEngine, checkpoint_backend
from vavl.media import probe
from vavl.model_card import DEFAULT_MODEL, default_model_card
from vavl.results import PathPrediction, Prediction
from vavl.spans import WHOLE, Span
from vavl.timeline import Timeline, timeline_of
from vavl.together import ClipSet

logger = logging.getLogger("vavl")
Source = str | Path | NDArray[Any] | Sequence[NDArray[np.uint8]]


class Predictor:
    """A trained model ready to predict: its extractors, an inference engine, its answers."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        name: str,
        device: str = "auto",
        extractor_options: dict[str, dict[str, Any]] | None = None,
        preview_crops: int = 0,
        onnx_dir: str | Path | None = None,
        faces_override: dict[str, Any] | None = None,
        face: FaceChoice = SPEAKER,
    ) -> None:
        self.checkpoint, self.name, self.task = checkpoint, name, checkpoint.config.task
        features = rebuild_features(
            checkpoint.extractors, name, extractor_options, faces_override, preview_crops, face
        )
        self.features, self.pipeline = features, features.pipeline
        backend = checkpoint_backend(checkpoint, name, resolve_device(device), onnx_dir)
        self.engine = InferenceEngine(backend, self.task, checkpoint.normalizer)
        self.answers = Answers(
            self.task, checkpoint.calibration, name, features.extractors, face == EVERYONE
        )

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
        face: FaceChoice = SPEAKER,
    ) -> Predictor:
        """A predictor for the checkpoint at ``path`` (a run's ``best.pt``); without a path,
        vavl's default model (for non-commercial research use: see its notice).

        ``backend="onnx"`` runs the model with onnxruntime, from ``onnx_dir`` (written by
        ``vavl export --onnx``) or from an export cached per checkpoint. ``faces`` changes how
        faces are found (:class:`~vavl.config.FaceSettings` fields, e.g. ``{"detector": "none"}``
        for pre-cropped face images). ``face`` says whose face answers in videos with several:
        ``"speaker"`` (default), the one whose lips follow the speech heard (each window's),
        with an answer for every person; ``"all"``, the same, every person listed even when
        alone; N, the N-th most prominent (0: the largest and most persistent).
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
        options = extractor_options
        return cls(checkpoint, str(path), device, options, preview_crops, onnx, faces, face)

    def predict(
        self,
        source: Source,
        fps: float = 25.0,
        waveform: NDArray[np.float32] | None = None,
        store: FeatureStore | None = None,
        progress: bool = False,
        span: Span = WHOLE,
    ) -> Prediction:
        """Predict from a media file (video, audio or a still image), a 16 kHz mono waveform
        (1-D array), one RGB image ((height, width, 3) array) or RGB frames at ``fps`` (a
        (frames, height, width, 3) array or a list of images; give their sound with
        ``waveform``). With a feature ``store``, a file's features already there are reused;
        ``progress`` counts a long file's windows; ``span`` predicts that part of a file only,
        as if it were the file."""
        if not isinstance(source, str | Path):
            sound, frames, name = _arrays(source, waveform)
            return self.predict_features(self.pipeline.extract_arrays(sound, frames, fps, name))
        prediction = self._predict_file(Path(source), store, progress, span)
        prediction.span = span.bounds(prediction.duration)
        return prediction

    def _predict_file(
        self, path: Path, store: FeatureStore | None, progress: bool, span: Span
    ) -> Prediction:
        longest = self.checkpoint.config.prediction.max_clip_seconds
        duration = span.check(path, probe(path).duration)
        if (duration or 0.0) > longest:
            windows = self.pipeline.windows(path, longest, longest, cover=True, span=span)
            count = math.ceil((duration or 0.0) / longest)
            shown = tqdm(windows, path.name, count, leave=False, disable=not progress)
            outputs = self.engine.over_windows(shown)
            return self.answers.long_file(path, duration, longest, outputs)
        return self.predict_features(self.features.of_file(path, store, span))

    def predict_files(
        self,
        paths: Sequence[Path],
        store: FeatureStore | None = None,
        together: bool = True,
        span: Span = WHOLE,
    ) -> Iterator[Prediction | VavlError | OSError]:
        """Each file's prediction (of its ``span`` only, when given), or why it failed, in
        order. With a model trained with ``features.normalise: source``, the short clips among
        ``paths`` (at least :data:`~vavl.together.MIN_TOGETHER`) are standardised by their own
        statistics, as one source (a corpus, a folder of one's recordings); ``together=False``:
        each alone."""
        alone = not together or self.checkpoint.config.features.normalise != "source"
        longest = self.checkpoint.config.prediction.max_clip_seconds

        def predict_alone(path: Path) -> Prediction:
            return self.predict(path, store=store, span=span)

        clips = ClipSet(
            self.features, self.engine, self.answers, predict_alone, longest, store, span
        )
        yield from clips.predictions(paths, alone)

    def predict_features(self, features: FileFeatures) -> Prediction:
        outputs, people = self.engine.with_people([features])
        return self.answers.file(features, outputs[0], people[0])

    def predict_items(self, items: Sequence[Item]) -> list[dict[str, PathPrediction]]:
        """Every path's answer for each item ({} for an item with no features)."""
        return [self.answers.paths(outputs) for outputs in self.engine.per_item(items)]

    def timeline(
        self, path: str | Path, window: float = 3.0, hop: float = 1.0, progress: bool = False
    ) -> Timeline:
        """Every path's prediction for each ``window``-second window, every ``hop`` seconds."""
        windows = self.engine.over_windows(self.pipeline.windows(path, window, hop))
        answered = (
            (found, self.answers.paths(outputs), self.answers.faces_seen(people))
            for found, outputs, people in windows
        )
        alone = self.answers.list_alone
        return timeline_of(Path(path), window, hop, answered, self.task, progress, alone)


def _arrays(
    source: NDArray[Any] | Sequence[NDArray[np.uint8]], waveform: NDArray[np.float32] | None
) -> tuple[NDArray[np.float32] | None, list[NDArray[np.uint8]] | None, str]:
    """(waveform, frames, name) of an input held in memory."""
    if isinstance(source, np.ndarray) and source.ndim == 1:
        return source.astype(np.float32), None, "<waveform>"
    if isinstance(source, np.ndarray) and source.ndim == 3:
        return waveform, [source], "<image>"
    return waveform, list(source), "<frames>"
