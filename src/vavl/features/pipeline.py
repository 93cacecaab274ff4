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
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from vavl.config import FaceSettings
from vavl.errors import ConfigError, MediaError
from vavl.faces import FaceDetector
from vavl.features.base import AudioExtractor, FloatArray, VisualExtractor, feature_key
from vavl.features.records import FileFeatures, ModalityFeatures
from vavl.features.streams import AudioStream, VisualStream, is_silent, speech_heard
from vavl.features.visual import FaceMeshExtractor
from vavl.media import (
    NON_FINITE,
    SAMPLE_RATE,
    VideoFrame,
    VideoReader,
    frames_from_arrays,
    iter_audio,
    probe,
)
from vavl.spans import WHOLE, Span
from vavl.speakers import HeardAudio, SpeakerFinder, seconds_of_speech, seconds_speaking

MIN_DURATION = 0.2  # seconds; shorter clips carry no usable expression
SPEAKER: Final = "speaker"  # face choices that look for who speaks
EVERYONE: Final = "all"
FaceChoice = int | Literal["speaker", "all", "largest"]
WINDOW_GROUP = 16  # windows cut (and their audio encoded) together


@dataclass
class Sources:
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
    most prominent, 1 the next, and so on (``FileFeatures.faces`` lists them). ``"speaker"``
    uses the face that speaks most (``speakers`` finds who speaks, second by second: the
    ``turns``) and ``"all"`` also keeps every tracked face's features (``people``).
    """

    def __init__(
        self,
        audio: AudioExtractor | None,
        visual: VisualExtractor | None,
        faces: FaceSettings | None = None,
        preview_crops: int = 0,
        face: FaceChoice = 0,
        speakers: SpeakerFinder | None = None,
    ) -> None:
        self.audio = audio
        self.visual = visual
        self.faces = faces or FaceSettings()
        self.preview_crops = preview_crops
        self.face: int | str = 0 if face == "largest" else face
        if isinstance(self.face, str) and self.face not in (SPEAKER, EVERYONE):
            raise ConfigError(f"face: {face!r} is not 'speaker', 'all', 'largest' or a number")
        self._detectors: dict[str, FaceDetector] = {}
        self.speakers, self.speaker_note = self._speaker_finder(speakers)
        self.lip_reader = FaceMeshExtractor() if self.speakers is not None else None

    def _speaker_finder(
        self, speakers: SpeakerFinder | None
    ) -> tuple[SpeakerFinder | None, str | None]:
        """The finder of who speaks, when this pipeline can use it; else why not, in words."""
        if speakers is None or self.face not in (SPEAKER, EVERYONE):
            return None, None
        if self.audio is None or self.visual is None:
            return None, None  # nobody to see, or nothing to hear: one face is all there is
        if feature_key(self.audio) != speakers.model.audio_key:
            return None, (
                f"who speaks is not looked for: the lip-sync model reads other audio features "
                f"than this model's '{self.audio.id}'; the most prominent face is used"
            )
        return speakers, None

    def store_keys(self) -> dict[str, str]:
        """The store keys of the features this pipeline makes. A visual key covers how faces
        are found and cropped, and which face is used when it is not the most prominent (its
        features are another face's). A store keeps one face per file: looking for who speaks,
        it holds the most prominent's (what ``vavl extract`` writes)."""
        keys = {}
        if self.audio is not None:
            keys["audio"] = feature_key(self.audio)
        if self.visual is not None:
            ranked = isinstance(self.face, int) and self.face > 0
            faces = self.faces.model_dump() | ({"face": self.face} if ranked else {})
            keys["visual"] = feature_key(self.visual, faces)
        return keys

    def detector(self, name: str) -> FaceDetector:
        if name not in self._detectors:
            self._detectors[name] = FaceDetector(name, min_score=self.faces.min_score)  # type: ignore[arg-type]
        return self._detectors[name]

    def _file_sources(
        self, path: str | Path, modalities: Sequence[str], span: Span = WHOLE
    ) -> Sources:
        path = Path(path)
        info = probe(path)
        if info.audio is None and info.video is None:
            raise MediaError(f"{path}: has neither an audio nor a video stream")
        duration = span.check(path, info.duration)
        self._check_duration(str(path), duration)
        missing: dict[str, str] = {}
        problems: list[str] = []  # filled as the audio is read
        audio = frames = None
        if self.audio is not None and "audio" in modalities:
            if info.audio is None:
                missing["audio"] = "a still image has no sound" if info.still else "no audio stream"
            else:
                chunk = self.audio.chunk_seconds
                audio = iter_audio(path, chunk, start=span.start, end=span.end, problems=problems)
        if self.visual is not None and "visual" in modalities:
            if info.video is None:
                missing["visual"] = "no video stream"
            else:
                side = self.faces.max_side
                rate = self.visual.frame_rate
                frames = VideoReader(path, rate, side, start=span.start, end=span.end)
        return Sources(path, duration, audio, frames, missing, problems)

    def _array_sources(
        self,
        waveform: FloatArray | None,
        frames: Sequence[NDArray[np.uint8]] | None,
        fps: float,
        name: str,
    ) -> Sources:
        if waveform is not None and not np.isfinite(waveform).all():
            raise MediaError(f"{name}: {NON_FINITE}")
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
        return Sources(Path(name), duration, audio, video, {}, [])

    @staticmethod
    def _check_duration(name: str, duration: float | None) -> None:
        if duration is not None and duration < MIN_DURATION:
            raise MediaError(
                f"{name}: too short ({duration:.2f} s; at least {MIN_DURATION} s is needed)"
            )

    def extract(
        self,
        path: str | Path,
        modalities: tuple[str, ...] = ("audio", "visual"),
        span: Span = WHOLE,
    ) -> FileFeatures:
        """Features of a media file, or of a ``span`` of it read as its own file (only the
        modalities named in ``modalities``)."""
        return self._whole(self._file_sources(path, modalities, span))

    def extract_arrays(
        self,
        waveform: FloatArray | None = None,
        frames: Sequence[NDArray[np.uint8]] | None = None,
        fps: float = 25.0,
        name: str = "<arrays>",
    ) -> FileFeatures:
        """Features of a 16 kHz mono waveform and/or RGB frames at ``fps`` held in memory."""
        return self._whole(self._array_sources(waveform, frames, fps, name))

    def _streams(
        self, sources: Sources, windows: bool = False
    ) -> tuple[AudioStream | None, VisualStream | None]:
        audio = None
        if sources.audio is not None and self.audio is not None:
            audio = AudioStream(self.audio, sources.audio, encode_chunks=not windows)
        visual = VisualStream(self, sources.frames) if sources.frames is not None else None
        return audio, visual

    def _whole(self, sources: Sources) -> FileFeatures:
        audio, visual = self._streams(sources)
        for stream in (audio, visual):
            if stream is not None:
                stream.advance(math.inf)
        result = FileFeatures(sources.name, sources.duration, missing=dict(sources.missing))
        heard = audio.whole() if audio is not None else None
        if audio is not None:
            self._fill_audio(result, audio, heard, whole=True)
        if visual is not None:
            result.notes += visual.problems
            sound = heard[0] if heard is not None else None
            self._fill_visual(result, visual, 0.0, math.inf, whole=True, heard=sound)
        result.notes = sources.problems + result.notes
        return result

    @staticmethod
    def _fill_audio(
        result: FileFeatures,
        stream: AudioStream,
        taken: tuple[ModalityFeatures, float] | None,
        whole: bool,
    ) -> None:
        """Put the audio features ``taken`` (with their mean square) into ``result``; ``whole``
        judges the whole file (its reasons), otherwise a window of it."""
        if whole:
            result.audio_seconds = stream.samples / SAMPLE_RATE
        if whole and stream.samples < MIN_DURATION * SAMPLE_RATE:
            result.missing["audio"] = f"audio too short ({stream.samples / SAMPLE_RATE:.2f} s)"
        elif whole and is_silent(stream.square_sum / max(stream.samples, 1)):
            result.missing["audio"] = "silent audio track"
        elif taken is None or is_silent(taken[1]):
            result.missing["audio"] = "silence"
        else:
            result.audio = taken[0]

    def _fill_visual(
        self,
        result: FileFeatures,
        visual: VisualStream,
        start: float,
        end: float,
        whole: bool,
        heard: ModalityFeatures | None = None,
    ) -> None:
        """Put the features of the face used in [start, end) into ``result``; the face is the
        most prominent there (or the one asked for, or the one speaking most in ``heard``), as
        if the span were its own file."""
        frames = visual.frames_in(start, end)
        result.frames_sampled = len(frames) if not whole else visual.sampled
        ranking, result.faces = visual.summaries(None if whole else frames)
        if self.speaker_note and len(ranking) > 1:
            result.notes.append(self.speaker_note)
        if not visual.sampled:
            result.missing["visual"] = "no decodable video frame"
            return
        if not ranking:
            result.missing["visual"] = f"no face found in {result.frames_sampled} sampled frames"
            return
        if self.speakers is not None and heard is not None and len(heard.times):
            self._find_speakers(result, visual, ranking, heard, start, end)
            result.face_used = self._speaking_most(result, ranking)
        else:  # by rank: as asked, or the most prominent when who speaks cannot be looked for
            rank = self.face if isinstance(self.face, int) else 0
            result.face_used, result.face_asked = min(rank, len(ranking) - 1), rank
        track = ranking[result.face_used]
        result.visual = visual.take(start, end, track)
        if result.visual is None:
            result.missing["visual"] = "no face in this window"
            return
        result.frames_with_face = int(result.visual.valid.sum())
        result.preview = visual.preview(track, self.preview_crops)

    def _find_speakers(
        self,
        result: FileFeatures,
        visual: VisualStream,
        ranking: list[int],
        heard: ModalityFeatures,
        start: float,
        end: float,
    ) -> None:
        """Who speaks in each second of [start, end) (``result.turns``), and every tracked
        face's features there (``result.people``)."""
        assert self.speakers is not None and self.audio is not None
        result.people = {
            track: found
            for track in ranking
            for found in [visual.take(start, end, track)]
            if found is not None
        }
        assert heard.energy is not None  # the audio stream measures every frame's
        end = min(end, self._end(visual), float(heard.times[-1]) + 1.0 / self.audio.frame_rate)
        sound = HeardAudio(
            np.asarray(heard.features, np.float64),
            np.asarray(heard.times, np.float64),
            speech_heard(heard.energy),
        )
        lips = visual.lips_in(start, end, ranking)
        result.turns = self.speakers.turns(sound, visual.frame_times(start, end), lips, start, end)

    @staticmethod
    def _speaking_most(result: FileFeatures, ranking: list[int]) -> int:
        """The rank of the face seen speaking longest (the most prominent when nobody is seen
        speaking), with why in ``result.face_choice``."""
        seconds = [seconds_speaking(result.turns, track) for track in ranking]
        if max(seconds) == 0:
            result.face_choice = "the most prominent: no face was seen speaking"
            return 0
        rank = int(np.argmax(seconds))
        speech = seconds_of_speech(result.turns)
        result.face_choice = (
            f"the active speaker (seen speaking {seconds[rank]:.0f} of {speech:.0f} s of speech)"
        )
        return rank

    def windows(
        self,
        path: str | Path,
        window: float,
        hop: float,
        cover: bool = False,
        span: Span = WHOLE,
    ) -> Iterator[FileFeatures]:
        """The features of every ``window``-second window, one every ``hop`` seconds, from one
        front-to-back pass over the file, each as it would be if the window were its own file
        (its audio encoded alone, its face chosen in it). A file shorter than a window gives
        one window, the whole file; with ``cover`` a last, shorter window takes what follows
        the last whole one. A ``span`` of the file is read as if it were the file."""
        sources = self._file_sources(path, ("audio", "visual"), span)
        audio, visual = self._streams(sources, windows=True)
        streams: list[AudioStream | VisualStream] = [s for s in (audio, visual) if s is not None]
        if not streams:
            yield self._whole(sources)
            return
        spans: list[tuple[float, float]] = []
        emitted = 0
        while True:
            start = emitted * hop
            stop = start + window
            for stream in streams:
                stream.advance(stop)
            end_of_media = max(self._end(stream) for stream in streams)
            last = all(s.done for s in streams) and stop > end_of_media + 1e-6
            if not last:
                spans.append((start, stop))
            elif emitted == 0:  # shorter than one window: the whole file
                spans.append((0.0, end_of_media))
            elif cover and end_of_media - start > MIN_DURATION:
                spans.append((start, end_of_media))
            emitted += 1
            if spans and (last or len(spans) == WINDOW_GROUP):
                yield from self.cut(sources, audio, visual, spans)
                spans = []
                for stream in streams:
                    stream.drop_before(emitted * hop)
            if last:
                return

    def _end(self, stream: AudioStream | VisualStream) -> float:
        """Where the media a stream has read so far ends, seconds."""
        if isinstance(stream, AudioStream):
            return stream.samples / SAMPLE_RATE
        assert self.visual is not None
        return stream.last_time + 1.0 / self.visual.frame_rate

    def cut(
        self,
        sources: Sources,
        audio: AudioStream | None,
        visual: VisualStream | None,
        spans: Sequence[tuple[float, float]],
    ) -> list[FileFeatures]:
        """The features of each (start, stop) span of what the streams hold; the windows'
        audio is encoded in one batch."""
        encoded = audio.windows(spans) if audio is not None else [None] * len(spans)
        results = []
        for (start, stop), taken in zip(spans, encoded, strict=True):
            result = FileFeatures(sources.name, stop - start, missing=dict(sources.missing))
            result.start = start
            result.notes = sources.problems + (visual.problems if visual is not None else [])
            if audio is not None:
                self._fill_audio(result, audio, taken, whole=False)
            if visual is not None:
                sound = taken[0] if taken is not None else None
                self._fill_visual(result, visual, start, stop, whole=False, heard=sound)
            results.append(result)
        return results
