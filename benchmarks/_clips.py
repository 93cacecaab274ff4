"""Real test clips of chosen lengths for the benchmarks (a webcam talking face with speech)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from vavl.media import SAMPLE_RATE, VideoReader, read_audio, write_video


def make_clip(source: Path, seconds: float, target: Path) -> Path:
    """Re-encode ``source`` (looped as needed, at its own frame rate) to exactly ``seconds`` of
    H.264 + AAC."""

    def looped_frames() -> Iterator[np.ndarray]:
        while True:
            yield from (frame.image for frame in VideoReader(source))

    audio = read_audio(source)
    assert audio is not None
    with av.open(str(source)) as container:
        rate = round(float(container.streams.video[0].average_rate or 30))
    frames = itertools.islice(looped_frames(), int(seconds * rate))
    samples = np.resize(audio, int(seconds * SAMPLE_RATE)).astype(np.float32)
    return write_video(target, frames, rate, samples)
