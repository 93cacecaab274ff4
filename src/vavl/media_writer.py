"""Writing media files: an MP4 (H.264 video, AAC audio) from RGB frames and mono samples.

vavl reads media; it writes them only to build test scenes with a known answer (two people,
one voice: :mod:`vavl.speaker_scenes`) and, in the tests, files with chosen properties.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from vavl.media import SAMPLE_RATE

AUDIO_BLOCK = 1024  # samples per encoded audio frame (AAC's frame size)


def write_media(
    path: Path,
    frames: Iterable[NDArray[np.uint8]] | None = None,
    fps: float = 25.0,
    audio: NDArray[np.float32] | None = None,
    sample_rate: int = SAMPLE_RATE,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    times: Sequence[float] | None = None,
) -> Path:
    """Write ``path`` with the given RGB frames (all of one size) and/or mono ``audio``.

    ``times`` gives each frame's presentation time in seconds (a variable frame rate);
    ``rotation`` is stored as display metadata (PyAV >= 18 can write it).
    """
    container = av.open(str(path), "w")
    video = None
    frame_list = None if frames is None else list(frames)
    if frame_list:
        height, width = frame_list[0].shape[:2]
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if times is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
    sound = None
    if audio is not None:
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
    if video is not None and frame_list is not None:
        for index, image in enumerate(frame_list):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[index] * 1000), Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    if sound is not None and audio is not None:
        for start in range(0, len(audio), AUDIO_BLOCK):
            chunk = np.ascontiguousarray(audio[start : start + AUDIO_BLOCK], dtype=np.float32)
            block = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            block.sample_rate, block.pts = sample_rate, start
            for packet in sound.encode(block):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path
