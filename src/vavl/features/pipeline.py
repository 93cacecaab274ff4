"""One media file -> frame-level features of each modality it has, in one pass.

Audio is decoded in chunks of the audio extractor's window and fed to it; every feature frame
keeps the mean square of its samples, so that silence is judged by one rule (:func:`is_silent`)
for a whole file and for any window of it. Video is sampled at the visual extractor's frame rate;
in every sampled frame faces are detected (BlazeFace short range, and full range in the frames
where that finds none), linked into tracks as the frames arrive, and the largest faces of the
frame are cropped and their features extracted at once: no frame is kept, so memory does not
grow with the video. The face whose features are used is chosen afterwards: the most prominent
track (largest sum of area x confidence: big and persistent) or the one asked for, over the whole
file or, for a timeline, over each block. Frames without that face are masked.

A still image is a one-frame video: its face is looked for again on a padded canvas when a tight
crop hides it from the detector, and with ``faces.detector: none`` the whole image is the face.

:meth:`FeaturePipeline.extract` gives a whole file's features; :meth:`FeaturePipeline.windows`
gives the features of every window of a long file from one front-to-back pass, holding only a
block and a window of features at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vavl.config import FaceSettings
from vavl.errors import MediaError
from vavl.faces import Detection, FaceDetector, FaceTracker, aligned_crop, whole_image_crop
from vavl.features.base import AudioExtractor, FloatArray, VisualExtractor
from vavl.media import SAMPLE_RATE, VideoFrame, VideoReader, frames_from_arrays, iter_audio, probe

MIN_DURATION = 0.2  # seconds; shorter clips carry no usable expression
SILENCE_RMS = 1e-4  # about -80 dBFS
CROP_BATCH = 64
FACES_PER_FRAME = 3  # the largest faces of a frame whose features are kept
# A face that fills a tightly cropped still is too big for the detector's anchors: look again
# with the image centred on a canvas this many times its side (found 100% of 200 FER2013 faces).
STILL_PADDINGS = (1.5, 2.0)


def is_silent(mean_square: float) -> bool:
    """The one silence rule: root mean square below ``SILENCE_RMS`` (about -80 dBFS)."""
    return math.sqrt(max(mean_square, 0.0)) < SILENCE_RMS


@dataclass
class ModalityFeatures:
    features: FloatArray  # (frames, dim)
    times: NDArray[np.float32]  # (frames,) start of each frame, seconds
    valid: NDArray[np.bool_]  # (frames,) False where the frame has no usable content (no face)


@dataclass(frozen=True)
class FaceSummary:
    """One tracked face: its rank (0: most prominent), in how many sampled frames it was found,
    and its mean share of the picture."""

    index: int
    frames: int
    area: float

    def describe(self) -> str:
        return f"in {self.frames} frames, {self.area:.1%} of the picture"


@dataclass
class FileFeatures:
    """What one file (or one window of it) gave. A missing modality is None, with the reason in
    ``missing``."""

    path: Path
    duration: float | None
    audio: ModalityFeatures | None = None
    visual: ModalityFeatures | None = None
    audio_seconds: float = 0.0
    frames_sampled: int = 0
    frames_with_face: int = 0
    faces: list[FaceSummary] = field(default_factory=list)  # tracked faces, most prominent first
    face_used: int | None = None  # the index (in ``faces``) of the face whose features are used
    missing: dict[str, str] = field(default_factory=dict)  # modality -> why it has no features
    notes: list[str] = field(default_factory=list)  # other problems (e.g. a truncated file)
    seconds: dict[str, float] = field(default_factory=dict)  # compute time per stage
    preview: list[NDArray[np.uint8]] = field(default_factory=list)  # a few face crops
    start: float = 0.0  # where a window begins in its file, seconds (0 for a whole file)

    @property
    def face_reason(self) -> str:
        """Which face was used and why, in words."""
        if self.face_used is None:
            return "no face"
        chosen = self.faces[self.face_used]
        why = "the most prominent" if self.face_used == 0 else "as asked"
        return f"face {chosen.index}, {why} ({chosen.describe()})"


class _AudioStream:
    """Audio features as the chunks arrive, with each frame's mean square, in a rolling buffer."""

    def __init__(self, extractor: AudioExtractor, chunks: Iterator[FloatArray]) -> None:
        self.extractor, self.chunks = extractor, chunks
        self.step = 1.0 / extractor.frame_rate
        self.first = 0  # index of the first frame still held
        self.features: list[FloatArray] = []
        self.energy: list[NDArray[np.float64]] = []
        self.frames = 0  # frames extracted so far
        self.samples = 0
        self.square_sum = 0.0
        self.done = False
        self.seconds = 0.0

    @property
    def covered(self) -> float:
        return math.inf if self.done else self.samples / SAMPLE_RATE

    def advance(self, until: float) -> None:
        while not self.done and self.samples / SAMPLE_RATE < until:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.done = True
                break
            started = time.perf_counter()
            features = self.extractor.extract(chunk)
            width = max(1, round(SAMPLE_RATE * self.step))
            padded = np.zeros(len(features) * width, np.float64)
            padded[: min(len(chunk), len(padded))] = chunk[: len(padded)]
            squares = np.square(padded).reshape(len(features), width).mean(axis=1)
            self.features.append(features.astype(np.float32))
            self.energy.append(squares)
            self.frames += len(features)
            self.samples += len(chunk)
            self.square_sum += float(np.square(chunk, dtype=np.float64).sum())
            self.seconds += time.perf_counter() - started

    def take(self, start: float, end: float) -> tuple[ModalityFeatures, float] | None:
        """The frames that start in [start, end) and their mean square (None: no frame)."""
        if not self.features:
            return None
        features, energy = np.concatenate(self.features), np.concatenate(self.energy)
        self.features, self.energy = [features], [energy]
        times = (self.first + np.arange(len(features))) * self.step
        inside = (times >= start - 1e-6) & (times < end - 1e-6)
        if not inside.any():
            return None
        taken = ModalityFeatures(
            features[inside], times[inside].astype(np.float32), np.ones(int(inside.sum()), bool)
        )
        return taken, float(energy[inside].mean())

    def drop_before(self, time_: float) -> None:
        if not self.features:
            return
        features, energy = np.concatenate(self.features), np.concatenate(self.energy)
        drop = max(0, min(len(features), int(time_ / self.step) - self.first))
        self.features, self.energy = [features[drop:]], [energy[drop:]]
        self.first += drop


