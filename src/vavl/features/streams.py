"""The two streams a media file is read as, front to back: audio chunks turned into feature
frames (each with its mean square, for the one silence rule), and sampled video frames whose
faces are detected, tracked and turned into features as they arrive. Both keep only what the
windows still ahead need."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vavl.config import FaceSettings
from vavl.faces import (
    Detection,
    FaceDetector,
    FaceTracker,
    aligned_crop,
    appearance,
    same_face,
    whole_image_crop,
)
from vavl.features.base import AudioExtractor, FloatArray, VisualExtractor, near_loudest
from vavl.features.records import FaceSummary, ModalityFeatures
from vavl.features.visual import FaceMeshExtractor
from vavl.media import SAMPLE_RATE, VideoFrame
from vavl.spans import TIME_TOLERANCE, inside
from vavl.speakers import LIP_DIM, LipTrack, lip_shapes

SILENCE_RMS = 1e-4  # about -80 dBFS
SPEECH_RANGE_DB = 30.0  # speech is this close to the loudest frame; pauses and rooms are not
CROP_BATCH = 64
FACES_PER_FRAME = 3  # the largest faces of a video frame whose features are kept
PHOTO_FACES = 8  # a photo is one frame: more of its faces are kept
# A face that fills a tightly cropped still is too big for the detector's anchors: look again
# with the image centred on a canvas this many times its side (found 100% of 200 FER2013 faces).
STILL_PADDINGS = (1.5, 2.0)


def is_silent(mean_square: float) -> bool:
    """The one silence rule: root mean square below ``SILENCE_RMS`` (about -80 dBFS)."""
    return math.sqrt(max(mean_square, 0.0)) < SILENCE_RMS


def speech_heard(energy: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which audio frames are loud enough to hold speech: not silent, and within
    :data:`SPEECH_RANGE_DB` of the loudest frame of what is heard."""
    return near_loudest(energy, SPEECH_RANGE_DB) & (energy >= SILENCE_RMS**2)


class FaceSource(Protocol):
    """What the visual stream needs of its pipeline: how faces are found and what is made of
    them."""

    faces: FaceSettings
    preview_crops: int
    visual: VisualExtractor | None
    lip_reader: FaceMeshExtractor | None  # lips for who speaks (None: not looked for)

    def detector(self, name: str) -> FaceDetector: ...


def frame_energy(waveform: FloatArray, frames: int, frame_rate: float) -> NDArray[np.float64]:
    """The mean square of the samples of each of ``frames`` feature frames (zero-padded)."""
    width = max(1, round(SAMPLE_RATE / frame_rate))
    padded = np.zeros(frames * width, np.float64)
    padded[: min(len(waveform), len(padded))] = waveform[: len(padded)]
    return np.square(padded).reshape(frames, width).mean(axis=1)


