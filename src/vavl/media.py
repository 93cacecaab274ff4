"""Decoding media: probing, audio at 16 kHz mono, RGB video frames (files are opened by
``containers.py``, which turns what cannot be read into one line).

Audio and video are decoded with PyAV (FFmpeg), streamed so that memory stays bounded on long
files. Still images (JPEG, PNG, WebP, BMP; recognised by their first bytes, whatever their name)
are read with Pillow, turned upright by their EXIF orientation, and are one-frame videos without
sound. A file without an audio stream or without a video stream is not an error: that modality
is just missing. A file that cannot be read raises :class:`MediaError` with one line naming the
file and the problem.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray
from PIL import ImageOps

from vavl.containers import check_readable, declared_audio_seconds, open_container, seconds_of
from vavl.errors import MediaError
from vavl.images import IMAGE_SUFFIXES, image_format, opened_image, read_image, scaled_size

SAMPLE_RATE = 16_000
# A decoded stream shorter than this share of what its header declares is reported truncated.
TRUNCATION_TOLERANCE = 0.9


@dataclass(frozen=True)
class AudioStreamInfo:
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds


@dataclass(frozen=True)
class VideoStreamInfo:
    codec: str
    width: int
    height: int
    fps: float | None  # average frames per second
    declared_frames: int | None  # from the container header, when it says
    duration: float | None  # seconds


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    duration: float | None  # seconds (None for a still image)
    audio: AudioStreamInfo | None
    video: VideoStreamInfo | None
    still: bool = False  # a photo: one frame, no sound


AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma"}
VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp",
}  # fmt: skip
MEDIA_SUFFIXES = AUDIO_SUFFIXES | VIDEO_SUFFIXES | IMAGE_SUFFIXES
NON_FINITE = "the audio has NaN or infinite samples (no sound is; the file is damaged)"


@dataclass
class VideoFrame:
    index: int  # position among the decoded frames
    time: float  # presentation time, seconds
    image: NDArray[np.uint8]  # (height, width, 3) RGB, upright


def _probe_image(path: Path, format_name: str) -> MediaInfo:
    with opened_image(path, str(path)) as image:
        width, height = ImageOps.exif_transpose(image).size
    video = VideoStreamInfo(format_name.lower(), width, height, None, 1, None)
    return MediaInfo(path=path, duration=None, audio=None, video=video, still=True)


def probe(path: str | Path) -> MediaInfo:
    """Streams, codecs and durations of a media file (or a still image), without decoding it."""
    path = Path(path)
    check_readable(path)
    format_name = image_format(path)
    if format_name is not None:
        return _probe_image(path, format_name)
    with open_container(path) as container:  # what the content is, whatever the name says
        audio = video = None
        if container.streams.audio:
            stream = container.streams.audio[0]
            audio = AudioStreamInfo(
                codec=stream.codec_context.name,
                sample_rate=int(stream.rate or 0),
                channels=int(stream.codec_context.channels or 0),
                duration=seconds_of(stream.duration, stream.time_base),
            )
        if container.streams.video:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            video = VideoStreamInfo(
                codec=stream.codec_context.name,
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(rate) if rate else None,
                declared_frames=int(stream.frames) or None,
                duration=seconds_of(stream.duration, stream.time_base),
            )
        durations = [s.duration for s in (audio, video) if s is not None and s.duration]
        duration = max(durations) if durations else None
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        return MediaInfo(path=path, duration=duration, audio=audio, video=video)


def _seek(container: Any, stream: Any, start: float) -> None:
    """Move to the last keyframe at or before ``start`` seconds (decoding goes on from there)."""
    if start > 0 and stream.time_base:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)


def _decoded(container: Any, stream: Any, damaged: list[int]) -> Iterator[Any]:
    """The frames of one stream, decoded lazily packet by packet (memory independent of the
    length). A packet that does not decode (corrupt bytes) is skipped and counted in
    ``damaged[0]``: the rest of the file is still worth using."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            damaged[0] += 1


