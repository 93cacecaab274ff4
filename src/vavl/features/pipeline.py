"""One media file -> frame-level features of each modality it has.

Audio is decoded in chunks and fed to the audio extractor. Video is sampled at the visual
extractor's frame rate; faces are detected in every sampled frame, the main face is tracked
across the clip, and its aligned crops are fed to the visual extractor. Frames without the main
face are masked. Long videos are read twice (detect and track, then crop and extract) so that
memory stays bounded; short ones are kept in memory between the two passes. A still image is a
one-frame video: its face is looked for again on a padded canvas when a tight crop hides it from
the detector, and with ``faces.detector: none`` the whole image is the face.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vavl.config import FaceSettings
from vavl.errors import MediaError
from vavl.faces import Detection, FaceDetector, aligned_crop, main_face_track, whole_image_crop
from vavl.features.base import AudioExtractor, FloatArray, VisualExtractor
from vavl.media import (
    SAMPLE_RATE,
    VideoFrame,
    VideoReader,
    frames_from_arrays,
    iter_audio,
    probe,
)

MIN_DURATION = 0.2  # seconds; shorter clips carry no usable expression
SILENCE_RMS = 1e-4  # about -80 dBFS over the whole track
FRAME_CACHE_BYTES = 256 * 2**20  # frames kept between the two video passes
CROP_BATCH = 64
# A face that fills a tightly cropped still is too big for the detector's anchors: look again
# with the image centred on a canvas this many times its side (found 100% of 200 FER2013 faces).
STILL_PADDINGS = (1.5, 2.0)


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
        """Features of a media file (only the modalities named in ``modalities``)."""
        path = Path(path)
        info = probe(path)
        if info.audio is None and info.video is None:
            raise MediaError(f"{path}: has neither an audio nor a video stream")
        self._check_duration(str(path), info.duration)
        result = FileFeatures(path=path, duration=info.duration)
        if self.audio is not None and "audio" in modalities:
            if info.audio is None:
                result.missing["audio"] = "a still image has no sound" if info.still else (
                    "no audio stream"
                )
            else:
                chunks = iter_audio(path, chunk_seconds=self.audio.chunk_seconds)
                self._run("audio", lambda: self.audio_features(chunks, result), result)
        if self.visual is not None and "visual" in modalities:
            if info.video is None:
                result.missing["visual"] = "no video stream"
            else:
                rate, side = self.visual.frame_rate, self.faces.max_side
                frames = lambda: VideoReader(path, fps=rate, max_side=side)  # noqa: E731
                self._run("visual", lambda: self.visual_features(frames, result), result)
        return result

    def extract_arrays(
        self,
        waveform: FloatArray | None = None,
        frames: Sequence[NDArray[np.uint8]] | None = None,
        fps: float = 25.0,
        name: str = "<arrays>",
    ) -> FileFeatures:
        """Features of a 16 kHz mono waveform and/or RGB frames at ``fps`` held in memory."""
        durations = [len(waveform) / SAMPLE_RATE] if waveform is not None else []
        still = waveform is None and frames is not None and len(frames) == 1
        durations += [len(frames) / fps] if frames is not None and not still else []
        if not durations and not still:
            raise MediaError(f"{name}: neither a waveform nor frames were given")
        duration = max(durations) if durations else None
        self._check_duration(name, duration)
        result = FileFeatures(path=Path(name), duration=duration)
        if self.audio is not None and waveform is not None:
            step = int(self.audio.chunk_seconds * SAMPLE_RATE)
            chunks = (waveform[i : i + step] for i in range(0, len(waveform), step))
            self._run("audio", lambda: self.audio_features(chunks, result), result)
        if self.visual is not None and frames is not None:
            rate = self.visual.frame_rate
            source = lambda: frames_from_arrays(frames, fps, rate)  # noqa: E731
            self._run("visual", lambda: self.visual_features(source, result), result)
        return result

    @staticmethod
    def _check_duration(name: str, duration: float | None) -> None:
        if duration is not None and duration < MIN_DURATION:
            raise MediaError(
                f"{name}: too short ({duration:.2f} s; at least {MIN_DURATION} s is needed)"
            )

    @staticmethod
    def _run(
        modality: str, step: Callable[[], ModalityFeatures | None], result: FileFeatures
    ) -> None:
        started = time.perf_counter()
        setattr(result, modality, step())
        result.seconds[modality] = time.perf_counter() - started

    def audio_features(
        self, chunks: Iterable[FloatArray], result: FileFeatures
    ) -> ModalityFeatures | None:
        """Audio features of consecutive 16 kHz chunks; None (with the reason) for silence."""
        assert self.audio is not None
        extracted, energy, samples = [], 0.0, 0
        for waveform in chunks:
            energy += float(np.square(waveform, dtype=np.float64).sum())
            samples += len(waveform)
            extracted.append(self.audio.extract(waveform))
        result.audio_seconds = samples / SAMPLE_RATE
        if samples < MIN_DURATION * SAMPLE_RATE:
            result.missing["audio"] = f"audio too short ({result.audio_seconds:.2f} s)"
            return None
        if np.sqrt(energy / samples) < SILENCE_RMS:
            result.missing["audio"] = "silent audio track"
            return None
        features = np.concatenate(extracted).astype(np.float32)
        times = (np.arange(len(features)) / self.audio.frame_rate).astype(np.float32)
        return ModalityFeatures(features, times, np.ones(len(features), dtype=bool))

    def visual_features(
        self, frames: Callable[[], Iterable[VideoFrame]], result: FileFeatures
    ) -> ModalityFeatures | None:
        """``frames()`` gives the sampled frames afresh each time it is called (two passes)."""
        assert self.visual is not None
        settings = self.faces
        detections: list[list[Detection]] = []
        times: list[float] = []
        cache: list[VideoFrame] | None = []
        cached_bytes = 0
        source = frames()
        first = "full" if settings.detector == "full" else "short"
        for frame in source:
            if settings.detector != "none":
                detections.append(self.detector(first).detect(frame.image))
            times.append(frame.time)
            if cache is not None:
                cache.append(frame)
                cached_bytes += frame.image.nbytes
                if cached_bytes > FRAME_CACHE_BYTES:
                    cache = None  # too long to keep: the second pass decodes again
        result.notes += getattr(source, "problems", [])
        result.frames_sampled = len(times)
        if not times:
            result.missing["visual"] = "no decodable video frame"
            return None

        def again() -> Iterable[VideoFrame]:
            return cache if cache is not None else frames()

        if settings.detector == "none":
            result.frames_with_face = len(times)
            return self._face_features(again, [None] * len(times), times, result)
        track = self._track(detections, again)
        found = sum(d is not None for d in track)
        # A still (or a clip shorter than the track minimum) needs its face in every frame.
        if found < min(settings.min_track_frames, len(times)):
            result.missing["visual"] = f"no face found in {len(times)} sampled frames"
            return None
        result.frames_with_face = found
        return self._face_features(again, track, times, result)

    def _track(
        self, detections: list[list[Detection]], frames: Callable[[], Iterable[VideoFrame]]
    ) -> list[Detection | None]:
        """The main face's track, looking again where the first detector found too little."""
        settings = self.faces
        track = main_face_track(detections)
        enough = min(settings.min_track_frames, len(detections))
        if sum(d is not None for d in track) < enough and settings.detector == "auto":
            # Nothing close to the camera: look again for small or distant faces.
            detections = [self.detector("full").detect(frame.image) for frame in frames()]
            track = main_face_track(detections)
        if len(detections) == 1 and track[0] is None:
            (frame,) = list(frames())
            name = "full" if settings.detector == "full" else "short"
            for padding in STILL_PADDINGS:
                found = self.detector(name).detect(frame.image, padding)
                if found:
                    return main_face_track([found])
        return track

    def _face_features(
        self,
        frames: Callable[[], Iterable[VideoFrame]],
        track: Sequence[Detection | None],
        times: Sequence[float],
        result: FileFeatures,
    ) -> ModalityFeatures:
        """Visual features of the frames where ``track`` has the face (None everywhere with
        ``detector: none``: the whole frame is the face)."""
        assert self.visual is not None
        extractor, settings = self.visual, self.faces
        whole = settings.detector == "none"
        valid = np.array([whole or d is not None for d in track], dtype=bool)
        found = int(valid.sum())
        features = np.zeros((len(times), extractor.dim), dtype=np.float32)
        spread = np.linspace(0, found - 1, min(self.preview_crops, found)).astype(int)
        preview_at = set(np.flatnonzero(valid)[spread].tolist())
        batch_rows: list[int] = []
        batch_crops: list[NDArray[np.uint8]] = []

        def flush() -> None:
            if batch_rows:
                features[batch_rows] = extractor.extract(np.stack(batch_crops))
                batch_rows.clear()
                batch_crops.clear()

        for frame in frames():
            if frame.index >= len(track):
                break
            detection = track[frame.index]
            if detection is not None:
                crop = aligned_crop(frame.image, detection, settings.crop_size, settings.margin)
            elif whole:
                crop = whole_image_crop(frame.image, settings.crop_size)
            else:
                continue
            if frame.index in preview_at:
                result.preview.append(crop)
            batch_rows.append(frame.index)
            batch_crops.append(crop)
            if len(batch_rows) == CROP_BATCH:
                flush()
        flush()
        return ModalityFeatures(features, np.asarray(times, dtype=np.float32), valid)