class AudioStream:
    """Audio read chunk by chunk, front to back, with the running sums of the one silence rule.

    A whole file's chunks are encoded as they arrive (``encode_chunks``), as the store keeps
    them. For windows the samples are kept instead and each window is encoded on its own
    (:meth:`window`), exactly as if it were its own file: an encoder's frame depends on the
    audio around it (Whisper attends over its whole input), so a window sliced out of a longer
    encoding is not what the model learnt from, and would change with where the window sits.
    """

    def __init__(
        self, extractor: AudioExtractor, chunks: Iterator[FloatArray], encode_chunks: bool = True
    ) -> None:
        self.extractor, self.chunks = extractor, chunks
        self.encode_chunks = encode_chunks
        self.features: list[FloatArray] = []  # encoded chunks (whole files)
        self.energy: list[NDArray[np.float64]] = []
        self.buffer: list[FloatArray] = []  # samples from ``first_sample`` on (windows)
        self.first_sample = 0
        self.samples = 0
        self.square_sum = 0.0
        self.done = False

    def advance(self, until: float) -> None:
        while not self.done and self.samples / SAMPLE_RATE < until:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.done = True
                break
            self.push(chunk)

    def push(self, chunk: FloatArray) -> None:
        """Add samples (read from the file, or arrived from a microphone)."""
        self.samples += len(chunk)
        self.square_sum += float(np.square(chunk, dtype=np.float64).sum())
        if not self.encode_chunks:
            self.buffer.append(chunk)
            return
        features = self.extractor.extract(chunk)
        self.features.append(features.astype(np.float32))
        self.energy.append(frame_energy(chunk, len(features), self.extractor.frame_rate))

    def skip(self, count: int) -> None:
        """Move on ``count`` samples that will never be read: all that is held is dropped."""
        self.samples += count
        self.buffer, self.first_sample = [], self.samples

    def whole(self) -> tuple[ModalityFeatures, float] | None:
        """The encoded chunks as one file's frames, and their mean square (None: no frame)."""
        if not self.features:
            return None
        features, energy = np.concatenate(self.features), np.concatenate(self.energy)
        if not len(features):
            return None
        times = (np.arange(len(features)) / self.extractor.frame_rate).astype(np.float32)
        frames = ModalityFeatures(features, times, self.extractor.speech_frames(energy), energy)
        return frames, float(energy.mean())

    def _held(self) -> FloatArray:
        """The samples kept, joined once into one array."""
        if len(self.buffer) != 1:
            self.buffer = [np.concatenate(self.buffer) if self.buffer else np.zeros(0, np.float32)]
        return self.buffer[0]

    def waveform(self, start: float, end: float) -> FloatArray:
        """A copy of the samples kept in [start, end) seconds."""
        first = max(0, round(start * SAMPLE_RATE) - self.first_sample)
        last = max(first, round(end * SAMPLE_RATE) - self.first_sample)
        return self._held()[first:last].copy()

    def windows(
        self, spans: Sequence[tuple[float, float]]
    ) -> list[tuple[ModalityFeatures, float] | None]:
        """Each span's samples encoded on their own (as one file), batched; times are seconds
        in the stream; with each the mean square of its samples (None: no sample)."""
        waveforms = [self.waveform(start, end) for start, end in spans]
        encoded = self.extractor.encode([w for w in waveforms if len(w)])
        results: list[tuple[ModalityFeatures, float] | None] = []
        for (start, _), waveform in zip(spans, waveforms, strict=True):
            if not len(waveform):
                results.append(None)
                continue
            features = encoded.pop(0)
            energy = frame_energy(waveform, len(features), self.extractor.frame_rate)
            times = (start + np.arange(len(features)) / self.extractor.frame_rate).astype(
                np.float32
            )
            speech = self.extractor.speech_frames(energy)
            frames = ModalityFeatures(features, times, speech, energy)
            results.append((frames, float(np.square(waveform, dtype=np.float64).mean())))
        return results

    def drop_before(self, time_: float) -> None:
        held = self._held()
        drop = min(len(held), max(0, round(time_ * SAMPLE_RATE) - self.first_sample))
        self.buffer = [held[drop:].copy()] if drop else [held]
        self.first_sample += drop


def _covers_several(box: Detection, detections: list[Detection]) -> bool:
    """Whether two or more of ``detections`` have their centre inside ``box``."""
    left, top, right, bottom = box.box
    inside = [
        d for d in detections if left <= d.center[0] <= right and top <= d.center[1] <= bottom
    ]
    return len(inside) >= 2


def _most_prominent(found: list[Detection], count: int = FACES_PER_FRAME) -> list[Detection]:
    """The ``count`` detections with the largest area x confidence."""
    return sorted(found, key=lambda d: -d.area * d.score)[: max(count, 0)]