def _resampled(
    container: Any, stream: Any, sample_rate: int, start: float, damaged: list[int]
) -> Iterator[NDArray[np.float32]]:
    """Mono float32 samples from ``start`` seconds on, in the decoder's block sizes."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    skip: int | None = None if start > 0 else 0
    # None at the end flushes the resampler.
    for frame in itertools.chain(_decoded(container, stream, damaged), [None]):
        if skip is None and frame is not None:
            # Decoding restarts at a keyframe before ``start``: drop what precedes it.
            first = frame.time if frame.time is not None else start
            skip = max(0, round((start - first) * sample_rate))
        for converted in resampler.resample(frame):
            samples = converted.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if skip:
                dropped = min(skip, len(samples))
                samples, skip = samples[dropped:], skip - dropped
            if len(samples):
                yield samples


def iter_audio(
    path: str | Path,
    chunk_seconds: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    start: float = 0.0,
    end: float | None = None,
    problems: list[str] | None = None,
) -> Iterator[NDArray[np.float32]]:
    """The first audio stream as mono float32 chunks at ``sample_rate`` (the last may be shorter).

    ``start`` and ``end`` (seconds) read a segment only. Memory stays bounded by the chunk size
    whatever the length of the file. Yields nothing when the file has no audio stream. Damaged
    packets are skipped; with a ``problems`` list, what went wrong is added to it and a stream
    that stops decoding ends there (otherwise that raises :class:`MediaError`).
    """
    path = Path(path)
    chunk = int(chunk_seconds * sample_rate)
    limit = None if end is None else max(0, round((end - start) * sample_rate))
    check_readable(path)
    if image_format(path) is not None:
        return
    with open_container(path) as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        _seek(container, stream, start)
        pending: list[NDArray[np.float32]] = []
        pending_samples = emitted = 0
        damaged = [0]
        try:
            for samples in _resampled(container, stream, sample_rate, start, damaged):
                if not np.isfinite(samples).all():
                    raise MediaError(f"{path}: {NON_FINITE}")
                if limit is not None:
                    samples = samples[: max(0, limit - emitted - pending_samples)]
                pending.append(samples)
                pending_samples += len(samples)
                while pending_samples >= chunk:
                    joined = np.concatenate(pending)
                    yield joined[:chunk]
                    emitted += chunk
                    pending, pending_samples = [joined[chunk:]], len(joined) - chunk
                if limit is not None and emitted + pending_samples >= limit:
                    break
        except av.error.FFmpegError as error:
            if problems is None:
                raise MediaError(f"{path}: audio stream cannot be decoded: {error}") from None
            seconds = (emitted + pending_samples) / sample_rate
            problems.append(f"audio decoding stopped after {seconds:.1f} s: {error}")
        if problems is not None:
            if damaged[0]:
                problems.append(f"{damaged[0]} damaged audio packets skipped")
            decoded = (emitted + pending_samples) / sample_rate
            whole = start == 0 and end is None  # a segment is not compared with the header
            declared = declared_audio_seconds(path, container, stream) if whole else None
            if declared and decoded < TRUNCATION_TOLERANCE * declared:
                problems.append(
                    f"truncated: the header declares {declared:.1f} s of audio but only "
                    f"{decoded:.1f} s decode"
                )
        if pending_samples:
            yield np.concatenate(pending)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> NDArray[np.float32] | None:
    """The whole first audio stream as mono float32 at ``sample_rate``; None without audio."""
    chunks = list(iter_audio(path, sample_rate=sample_rate))
    if not chunks:
        return None if not probe(path).audio else np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks)


def _upright(image: NDArray[np.uint8], rotation: int) -> NDArray[np.uint8]:
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


class FrameSampler:
    """Keeps the first frame at or after each tick of a 1/fps grid (None: keeps every frame).

    Works on true timestamps, so variable frame rates are sampled evenly in time.
    """

    def __init__(self, fps: float | None) -> None:
        self.step = None if fps is None else 1.0 / fps
        self.next_time = -math.inf

    def keep(self, time: float) -> bool:
        if self.step is None:
            return True
        if time < self.next_time - 1e-6:
            return False
        first = self.next_time == -math.inf
        self.next_time = time + self.step if first else self.next_time + self.step
        while self.next_time <= time:
            self.next_time += self.step
        return True


def frames_from_arrays(
    images: Sequence[NDArray[np.uint8]], fps: float, sample_fps: float | None = None
) -> Iterator[VideoFrame]:
    """In-memory RGB frames at ``fps`` as :class:`VideoFrame` s, sampled like a video file."""
    sampler = FrameSampler(sample_fps)
    kept = 0
    for index, image in enumerate(images):
        time = index / fps
        if sampler.keep(time):
            yield VideoFrame(kept, time, np.ascontiguousarray(image, dtype=np.uint8))
            kept += 1


@dataclass
class VideoReader:
    """Iterates over the frames of the first video stream, as upright RGB arrays.

    ``fps`` keeps at most that many frames per second, chosen by their true timestamps (variable
    frame rates are handled); ``max_side`` downscales large frames while decoding. After the
    iteration, ``decoded_frames`` counts the frames decoded and ``problems`` lists what went wrong
    on the way (e.g. a truncated file), since a partial video is still worth using.
    """

    path: Path
    fps: float | None = None
    max_side: int | None = None
    start: float = 0.0  # seconds: read a segment of the video only (its frames' times count
    end: float | None = None  # from ``start``, as if it were its own video)
    decoded_frames: int = 0
    problems: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[VideoFrame]:
        path = Path(self.path)
        self.decoded_frames, self.problems = 0, []
        check_readable(path)
        if image_format(path) is not None:
            if self.start <= 0 and (self.end is None or self.end > 0):
                self.decoded_frames = 1
                yield VideoFrame(0, 0.0, read_image(path, self.max_side))
            return
        with open_container(path) as container:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            _seek(container, stream, self.start)
            declared = int(stream.frames) or None
            rate = stream.average_rate or stream.guessed_rate
            fallback_step = 1.0 / float(rate) if rate else 1.0 / 25.0
            sampler = FrameSampler(self.fps)
            kept = 0
            damaged = [0]
            try:
                for frame in _decoded(container, stream, damaged):
                    self.decoded_frames += 1
                    time = frame.time
                    if time is None:
                        time = (self.decoded_frames - 1) * fallback_step
                    if time < self.start - 1e-6:
                        continue  # decoded from the keyframe before the segment
                    if self.end is not None and time >= self.end:
                        break
                    if not sampler.keep(time):
                        continue
                    width, height = scaled_size(frame.width, frame.height, self.max_side)
                    image = frame.to_ndarray(width=width, height=height, format="rgb24")
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                    yield VideoFrame(kept, float(time) - self.start, _upright(image, rotation))
                    kept += 1
            except av.error.FFmpegError as error:
                self.problems.append(
                    f"video decoding stopped after {self.decoded_frames} frames: {error}"
                )
            if damaged[0]:
                self.problems.append(f"{damaged[0]} damaged video packets skipped")
            whole = self.start == 0 and self.end is None
            if whole and declared and self.decoded_frames < TRUNCATION_TOLERANCE * declared:
                self.problems.append(
                    f"truncated: the header declares {declared} video frames but only "
                    f"{self.decoded_frames} decode"
                )


def write_video(
    path: str | Path,
    frames: Iterable[NDArray[np.uint8]],
    fps: int,
    audio: NDArray[np.float32] | None = None,
) -> Path:
    """Write RGB ``frames`` (even sides; read one at a time) at ``fps``, with 16 kHz mono
    ``audio``, as an MP4 (H.264 and AAC): generated test media."""
    path = Path(path)
    remaining = iter(frames)
    first = next(remaining)
    with av.open(str(path), "w") as container:  # every stream is added before the first packet
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
        for image in itertools.chain([first], remaining):
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        if sound is not None and audio is not None:
            for start in range(0, len(audio), 1024):
                block = np.ascontiguousarray(audio[None, start : start + 1024], np.float32)
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = SAMPLE_RATE, start
                frame.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path