class _VisualStream:
    """Faces of the sampled frames as they arrive: tracks, and each track's features per frame."""

    def __init__(self, pipeline: FeaturePipeline, frames: Iterable[VideoFrame]) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.faces
        self.source = frames
        self.frames = iter(frames)
        self.tracker = FaceTracker()
        self.times: dict[int, float] = {}  # sampled frame index -> time (rolling)
        self.features: dict[int, dict[int, FloatArray]] = {}  # track -> frame -> features
        self.crops: dict[int, list[tuple[int, NDArray[np.uint8]]]] = {}  # track -> a few crops
        self.areas: dict[int, tuple[float, int]] = {}  # track -> (sum of areas, detections)
        self.pending: list[tuple[int, int, NDArray[np.uint8]]] = []  # (track, frame, crop)
        self.sampled = 0
        self.last_time = -math.inf
        self.first_image: NDArray[np.uint8] | None = None  # kept until a second frame comes
        self.done = False
        self.seconds = 0.0

    @property
    def covered(self) -> float:
        return math.inf if self.done else self.last_time

    @property
    def problems(self) -> list[str]:
        return list(getattr(self.source, "problems", []))

    def _detect(self, image: NDArray[np.uint8]) -> list[Detection]:
        detector = self.settings.detector
        found = self.pipeline.detector("full" if detector == "full" else "short").detect(image)
        if not found and detector == "auto":  # nothing close to the camera: small, far faces
            found = self.pipeline.detector("full").detect(image)
        return found

    def _add(self, frame: VideoFrame) -> None:
        index = frame.index
        self.times[index] = frame.time
        self.sampled += 1
        self.last_time = frame.time
        self.first_image = frame.image if self.sampled == 1 else None
        if self.settings.detector == "none":
            self._keep(0, index, whole_image_crop(frame.image, self.settings.crop_size), 1.0)
            return
        found = sorted(self._detect(frame.image), key=lambda d: -d.area * d.score)
        height, width = frame.image.shape[:2]
        for track, detection in self.tracker.update(index, found[:FACES_PER_FRAME]):
            crop = aligned_crop(
                frame.image, detection, self.settings.crop_size, self.settings.margin
            )
            self._keep(track, index, crop, detection.area / (height * width))

    def _keep(self, track: int, index: int, crop: NDArray[np.uint8], area: float) -> None:
        self.pending.append((track, index, crop))
        total, count = self.areas.get(track, (0.0, 0))
        self.areas[track] = (total + area, count + 1)
        kept = self.crops.setdefault(track, [])
        kept.append((index, crop))
        wanted = self.pipeline.preview_crops
        if wanted and len(kept) > 4 * wanted:  # every other one, so they still span the clip
            del kept[1::2]
        elif not wanted:
            kept.clear()
        if len(self.pending) >= CROP_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        assert self.pipeline.visual is not None
        features = self.pipeline.visual.extract(np.stack([crop for *_, crop in self.pending]))
        for (track, index, _), vector in zip(self.pending, features, strict=True):
            self.features.setdefault(track, {})[index] = vector.astype(np.float32)
        self.pending.clear()

    def advance(self, until: float) -> None:
        started = time.perf_counter()
        while not self.done and self.last_time < until:
            frame = next(self.frames, None)
            if frame is None:
                self.done = True
                self._finish_still()
                break
            self._add(frame)
        self._flush()
        self.seconds += time.perf_counter() - started

    def _finish_still(self) -> None:
        """A one-frame video without a face found: look again on padded canvases."""
        image = self.first_image
        if self.sampled != 1 or image is None or self.tracker.tracks:
            return
        if self.settings.detector == "none":
            return
        name = "full" if self.settings.detector == "full" else "short"
        for padding in STILL_PADDINGS:
            found = self.pipeline.detector(name).detect(image, padding)
            if found:
                (track, detection), *_ = self.tracker.update(0, found[:1])
                crop = aligned_crop(image, detection, self.settings.crop_size, self.settings.margin)
                height, width = image.shape[:2]
                self._keep(track, 0, crop, detection.area / (height * width))
                return

    def summaries(self, frames: range | None = None) -> tuple[list[int], list[FaceSummary]]:
        """Track ids from the most prominent down (over ``frames``), and their summaries; tracks
        shorter than the minimum are not faces (a still needs one frame)."""
        if self.settings.detector == "none":
            count = sum(1 for i in self.times if frames is None or i in frames) or self.sampled
            return [0], [FaceSummary(0, count, 1.0)]
        needed = min(self.settings.min_track_frames, self.sampled)
        ranking = []
        for track in self.tracker.ranking(frames):
            members = [
                f for f in self.tracker.tracks[track].members if frames is None or f in frames
            ]
            if len(members) >= needed:
                ranking.append(track)
        summaries = [
            FaceSummary(
                rank,
                sum(1 for f in self.tracker.tracks[t].members if frames is None or f in frames),
                self.areas[t][0] / max(self.areas[t][1], 1),
            )
            for rank, t in enumerate(ranking)
        ]
        return ranking, summaries

    def take(self, start: float, end: float, track: int | None) -> ModalityFeatures | None:
        """The sampled frames in [start, end), with ``track``'s features where it was found."""
        indices = sorted(i for i, t in self.times.items() if start - 1e-6 <= t < end - 1e-6)
        if not indices or track is None:
            return None
        assert self.pipeline.visual is not None
        found = self.features.get(track, {})
        features = np.zeros((len(indices), self.pipeline.visual.dim), np.float32)
        valid = np.zeros(len(indices), bool)
        for row, index in enumerate(indices):
            if index in found:
                features[row], valid[row] = found[index], True
        if not valid.any():
            return None
        times = np.array([self.times[i] for i in indices], np.float32)
        return ModalityFeatures(features, times, valid)

    def frames_in(self, start: float, end: float) -> range:
        indices = [i for i, t in self.times.items() if start - 1e-6 <= t < end - 1e-6]
        return range(min(indices), max(indices) + 1) if indices else range(0)

    def preview(self, track: int, count: int) -> list[NDArray[np.uint8]]:
        kept = self.crops.get(track, [])
        spread = np.linspace(0, len(kept) - 1, min(count, len(kept))).astype(int)
        return [kept[i][1] for i in spread]

    def drop_before(self, time_: float) -> None:
        old = [i for i, t in self.times.items() if t < time_ - 1e-6]
        for index in old:
            del self.times[index]
            for per_frame in self.features.values():
                per_frame.pop(index, None)
        if old:  # tracks keep their recent detections (and their last, to link to)
            cutoff = max(old) + 1
            for track in self.tracker.tracks:
                track.members = {
                    f: d for f, d in track.members.items() if f >= cutoff or f == track.last_frame
                }


