"""A clip that is a time span of a longer recording (CMU-MOSEI's segments, IEMOCAP's or MELD's
utterances, a moment a user picks with ``vavl predict --start --end``).

A span is read as if it were its own file: its audio starts at its start, its frames' times
count from it, and whole-file rules (too short, silent, no face) judge the span alone. Its
features are filed in the store beside the whole file's, under the file's content hash and the
span (:meth:`Span.entry_id`), so one recording holds many clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

from vavl.errors import DataError, MediaError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

# A span that starts this far past the end of its file names nothing in it (container
# durations are rounded).
END_TOLERANCE = 0.05
# Frame times are float32: a time is in [start, end) give or take a microsecond.
TIME_TOLERANCE = 1e-6


@overload
def inside(times: float, start: float, end: float) -> bool: ...


@overload
def inside(times: NDArray[np.floating], start: float, end: float) -> NDArray[np.bool_]: ...


def inside(
    times: float | NDArray[np.floating], start: float, end: float
) -> bool | NDArray[np.bool_]:
    """Whether ``times`` (one time, or an array of them) fall in [start, end)."""
    return (times >= start - TIME_TOLERANCE) & (times < end - TIME_TOLERANCE)


@dataclass(frozen=True)
class Span:
    """[start, end) seconds of a file; ``end`` None: to the end of the file."""

    start: float = 0.0
    end: float | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None, where: str) -> Span:
        """A span from a manifest's ``start`` and ``end`` cells (blank: the file's start, its
        end); ``where`` names the row in the one-line error."""
        try:
            first = float(start) if start else 0.0
            last = float(end) if end else None
        except ValueError:
            raise DataError(
                f"{where}: start and end must be seconds, not '{start}' and '{end}'"
            ) from None
        if not 0 <= first < math.inf or (last is not None and not first < last < math.inf):
            raise DataError(f"{where}: not a time span: start {start}, end {end}")
        return cls(first, last)

    @property
    def whole(self) -> bool:
        return self.start <= 0.0 and self.end is None

    def describe(self) -> str:
        end = "the end" if self.end is None else f"{self.end:g} s"
        return f"{self.start:g} s to {end}"

    def bounds(self, duration: float | None) -> tuple[float, float] | None:
        """[start, end) seconds in the file of a span that lasted ``duration`` once read (None
        for the whole file)."""
        if self.whole or duration is None:
            return None
        return (self.start, round(self.start + duration, 3))

    def entry_id(self, content_hash: str) -> str:
        """The store's name for this span's entries of a file with ``content_hash`` (the hash
        alone for the whole file, whose entries are those of every earlier version)."""
        if self.whole:
            return content_hash
        end = "end" if self.end is None else f"{self.end:.3f}"
        return f"{content_hash}@{self.start:.3f}-{end}"

    def check(self, path: Path | str, duration: float | None) -> float | None:
        """The span's length in seconds (None for a still image's whole), once checked against
        its file's ``duration``: one line naming the file and the problem otherwise."""
        if self.whole:
            return duration
        if duration is None:
            raise MediaError(f"{path}: a still image has no time span to cut ({self.describe()})")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise MediaError(f"{path}: not a time span: {self.describe()}")
        if self.start >= duration - END_TOLERANCE:
            raise MediaError(
                f"{path}: the span starts at {self.start:g} s but the file lasts {duration:.2f} s"
            )
        end = duration if self.end is None else min(self.end, duration)
        return end - self.start


WHOLE = Span()


@dataclass(frozen=True)
class MediaSpan:
    """A media file, or a span of one: what extraction reads and the store files as one entry."""

    path: Path
    span: Span = WHOLE

    @classmethod
    def of(cls, source: str | Path | MediaSpan) -> MediaSpan:
        return source if isinstance(source, MediaSpan) else cls(Path(source))

    def sort_key(self) -> tuple[str, float, float]:
        end = self.span.end
        return (str(self.path), self.span.start, float("inf") if end is None else end)

    def __str__(self) -> str:
        return str(self.path) if self.span.whole else f"{self.path} [{self.span.describe()}]"
