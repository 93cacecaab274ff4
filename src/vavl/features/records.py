"""What the feature pipeline gives: a modality's frame features, the faces a video tracked,
and everything one file (or window) gave."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vavl.features.base import FloatArray
from vavl.speakers import Turn


@dataclass
class ModalityFeatures:
    features: FloatArray  # (frames, dim)
    times: NDArray[np.float32]  # (frames,) start of each frame, seconds
    valid: NDArray[np.bool_]  # (frames,) False where the frame has no usable content (no face)
    energy: NDArray[np.float64] | None = None  # audio: each frame's mean square, when known


@dataclass(frozen=True)
class FaceSummary:
    """One tracked face: its rank (0: most prominent), in how many sampled frames it was found,
    its mean share of the picture, its track (the same face in every window of a file), where
    it mostly is (its centre, as shares of the picture's width and height) and its weight."""

    index: int
    frames: int
    area: float
    track: int = 0
    centre: tuple[float, float] = (0.5, 0.5)
    weight: float = 0.0  # how prominent: its frames' sum of area x confidence (the ranking's)

    def describe(self) -> str:
        frames = "1 frame" if self.frames == 1 else f"{self.frames} frames"
        return f"in {frames}, {self.area:.1%} of the picture"


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
    face_asked: int = 0  # the rank asked for (``--face``); the last one tracked when fewer
    missing: dict[str, str] = field(default_factory=dict)  # modality -> why it has no features
    notes: list[str] = field(default_factory=list)  # other problems (e.g. a truncated file)
    preview: list[NDArray[np.uint8]] = field(default_factory=list)  # a few face crops
    start: float = 0.0  # where a window begins in its file, seconds (0 for a whole file)
    # Who speaks, when the pipeline looks for the active speaker: a turn per second, and the
    # visual features of every face tracked (by track), for answers per person.
    turns: list[Turn] = field(default_factory=list)
    people: dict[int, ModalityFeatures] = field(default_factory=dict)
    face_choice: str | None = None  # why the face used was chosen, when not by its rank

    def set_modality(self, modality: str, found: ModalityFeatures | None) -> None:
        if modality == "audio":
            self.audio = found
        else:
            self.visual = found

    @property
    def face_reason(self) -> str:
        """Which face was used and why, in words."""
        if self.face_used is None:
            return "no face"
        chosen = self.faces[self.face_used]
        if self.face_choice is not None:
            return f"face {chosen.index}, {self.face_choice} ({chosen.describe()})"
        if self.face_used != self.face_asked:
            tracked = f"{len(self.faces)} tracked"
            why = f"face {self.face_asked} was asked for but only {tracked}"
        else:
            why = "the most prominent" if self.face_used == 0 else "as asked"
        return f"face {chosen.index}, {why} ({chosen.describe()})"
