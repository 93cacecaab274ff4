"""A live stream's features: a microphone's samples and a camera's frames as they arrive.

Windows are cut by the pipeline's own code (:meth:`~vavl.features.pipeline.FeaturePipeline.cut`),
as from a file: the window's audio encoded on its own, its face chosen in it. What consecutive
windows share is computed once: a frame's faces are detected, tracked and turned into features
when it arrives, and every later window that holds the frame reuses them. The audio of a
window is encoded whole each time (Whisper's frames depend on all of their window, so they
cannot be carried over; a frame-local extractor such as log-mel would allow it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vavl.features.base import FloatArray
from vavl.features.pipeline import FeaturePipeline, Sources
from vavl.features.records import FileFeatures
from vavl.features.streams import AudioStream, VisualStream
from vavl.media import VideoFrame


class LiveStreams:
    """One live connection's streams, fed as data arrives and cut into windows on demand."""

    def __init__(self, pipeline: FeaturePipeline, name: str = "<live>") -> None:
        self.pipeline = pipeline
        self.sources = Sources(Path(name), None, None, None, {}, [])
        self.audio = None
        if pipeline.audio is not None:
            self.audio = AudioStream(pipeline.audio, iter(()), encode_chunks=False)
        self.visual = VisualStream(pipeline, iter(())) if pipeline.visual is not None else None
        self.frames = 0

    def add_audio(self, samples: FloatArray) -> None:
        """Samples at 16 kHz, following those already added."""
        if self.audio is not None:
            self.audio.push(samples.astype(np.float32, copy=False))

    def skip_audio(self, count: int) -> None:
        """``count`` samples that came but will never be in a window (a slow machine)."""
        if self.audio is not None:
            self.audio.skip(count)

    def add_frame(self, time: float, image: NDArray[np.uint8]) -> None:
        """An RGB frame taken at ``time`` seconds on the stream's clock."""
        if self.visual is not None:
            self.visual.push(VideoFrame(self.frames, time, image))
            self.frames += 1

    def window(self, start: float, end: float) -> FileFeatures:
        """The features of [start, end); what comes before ``start`` is dropped after."""
        features = self.pipeline.cut(self.sources, self.audio, self.visual, [(start, end)])[0]
        for stream in (self.audio, self.visual):
            if stream is not None:
                stream.drop_before(start)
        return features
