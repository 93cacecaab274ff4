"""Answers per person: every face tracked in a video, what its face shows, how long it spoke and
what it sounded and looked like while it did.

The feature pipeline gives, per file or window, every tracked face's features (``people``) and
who speaks in each second (``turns``). Each person becomes two items for the inference engine:
``seen`` (its face over all its frames, no sound) and ``speaking`` (its face and the audio over
the seconds its lips were seen following the speech, when there are any): the audio is only
ever given to the person speaking it. A long file's persons are the same tracks in every
window; their answers are the means of their windows' (the speaking ones weighted by how long
they spoke there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.data import Item
from vavl.features.records import FaceSummary, FileFeatures, ModalityFeatures
from vavl.spans import inside
from vavl.speakers import Turn, merged_turns, seconds_of_speech, seconds_speaking
from vavl.types import PathName

SEEN, SPEAKING_TIME = "seen", "speaking"
PersonOutputs = dict[int, dict[str, dict[PathName, NDArray[np.float32]]]]  # track, kind, path


def _during(found: ModalityFeatures, spans: Sequence[tuple[float, float]]) -> ModalityFeatures:
    """``found`` with only its frames inside ``spans`` valid."""
    times = np.asarray(found.times)
    within = np.zeros(len(times), bool)
    for start, end in spans:
        within |= inside(times, start, end)
    return ModalityFeatures(found.features, found.times, found.valid & within, found.energy)


def speaking_spans(turns: Sequence[Turn], track: int) -> list[tuple[float, float]]:
    return [(turn.start, turn.end) for turn in turns if turn.speaker == track]


def person_items(features: FileFeatures, **fields: Any) -> list[tuple[int, str, Item]]:
    """(track, kind, item) for every person of a file or window (``fields`` on each item)."""
    items = []
    for track, seen in features.people.items():
        name = f"{features.start:.3f}/person-{track}"
        items.append((track, SEEN, Item.from_modalities(f"{name}/seen", None, seen, **fields)))
        spans = speaking_spans(features.turns, track)
        if spans and features.audio is not None:
            audio, face = _during(features.audio, spans), _during(seen, spans)
            if audio.valid.any():
                shown = face if face.valid.any() else None
                item = Item.from_modalities(f"{name}/speaking", audio, shown, **fields)
                items.append((track, SPEAKING_TIME, item))
    return items


def where(centre: tuple[float, float]) -> str:
    """A face's place in the picture, in words (left, top right, centre...)."""
    x, y = centre
    across = "left" if x < 0.4 else "right" if x > 0.6 else ""
    down = "top" if y < 0.4 else "bottom" if y > 0.6 else ""
    return " ".join(word for word in (down, across) if word) or "centre"


@dataclass
class PersonTally:
    """What the windows said of one person so far: frames, place, scores."""

    frames: int = 0
    area: float = 0.0
    weight: float = 0.0  # prominence, as the face ranking measures it
    centre: NDArray[np.float64] = field(default_factory=lambda: np.zeros(2))
    seen: dict[str, tuple[NDArray[np.float64], float]] = field(default_factory=dict)
    speaking: dict[str, tuple[NDArray[np.float64], float]] = field(default_factory=dict)

    def add_face(self, face: FaceSummary) -> None:
        self.area += face.area * face.frames
        self.centre += np.asarray(face.centre) * face.frames
        self.frames += face.frames
        self.weight += face.weight


def _add(
    sums: dict[str, tuple[NDArray[np.float64], float]],
    scores: Mapping[str, NDArray[np.float64]],
    weight: float,
) -> None:
    for path, vector in scores.items():
        total, weights = sums.get(path, (np.zeros_like(vector), 0.0))
        sums[path] = (total + weight * vector, weights + weight)


@dataclass
class PersonScores:
    """One person's mean calibrated scores per path (``seen``: its face alone; ``speaking``:
    while it spoke) and where it was."""

    track: int
    frames: int
    area: float
    weight: float
    centre: tuple[float, float]
    speaking_seconds: float
    seen: dict[str, NDArray[np.float64]]
    speaking: dict[str, NDArray[np.float64]]


class People:
    """Every person of a file, gathered from its windows (or the whole file, one window)."""

    def __init__(self) -> None:
        self.tallies: dict[int, PersonTally] = {}
        self.turns: list[Turn] = []

    def add(
        self,
        features: FileFeatures,
        scores: Mapping[int, Mapping[str, Mapping[str, NDArray[np.float64]]]],
    ) -> None:
        """A window's faces and turns, and each person's calibrated scores by kind and path."""
        self.turns += features.turns
        for face in features.faces:
            if face.track in features.people:
                self.tallies.setdefault(face.track, PersonTally()).add_face(face)
        for track, kinds in scores.items():
            tally = self.tallies.setdefault(track, PersonTally())
            _add(tally.seen, kinds.get(SEEN, {}), 1.0)
            spoken = seconds_speaking(features.turns, track)
            _add(tally.speaking, kinds.get(SPEAKING_TIME, {}), spoken)

    def merged_turns(self) -> list[Turn]:
        return merged_turns(self.turns)

    def speech_seconds(self) -> float:
        return seconds_of_speech(self.merged_turns())

    def scores(self) -> list[PersonScores]:
        """Each person's mean scores, the most prominent first (as faces are ranked: by their
        sum of area x confidence, so that a whole file's face N is its person N)."""
        turns = self.merged_turns()
        people = []
        for track, tally in self.tallies.items():
            if not tally.frames:
                continue
            people.append(
                PersonScores(
                    track=track,
                    frames=tally.frames,
                    area=tally.area / tally.frames,
                    weight=tally.weight,
                    centre=(
                        round(float(tally.centre[0] / tally.frames), 4),
                        round(float(tally.centre[1] / tally.frames), 4),
                    ),
                    speaking_seconds=seconds_speaking(turns, track),
                    seen={p: total / n for p, (total, n) in tally.seen.items() if n > 0},
                    speaking={p: total / n for p, (total, n) in tally.speaking.items() if n > 0},
                )
            )
        return sorted(people, key=lambda p: -p.weight)

    def listed(self, list_alone: bool) -> list[PersonScores]:
        """The persons an answer lists, the most prominent first (a person's number is their
        place here): everyone when there are several, one alone only with ``list_alone``."""
        found = self.scores()
        return found if len(found) > 1 or list_alone else []

    def turn_rows(self, listed: Sequence[PersonScores]) -> list[dict[str, Any]]:
        """Who spoke each second, as records naming the ``listed`` persons by number."""
        return turn_rows(self.merged_turns(), numbers(listed))


def numbers(listed: Sequence[PersonScores]) -> dict[int, int]:
    """Each listed person's number, by track."""
    return {person.track: number for number, person in enumerate(listed)}


def turn_rows(turns: Sequence[Turn], number: Mapping[int, int]) -> list[dict[str, Any]]:
    """Turns as records, with each speaker's person ``number`` (by track) instead of its track."""
    return [
        {
            "start": round(turn.start, 3),
            "end": round(turn.end, 3),
            "status": turn.status,
            "person": number.get(turn.speaker) if turn.speaker is not None else None,
            "score": turn.score,
            "margin": turn.margin,
        }
        for turn in turns
    ]