@dataclass
class _Sources:
    """Where a file's (or arrays') samples and frames come from, and what it has."""

    name: Path
    duration: float | None
    audio: Iterator[FloatArray] | None
    frames: Iterable[VideoFrame] | None
    missing: dict[str, str]
    problems: list[str]  # what went wrong reading the audio (filled as it is read)


class FeaturePipeline:
    """Extracts the configured modalities of media files (one extractor per modality).

    ``face`` picks the face whose features are used in videos with several: 0 (default) is the
    most prominent, 1 the next, and so on (``FileFeatures.faces`` lists them).
    """

    def __init__(
        self,
        audio: AudioExtractor | None,
        visual: VisualExtractor | None,
        faces: FaceSettings | None = None,
        preview_crops: int = 0,
        face: int = 0,
    ) -> None:
        self.audio = audio
        self.visual = visual
        self.faces = faces or FaceSettings()
        self.preview_crops = preview_crops
        self.face = face
        self._detectors: dict[str, FaceDetector] = {}

    def detector(self, name: str) -> FaceDetector:
        if name not in self._detectors:
            self._detectors[name] = FaceDetector(name, min_score=self.faces.min_score)  # type: ignore[arg-type]
        return self._detectors[name]

    def _file_sources(self, path: str | Path, modalities: Sequence[str]) -> _Sources:
        path = Path(path)
        info = probe(path)
        if info.audio is None and info.video is None:
            raise MediaError(f"{path}: has neither an audio nor a video stream")
        self._check_duration(str(path), info.duration)
        missing: dict[str, str] = {}
        problems: list[str] = []  # filled as the audio is read
        audio = frames = None
        if self.audio is not None and "audio" in modalities:
            if info.audio is None:
                missing["audio"] = "a still image has no sound" if info.still else "no audio stream"
            else:
                audio = iter_audio(path, self.audio.chunk_seconds, problems=problems)
        if self.visual is not None and "visual" in modalities:
            if info.video is None:
                missing["visual"] = "no video stream"
            else:
                side = self.faces.max_side
                frames = VideoReader(path, fps=self.visual.frame_rate, max_side=side)
        return _Sources(path, info.duration, audio, frames, missing, problems)

    def _array_sources(
        self,
        waveform: FloatArray | None,
        frames: Sequence[NDArray[np.uint8]] | None,
        fps: float,
        name: str,
    ) -> _Sources:
        durations = [len(waveform) / SAMPLE_RATE] if waveform is not None else []
        still = waveform is None and frames is not None and len(frames) == 1
        durations += [len(frames) / fps] if frames is not None and not still else []
        if not durations and not still:
            raise MediaError(f"{name}: neither a waveform nor frames were given")
        duration = max(durations) if durations else None
        self._check_duration(name, duration)
        audio = video = None
        if self.audio is not None and waveform is not None:
            step = int(self.audio.chunk_seconds * SAMPLE_RATE)
            audio = iter([waveform[i : i + step] for i in range(0, len(waveform), step)])
        if self.visual is not None and frames is not None:
            video = frames_from_arrays(frames, fps, self.visual.frame_rate)
        return _Sources(Path(name), duration, audio, video, {}, [])

    @staticmethod
    def _check_duration(name: str, duration: float | None) -> None:
        if duration is not None and duration < MIN_DURATION:
            raise MediaError(
                f"{name}: too short ({duration:.2f} s; at least {MIN_DURATION} s is needed)"
            )

    def extract(
        self, path: str | Path, modalities: tuple[str, ...] = ("audio", "visual")
    ) -> FileFeatures:
        """Features of a whole media file (only the modalities named in ``modalities``)."""
        return self._whole(self._file_sources(path, modalities))

    def extract_arrays(
        self,
        waveform: FloatArray | None = None,
        frames: Sequence[NDArray[np.uint8]] | None = None,
        fps: float = 25.0,
        name: str = "<arrays>",
    ) -> FileFeatures:
        """Features of a 16 kHz mono waveform and/or RGB frames at ``fps`` held in memory."""
        return self._whole(self._array_sources(waveform, frames, fps, name))

    def _streams(self, sources: _Sources) -> tuple[_AudioStream | None, _VisualStream | None]:
        audio = None
        if sources.audio is not None and self.audio is not None:
            audio = _AudioStream(self.audio, sources.audio)
        visual = _VisualStream(self, sources.frames) if sources.frames is not None else None
        return audio, visual

    def _whole(self, sources: _Sources) -> FileFeatures:
        audio, visual = self._streams(sources)
        for stream in (audio, visual):
            if stream is not None:
                stream.advance(math.inf)
        result = FileFeatures(sources.name, sources.duration, missing=dict(sources.missing))
        self._fill(result, audio, visual, 0.0, math.inf, whole=True)
        result.notes = sources.problems + result.notes
        return result

    def _fill(
        self,
        result: FileFeatures,
        audio: _AudioStream | None,
        visual: _VisualStream | None,
        start: float,
        end: float,
        whole: bool,
        track_frames: range | None = None,
    ) -> None:
        """Put the features of [start, end) into ``result``; ``whole`` judges the whole file
        (its notes and reasons), otherwise a window of it."""
        if audio is not None:
            result.audio_seconds = audio.samples / SAMPLE_RATE if whole else 0.0
            result.seconds["audio"] = audio.seconds
            taken = audio.take(start, end)
            if whole and audio.samples < MIN_DURATION * SAMPLE_RATE:
                result.missing["audio"] = f"audio too short ({audio.samples / SAMPLE_RATE:.2f} s)"
            elif whole and is_silent(audio.square_sum / max(audio.samples, 1)):
                result.missing["audio"] = "silent audio track"
            elif taken is None or is_silent(taken[1]):
                result.missing["audio"] = "silence"
            else:
                result.audio = taken[0]
        if visual is not None:
            result.seconds["visual"] = visual.seconds
            if whole:
                result.notes += visual.problems
            frames = visual.frames_in(start, end)
            result.frames_sampled = len(frames) if not whole else visual.sampled
            ranking, result.faces = visual.summaries(track_frames or (None if whole else frames))
            if not visual.sampled:
                result.missing["visual"] = "no decodable video frame"
                return
            if not ranking:
                result.missing["visual"] = (
                    f"no face found in {result.frames_sampled} sampled frames"
                )
                return
            result.face_used = min(self.face, len(ranking) - 1)
            track = ranking[result.face_used]
            result.visual = visual.take(start, end, track)
            if result.visual is None:
                result.missing["visual"] = "no face in this window"
                return
            result.frames_with_face = int(result.visual.valid.sum())
            result.preview = visual.preview(track, self.preview_crops)

    def windows(
        self,
        path: str | Path,
        window: float,
        hop: float,
        block: float = 30.0,
        cover: bool = False,
    ) -> Iterator[FileFeatures]:
        """The features of every ``window``-second window, one every ``hop`` seconds, from one
        front-to-back pass over the file. The face is chosen per ``block`` seconds (the most
        prominent there); silence and a missing face are judged per window. A file shorter
        than a window gives one window, the whole file; with ``cover`` a last, shorter window
        takes what follows the last whole one."""
        sources = self._file_sources(path, ("audio", "visual"))
        audio, visual = self._streams(sources)
        streams: list[_AudioStream | _VisualStream] = [s for s in (audio, visual) if s is not None]
        if not streams:
            yield self._whole(sources)
            return
        emitted = 0
        start = 0.0
        while True:
            stop = start + window
            block_end = (math.floor(start / block) + 1) * block
            for stream in streams:
                stream.advance(max(stop, block_end if stream is visual else stop))
            end_of_media = max(self._end(stream) for stream in streams)
            if all(s.done for s in streams) and stop > end_of_media + 1e-6:
                if emitted == 0:  # shorter than one window: the whole file
                    yield self._window(sources, audio, visual, 0.0, end_of_media, block)
                elif cover and end_of_media - start > MIN_DURATION:
                    yield self._window(sources, audio, visual, start, end_of_media, block)
                return
            yield self._window(sources, audio, visual, start, stop, block)
            emitted += 1
            start = emitted * hop
            for stream in streams:
                stream.drop_before(min(start, math.floor(start / block) * block))

    def _end(self, stream: _AudioStream | _VisualStream) -> float:
        """Where the media a stream has read so far ends, seconds."""
        if isinstance(stream, _AudioStream):
            return stream.samples / SAMPLE_RATE
        assert self.visual is not None
        return stream.last_time + 1.0 / self.visual.frame_rate

    def _window(
        self,
        sources: _Sources,
        audio: _AudioStream | None,
        visual: _VisualStream | None,
        start: float,
        stop: float,
        block: float,
    ) -> FileFeatures:
        result = FileFeatures(sources.name, stop - start, missing=dict(sources.missing))
        result.start = start
        block_frames = None
        if visual is not None:
            block_start = math.floor(start / block) * block
            block_frames = visual.frames_in(block_start, block_start + block)
        self._fill(result, audio, visual, start, stop, whole=False, track_frames=block_frames)
        result.notes = sources.problems + (visual.problems if visual is not None else [])
        return result
