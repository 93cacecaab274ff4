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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vavl.config import FaceSettings
from vavl.errors import MediaError
from vavl.faces import FaceDetector
from vavl.features.base import AudioExtractor, FloatArray, VisualExtractor
from vavl.features.records import FileFeatures
from vavl.features.streams import AudioStream, VisualStream, is_silent
from vavl.media import SAMPLE_RATE, VideoFrame, VideoReader, frames_from_arrays, iter_audio, probe

MIN_DURATION = 0.2  # seconds; shorter clips carry no usable expression


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

    def _streams(self, sources: _Sources) -> tuple[AudioStream | None, VisualStream | None]:
        audio = None
        if sources.audio is not None and self.audio is not None:
            audio = AudioStream(self.audio, sources.audio)
        visual = VisualStream(self, sources.frames) if sources.frames is not None else None
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
        audio: AudioStream | None,
        visual: VisualStream | None,
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
            result.face_used, result.face_asked = min(self.face, len(ranking) - 1), self.face
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
        streams: list[AudioStream | VisualStream] = [s for s in (audio, visual) if s is not None]
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

    def _end(self, stream: AudioStream | VisualStream) -> float:
        """Where the media a stream has read so far ends, seconds."""
        if isinstance(stream, AudioStream):
            return stream.samples / SAMPLE_RATE
        assert self.visual is not None
        return stream.last_time + 1.0 / self.visual.frame_rate

    def _window(
        self,
        sources: _Sources,
        audio: AudioStream | None,
        visual: VisualStream | None,
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
