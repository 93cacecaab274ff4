"""One media file -> frame-level features of each modality it has.

Audio is decoded in chunks and fed to the audio extractor. Video is sampled at the visual
extractor's frame rate; faces are detected in every sampled frame, the main face is tracked
across the clip, and its aligned crops are fed to the visual extractor. Frames without the main
face are masked. Long videos are read twice (detect and track, then crop and extract) so that
memory stays bounded; short ones are kept in memory between the two passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.config import FaceSettings
from vavl.errors import MediaError
from vavl.faces import Detection, FaceDetector, aligned_crop, main_face_track
from vavl.features.base import AudioExtractor, FloatArray, VisualExtractor
from vavl.media import SAMPLE_RATE, VideoFrame, VideoReader, iter_audio, probe

MIN_DURATION = 0.2  # seconds; shorter clips carry no usable expression
SILENCE_RMS = 1e-4  # about -80 dBFS over the whole track
FRAME_CACHE_BYTES = 256 * 2**20  # frames kept between the two video passes
CROP_BATCH = 64


@dataclass
class ModalityFeatures:
    features: FloatArray  # (frames, dim)
    times: NDArray[np.float32]  # (frames,) start of each frame, seconds
    valid: NDArray[np.bool_]  # (frames,) False where the frame has no usable content (no face)


@dataclass
class FileFeatures:
    """What one file gave. A missing modality is None, with the reason in ``missing``."""

    path: Path
    duration: float | None
    audio: ModalityFeatures | None = None
    visual: ModalityFeatures | None = None
    audio_seconds: float = 0.0
    frames_sampled: int = 0
    frames_with_face: int = 0
    missing: dict[str, str] = field(default_factory=dict)  # modality -> why it has no features
    notes: list[str] = field(default_factory=list)  # other problems (e.g. a truncated file)
    seconds: dict[str, float] = field(default_factory=dict)  # compute time per stage
    preview: list[NDArray[np.uint8]] = field(default_factory=list)  # a few face crops


class FeaturePipeline:
    """Extracts the configured modalities of media files (one extractor per modality)."""

    def __init__(
        self,
        audio: AudioExtractor | None,
        visual: VisualExtractor | None,
        faces: FaceSettings | None = None,
        preview_crops: int = 0,
    ) -> None:
        self.audio = audio
        self.visual = visual
        self.faces = faces or FaceSettings()
        self.preview_crops = preview_crops
        self._detectors: dict[str, FaceDetector] = {}

    def detector(self, name: str) -> FaceDetector:
        if name not in self._detectors:
            self._detectors[name] = FaceDetector(name, min_score=self.faces.min_score)  # type: ignore[arg-type]
        return self._detectors[name]

    def extract(
        self, path: str | Path, modalities: tuple[str, ...] = ("audio", "visual")
    ) -> FileFeatures:
        path = Path(path)
        info = probe(path)
        if info.audio is None and info.video is None:
            raise MediaError(f"{path}: has neither an audio nor a video stream")
        if info.duration is not None and info.duration < MIN_DURATION:
            raise MediaError(
                f"{path}: too short ({info.duration:.2f} s; at least {MIN_DURATION} s is needed)"
            )
        result = FileFeatures(path=path, duration=info.duration)
        steps: dict[str, tuple[Any, Any, str, Any]] = {
            "audio": (self.audio, info.audio, "audio", self._extract_audio),
            "visual": (self.visual, info.video, "video", self._extract_visual),
        }
        for modality, (extractor, stream, stream_name, extract) in steps.items():
            if extractor is None or modality not in modalities:
                continue
            if stream is None:
                result.missing[modality] = f"no {stream_name} stream"
                continue
            started = time.perf_counter()
            setattr(result, modality, extract(path, extractor, result))
            result.seconds[modality] = time.perf_counter() - started
        return result

    def _extract_audio(
        self, path: Path, extractor: AudioExtractor, result: FileFeatures
    ) -> ModalityFeatures | None:
        chunks, energy, samples = [], 0.0, 0
        for waveform in iter_audio(path, chunk_seconds=extractor.chunk_seconds):
            energy += float(np.square(waveform, dtype=np.float64).sum())
            samples += len(waveform)
            chunks.append(extractor.extract(waveform))
        result.audio_seconds = samples / SAMPLE_RATE
        if samples < MIN_DURATION * SAMPLE_RATE:
            result.missing["audio"] = f"audio too short ({result.audio_seconds:.2f} s)"
            return None
        if np.sqrt(energy / samples) < SILENCE_RMS:
            result.missing["audio"] = "silent audio track"
            return None
        features = np.concatenate(chunks).astype(np.float32)
        times = (np.arange(len(features)) / extractor.frame_rate).astype(np.float32)
        return ModalityFeatures(features, times, np.ones(len(features), dtype=bool))

    def _frames(
        self, path: Path, fps: float, cache: list[VideoFrame] | None
    ) -> Iterator[VideoFrame]:
        if cache is not None:
            yield from cache
            return
        yield from VideoReader(path, fps=fps, max_side=self.faces.max_side)

    def _extract_visual(
        self, path: Path, extractor: VisualExtractor, result: FileFeatures
    ) -> ModalityFeatures | None:
        settings = self.faces
        reader = VideoReader(path, fps=extractor.frame_rate, max_side=settings.max_side)
        first = "full" if settings.detector == "full" else "short"
        detections: list[list[Detection]] = []
        times: list[float] = []
        cache: list[VideoFrame] | None = []
        cached_bytes = 0
        for frame in reader:
            detections.append(self.detector(first).detect(frame.image))
            times.append(frame.time)
            if cache is not None:
                cache.append(frame)
                cached_bytes += frame.image.nbytes
                if cached_bytes > FRAME_CACHE_BYTES:
                    cache = None  # too long to keep: the second pass decodes again
        result.notes += reader.problems
        result.frames_sampled = len(times)
        if not times:
            result.missing["visual"] = "no decodable video frame"
            return None
        track = main_face_track(detections)
        found = sum(d is not None for d in track)
        if found < settings.min_track_frames and settings.detector == "auto":
            # Nothing close to the camera: look again for small or distant faces.
            detections = [
                self.detector("full").detect(frame.image)
                for frame in self._frames(path, extractor.frame_rate, cache)
            ]
            track = main_face_track(detections)
            found = sum(d is not None for d in track)
        if found < settings.min_track_frames:
            result.missing["visual"] = f"no face found in {len(times)} sampled frames"
            return None
        result.frames_with_face = found
        features = np.zeros((len(times), extractor.dim), dtype=np.float32)
        valid = np.array([d is not None for d in track], dtype=bool)
        spread = np.linspace(0, found - 1, min(self.preview_crops, found)).astype(int)
        preview_at = set(np.flatnonzero(valid)[spread].tolist())
        batch_rows: list[int] = []
        batch_crops: list[NDArray[np.uint8]] = []

        def flush() -> None:
            if batch_rows:
                features[batch_rows] = extractor.extract(np.stack(batch_crops))
                batch_rows.clear()
                batch_crops.clear()

        for frame in self._frames(path, extractor.frame_rate, cache):
            if frame.index >= len(track):
                break
            detection = track[frame.index]
            if detection is None:
                continue
            crop = aligned_crop(frame.image, detection, settings.crop_size, settings.margin)
            if frame.index in preview_at:
                result.preview.append(crop)
            batch_rows.append(frame.index)
            batch_crops.append(crop)
            if len(batch_rows) == CROP_BATCH:
                flush()
        flush()
        return ModalityFeatures(features, np.asarray(times, dtype=np.float32), valid)
