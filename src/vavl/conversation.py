"""Two-person videos whose speaker is known at every moment, made from real single-face clips:
the test set of active-speaker detection.

Two talking-head recordings are placed in one picture (side by side, one above the other, or
at different sizes) and the soundtrack switches between their own voices every few seconds
(A speaks 0-4 s, B 4-8 s, ...): each face's lips move all along, but only one of them matches
what is heard. The truth is known by construction, and each face's place in the picture tells
which face track is whose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vavl.errors import MediaError
from vavl.media import SAMPLE_RATE, VideoReader, read_audio, write_video

LAYOUTS = ("side by side", "top and bottom", "different sizes")
FPS = 25
SIDE = 320  # pixels of each face's square (the larger one, at different sizes)
SMALL_SIDE = 192  # the second face's square at different sizes


@dataclass(frozen=True)
class Conversation:
    """A generated two-person video: where each person is (their square's centre, as shares
    of the picture's width and height) and how often the voice heard switches."""

    path: Path
    centres: tuple[tuple[float, float], tuple[float, float]]
    switch_every: float
    duration: float
    off_screen: bool = False  # the voice heard is neither person's

    def speaker_at(self, time: float) -> int | None:
        """Whose voice (0: the first clip's, 1: the second's, None: someone off-screen) is
        heard at ``time``."""
        return None if self.off_screen else int(time // self.switch_every) % 2

    def person_at(self, centre: tuple[float, float]) -> int:
        """Which person (0 or 1) a face track centred at ``centre`` is."""
        distances = [np.hypot(centre[0] - x, centre[1] - y) for x, y in self.centres]
        return int(np.argmin(distances))


def _squares(layout: str) -> tuple[tuple[int, int], list[tuple[int, int, int]]]:
    """The picture's (width, height) and each person's square: (left, top, side)."""
    if layout == "side by side":
        return (2 * SIDE, SIDE), [(0, 0, SIDE), (SIDE, 0, SIDE)]
    if layout == "top and bottom":
        return (SIDE, 2 * SIDE), [(0, 0, SIDE), (0, SIDE, SIDE)]
    if layout == "different sizes":
        top = (SIDE - SMALL_SIDE) // 2
        return (SIDE + SMALL_SIDE, SIDE), [(0, 0, SIDE), (SIDE, top, SMALL_SIDE)]
    raise ValueError(f"unknown layout '{layout}'; one of {', '.join(LAYOUTS)}")


def _frames(path: Path) -> list[NDArray[np.uint8]]:
    return [frame.image for frame in VideoReader(path, FPS)]


def two_person_video(
    clips: Sequence[Path],
    layout: str,
    target: Path,
    switch_every: float = 4.0,
    off_screen: Path | None = None,
) -> Conversation:
    """Write ``target``: the two ``clips`` in ``layout``, as long as the shorter, with the
    voice heard switching between their soundtracks every ``switch_every`` seconds (or, with
    ``off_screen``, that clip's voice all along: someone neither face is)."""
    (width, height), squares = _squares(layout)
    videos = [_frames(clip) for clip in clips]
    sounds = [off_screen, off_screen] if off_screen is not None else clips
    voices = [read_audio(clip) for clip in sounds]
    for clip, voice in zip(sounds, voices, strict=True):
        if voice is None or not len(voice):
            raise MediaError(f"{clip}: has no audio to hear")
    assert voices[0] is not None and voices[1] is not None
    count = min(len(v) for v in videos)
    samples = min(len(voices[0]), len(voices[1]), round(count / FPS * SAMPLE_RATE))
    frames = []
    for index in range(count):
        canvas = Image.new("RGB", (width, height))
        for video, (left, top, side) in zip(videos, squares, strict=True):
            face = Image.fromarray(video[index]).resize((side, side), Image.Resampling.BILINEAR)
            canvas.paste(face, (left, top))
        frames.append(np.asarray(canvas, np.uint8))
    moments = np.arange(samples) / SAMPLE_RATE
    speaker = (moments // switch_every).astype(int) % 2
    heard = np.where(speaker == 0, voices[0][:samples], voices[1][:samples]).astype(np.float32)
    write_video(target, frames, FPS, heard)
    centres = [
        ((left + side / 2) / width, (top + side / 2) / height) for left, top, side in squares
    ]
    return Conversation(
        target,
        (centres[0], centres[1]),
        switch_every,
        samples / SAMPLE_RATE,
        off_screen is not None,
    )