class VisualStream:
    """Faces of the sampled frames as they arrive: tracks, and each track's features per frame."""

    def __init__(self, pipeline: FaceSource, frames: Iterable[VideoFrame]) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.faces
        self.source = frames
        self.frames = iter(frames)
        self.tracker = FaceTracker()
        self.times: dict[int, float] = {}  # sampled frame index -> time (rolling)
        self.features: dict[int, dict[int, FloatArray]] = {}  # track -> frame -> features
        self.lips: dict[int, dict[int, FloatArray]] = {}  # track -> frame -> lip shape, if seen
        self.crops: dict[int, list[tuple[int, NDArray[np.uint8]]]] = {}  # track -> a few crops
        self.areas: dict[int, tuple[float, int]] = {}  # track -> (sum of areas, detections)
        self.centres: dict[int, NDArray[np.float64]] = {}  # track -> sum of (x, y) shares
        self.pending: list[tuple[int, int, NDArray[np.uint8]]] = []  # (track, frame, crop)
        self.sampled = 0
        self.last_time = -math.inf
        self.first_image: NDArray[np.uint8] | None = None  # kept until a second frame comes
        self.full_range_searched = False  # whether the last frame went through the full range
        self.done = False

    @property
    def problems(self) -> list[str]:
        return list(getattr(self.source, "problems", []))

    def _detect(self, image: NDArray[np.uint8]) -> list[Detection]:
        detector = self.settings.detector
        found = self.pipeline.detector("full" if detector == "full" else "short").detect(image)
        self.full_range_searched = detector == "full"
        if not found and detector == "auto":  # nothing close to the camera: small, far faces
            found = self.pipeline.detector("full").detect(image)
            self.full_range_searched = True
        return found

    def _add(self, frame: VideoFrame) -> None:
        index = frame.index
        self.times[index] = frame.time
        self.sampled += 1
        self.last_time = frame.time
        self.first_image = frame.image if self.sampled == 1 else None
        if self.settings.detector == "none":
            crop = whole_image_crop(frame.image, self.settings.crop_size)
            self._keep(0, index, crop, 1.0, (0.5, 0.5))
            return
        self._keep_faces(frame.image, index, _most_prominent(self._detect(frame.image)))

    def _keep(
        self,
        track: int,
        index: int,
        crop: NDArray[np.uint8],
        area: float,
        centre: tuple[float, float],
    ) -> None:
        self.pending.append((track, index, crop))
        total, count = self.areas.get(track, (0.0, 0))
        self.areas[track] = (total + area, count + 1)
        self.centres[track] = self.centres.get(track, np.zeros(2)) + centre
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
        if self.pipeline.lip_reader is not None:
            self._read_lips()
        self.pending.clear()

    def _read_lips(self) -> None:
        """The lip shapes of the pending crops where FaceMesh finds a face."""
        assert self.pipeline.lip_reader is not None
        meshes, seen = self.pipeline.lip_reader.landmarks(np.stack([c for *_, c in self.pending]))
        shapes = lip_shapes(meshes)
        for (track, index, _), shape, found in zip(self.pending, shapes, seen, strict=True):
            if found:
                self.lips.setdefault(track, {})[index] = shape

    def push(self, frame: VideoFrame) -> None:
        """Add a frame that arrived (from a live camera): its faces are detected and tracked
        and their features extracted now, once, for every window that will hold it."""
        self._add(frame)
        self._flush()

    def advance(self, until: float) -> None:
        while not self.done and self.last_time < until:
            frame = next(self.frames, None)
            if frame is None:
                self.done = True
                self._finish_still()
                break
            self._add(frame)
        self._flush()

    def _finish_still(self) -> None:
        """A one-frame video (a photo): with the automatic detector, the faces too small for the
        short-range model (a group photo) are added from the full-range one; a photo without
        any face found is searched again on padded canvases."""
        image = self.first_image
        if self.sampled != 1 or image is None or self.settings.detector == "none":
            return
        if self.tracker.tracks:
            if self.settings.detector == "auto" and not self.full_range_searched:
                self._add_far_faces(image)
            return
        name = "full" if self.settings.detector == "full" else "short"
        for padding in STILL_PADDINGS:
            found = self.pipeline.detector(name).detect(image, padding)
            if found:
                self._keep_faces(image, 0, found[:1])
                return

    def _add_far_faces(self, image: NDArray[np.uint8]) -> None:
        """A group photo: the full-range model's faces join the close-range ones (up to
        :data:`PHOTO_FACES`); a close-range box over two or more of them (two heads side by
        side, taken for one) gives way to them."""
        far = self.pipeline.detector("full").detect(image)
        for index, track in enumerate(self.tracker.tracks):
            if track.members and _covers_several(track.last, far):
                self._forget(index)
        known = [track.last for track in self.tracker.tracks if track.members]
        new = [
            detection
            for detection in far
            if not any(same_face(face, detection, self.tracker.min_iou) for face in known)
        ]
        self._keep_faces(image, 0, _most_prominent(new, PHOTO_FACES - len(known)))

    def _forget(self, track: int) -> None:
        """Drop a track and everything kept of it (it was no face)."""
        self._flush()
        self.tracker.tracks[track].members = {}
        self.tracker.tracks[track].last_frame = -(2**31)  # never linked to again
        for kept in (self.features, self.crops, self.areas, self.lips, self.centres):
            kept.pop(track, None)

    def _keep_faces(self, image: NDArray[np.uint8], index: int, found: list[Detection]) -> None:
        """Track a frame's detections and keep each one's aligned crop."""
        height, width = image.shape[:2]
        size, margin = self.settings.crop_size, self.settings.margin
        crops = [aligned_crop(image, detection, size, margin) for detection in found]
        looks = [appearance(crop) for crop in crops]
        for track, number in self.tracker.update(index, found, looks):
            detection = found[number]
            centre = (float(detection.center[0]) / width, float(detection.center[1]) / height)
            self._keep(track, index, crops[number], detection.area / (height * width), centre)

    def summaries(self, frames: range | None = None) -> tuple[list[int], list[FaceSummary]]:
        """Track ids from the most prominent down (over ``frames``), and their summaries; tracks
        shorter than the minimum are not faces (a still needs one frame)."""
        if self.settings.detector == "none":
            count = sum(1 for i in self.times if frames is None or i in frames) or self.sampled
            return [0], [FaceSummary(0, count, 1.0, 0, (0.5, 0.5))]
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
                t,
                self._centre(t),
                round(self.tracker.tracks[t].weight(frames), 3),
            )
            for rank, t in enumerate(ranking)
        ]
        return ranking, summaries

    def _centre(self, track: int) -> tuple[float, float]:
        x, y = self.centres[track] / max(self.areas[track][1], 1)
        return round(float(x), 4), round(float(y), 4)

    def take(self, start: float, end: float, track: int | None) -> ModalityFeatures | None:
        """The sampled frames in [start, end), with ``track``'s features where it was found."""
        indices = sorted(i for i, t in self.times.items() if inside(t, start, end))
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
        indices = [i for i, t in self.times.items() if inside(t, start, end)]
        return range(min(indices), max(indices) + 1) if indices else range(0)

    def frame_times(self, start: float, end: float) -> NDArray[np.float64]:
        """The times of the frames sampled in [start, end), in order."""
        return np.array(sorted(t for t in self.times.values() if inside(t, start, end)))

    def lips_in(self, start: float, end: float, tracks: Iterable[int]) -> dict[int, LipTrack]:
        """Each track's lips where they were seen in [start, end)."""
        found = {}
        for track in tracks:
            seen = sorted(
                (self.times[i], shape)
                for i, shape in self.lips.get(track, {}).items()
                if i in self.times and inside(self.times[i], start, end)
            )
            times = np.array([t for t, _ in seen], np.float64)
            shapes = np.array([shape for _, shape in seen], np.float64).reshape(len(seen), LIP_DIM)
            found[track] = LipTrack(times, shapes)
        return found

    def preview(self, track: int, count: int) -> list[NDArray[np.uint8]]:
        kept = self.crops.get(track, [])
        spread = np.linspace(0, len(kept) - 1, min(count, len(kept))).astype(int)
        return [kept[i][1] for i in spread]

    def drop_before(self, time_: float) -> None:
        old = [i for i, t in self.times.items() if t < time_ - TIME_TOLERANCE]
        for index in old:
            del self.times[index]
            for per_frame in [*self.features.values(), *self.lips.values()]:
                per_frame.pop(index, None)
        if old:  # tracks keep their recent detections (and their last, to link to)
            cutoff = max(old) + 1
            for track in self.tracker.tracks:
                track.members = {
                    f: d for f, d in track.members.items() if f >= cutoff or f == track.last_frame
                }
