"""Real test clips of chosen lengths for the benchmarks (a webcam talking face with speech)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vavl.media import SAMPLE_RATE, VideoReader, read_audio


def make_clip(source: Path, seconds: float, target: Path) -> Path:
    """Re-encode ``source`` (looped as needed) to exactly ``seconds`` of H.264 + AAC."""

    def looped_frames() -> Iterator[np.ndarray]:
        while True:
            yield from (frame.image for frame in VideoReader(source))

    audio = read_audio(source)
    assert audio is not None
    rate = 30
    count = int(seconds * rate)
    with av.open(str(target), "w") as container:
        frames = looped_frames()
        first = next(frames)
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for index in range(count):
            image = first if index == 0 else next(frames)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = np.resize(audio, int(seconds * SAMPLE_RATE)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = (
                SAMPLE_RATE,
                start,
                Fraction(1, SAMPLE_RATE),
            )
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return target
