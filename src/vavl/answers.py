"""From a model's raw outputs to what a person reads: each path's calibrated probabilities (or
attribute values), the path to trust for the input, what was missing and why, and a long
file's answer as the mean of its windows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.calibration import PathReliability, best_path, label_thresholds, sigmoid, softmax
from vavl.config import TaskConfig
from vavl.features.records import FileFeatures
from vavl.inference import ItemOutputs
from vavl.people import SEEN, People, PersonOutputs, where
from vavl.results import PathPrediction, PersonPrediction, Prediction
from vavl.types import MODALITIES, PATHS

NO_LABEL = "none"  # what a multi-label path says when no label reaches its threshold


def labels_present(labels: Sequence[str], said: Iterable[bool]) -> list[str]:
    return [name for name, yes in zip(labels, said, strict=True) if yes]


def in_words(present: Sequence[str]) -> str:
    """The labels a multi-label answer says are present, as one word: happy+surprise, or none."""
    return "+".join(present) or NO_LABEL


@dataclass
class Answers:
    """What one model's outputs mean: its task, each path's calibration, its name and
    extractors (for the record of every answer). Persons are listed when there are several,
    or for one alone with ``list_alone``."""

    task: TaskConfig
    calibration: Mapping[str, PathReliability]
    model: str
    extractors: dict[str, str | None] = field(default_factory=dict)
    list_alone: bool = False

    def scores(self, path: str, output: NDArray[np.float32]) -> NDArray[np.float64]:
        """Calibrated class probabilities (each label's probability; the attribute values) of
        one output vector."""
        if self.task.kind == "regression":
            return np.asarray(output, np.float64)
        reliability = self.calibration.get(path)
        temperature = reliability.temperature if reliability else 1.0
        squash = sigmoid if self.task.kind == "multilabel" else softmax
        return np.asarray(squash(output, temperature), np.float64)

    def from_scores(self, path: str, scores: NDArray[np.floating[Any]]) -> PathPrediction:
        """A path's answer from its class probabilities (label probabilities, attribute
        values); a multi-label path says each label whose probability reaches its threshold."""
        labels = self.task.labels
        named = {name: float(v) for name, v in zip(labels, scores, strict=True)}
        if self.task.kind == "regression":
            return PathPrediction(values=named)
        if self.task.kind == "multilabel":
            said = scores >= label_thresholds(self.calibration.get(path), len(labels))
            present = labels_present(labels, said)
            return PathPrediction(label=in_words(present), probabilities=named, present=present)
        return PathPrediction(label=labels[int(np.argmax(scores))], probabilities=named)

    def paths(self, outputs: ItemOutputs) -> dict[str, PathPrediction]:
        return {path: self.from_scores(path, self.scores(path, v)) for path, v in outputs.items()}

    def file(
        self, features: FileFeatures, outputs: ItemOutputs, people: PersonOutputs | None = None
    ) -> Prediction:
        """The answer for a file (or an input) predicted whole; ``people``: each person's
        outputs, when who speaks was looked for."""
        face = features.face_reason if features.face_used is not None else "none"
        prediction = self._prediction(features, self.paths(outputs), len(features.faces), face)
        if features.people:
            everyone = People()
            everyone.add(features, self._person_scores(people or {}))
            self._fill_people(prediction, everyone)
        return prediction

    def _person_scores(
        self, people: PersonOutputs
    ) -> dict[int, dict[str, dict[str, NDArray[np.float64]]]]:
        return {
            track: {
                kind: {p: self.scores(p, v) for p, v in outputs.items()}
                for kind, outputs in kinds.items()
            }
            for track, kinds in people.items()
        }

    def _fill_people(self, prediction: Prediction, everyone: People) -> None:
        """Every person's answers and who spoke when, numbered from the most prominent."""
        found = everyone.listed(self.list_alone)
        speech = everyone.speech_seconds()
        prediction.people = [
            PersonPrediction(
                person=number,
                where=where(person.centre),
                frames=person.frames,
                area=round(person.area, 4),
                speaking_seconds=round(person.speaking_seconds, 2),
                speaking_share=round(person.speaking_seconds / speech, 3) if speech else None,
                seen={p: self.from_scores(p, v) for p, v in person.seen.items()},
                speaking={p: self.from_scores(p, v) for p, v in person.speaking.items()},
            )
            for number, person in enumerate(found)
        ]
        prediction.turns = everyone.turn_rows(found) if found else []

    def faces_seen(self, people: PersonOutputs) -> dict[int, PathPrediction]:
        """Each person's face's answer (by track), from their outputs."""
        return {
            track: self.from_scores("visual", self.scores("visual", kinds[SEEN]["visual"]))
            for track, kinds in people.items()
            if "visual" in kinds.get(SEEN, {})
        }

    def long_file(
        self,
        path: Path,
        duration: float | None,
        window: float,
        windows: Iterable[tuple[FileFeatures, ItemOutputs, PersonOutputs]],
    ) -> Prediction:
        """A long file's answer: each path's mean calibrated probabilities (values) over its
        ``window``-second windows, each predicted as if it were its own file (and each
        person's, over the windows it was in)."""
        mean, everyone = WindowMean(window), People()
        for found, outputs, people in windows:
            mean.add(found, {p: self.scores(p, v) for p, v in outputs.items()})
            if found.people:
                everyone.add(found, self._person_scores(people))
        paths = {p: self.from_scores(p, total / mean.counts[p]) for p, total in mean.sums.items()}
        prediction = self._prediction(
            mean.whole(path, duration), paths, mean.faces, mean.face_reason(), mean.aggregated()
        )
        if everyone.tallies:
            self._fill_people(prediction, everyone)
        return prediction

    def _prediction(
        self,
        features: FileFeatures,
        paths: dict[str, PathPrediction],
        faces: int,
        face_used: str,
        aggregated: dict[str, Any] | None = None,
    ) -> Prediction:
        # A modality was found exactly when its own path could be fed.
        modalities: dict[str, str] = {
            m: "found" if m in paths else f"missing: {features.missing.get(m, 'not used')}"
            for m in MODALITIES
        }
        best, reason = best_path([p for p in PATHS if p in paths], self.calibration)
        return Prediction(
            source=str(features.path),
            duration=features.duration,
            modalities=modalities,
            frames_sampled=features.frames_sampled,
            frames_with_face=features.frames_with_face,
            faces_tracked=faces,
            face_used=face_used,
            paths=paths,
            best_path=best,
            best_reason=reason,
            fallback=fallback(paths, modalities),
            model=self.model,
            extractors=self.extractors,
            notes=list(features.notes),
            aggregated=aggregated,
            face_crops=list(features.preview),
        )


def fallback(paths: Mapping[str, PathPrediction], modalities: Mapping[str, str]) -> str | None:
    """Which paths answered and what the others lacked, in words (None: nothing was missing)."""
    missing = [f"{m} {status}" for m, status in modalities.items() if status != "found"]
    if not missing:
        return None
    if not paths:
        return "no prediction: " + "; ".join(missing)
    return f"{' and '.join(paths)} only: " + "; ".join(missing)


class WindowMean:
    """The running mean of each path's scores over a long file's windows, and what the
    windows found (faces, frames, missing modalities) for the whole file's record."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self.sums: dict[str, NDArray[np.float64]] = {}
        self.counts: dict[str, int] = {}
        self.windows = self.frames_sampled = self.frames_with_face = self.faces = 0
        self.face_asked = 0
        self.by_speaker = False  # the face was chosen as the one speaking
        self.found: set[str] = set()
        self.last: FileFeatures | None = None

    def add(self, window: FileFeatures, scores: Mapping[str, NDArray[np.float64]]) -> None:
        for name, vector in scores.items():
            self.sums[name] = self.sums.get(name, 0.0) + vector
            self.counts[name] = self.counts.get(name, 0) + 1
        self.found |= {m for m in MODALITIES if m in scores}  # found where its path answered
        self.windows += 1
        self.frames_sampled += window.frames_sampled
        self.frames_with_face += window.frames_with_face
        self.faces = max(self.faces, len(window.faces))
        self.face_asked = window.face_asked
        self.by_speaker = self.by_speaker or window.face_choice is not None
        self.last = window

    def whole(self, path: Path, duration: float | None) -> FileFeatures:
        assert self.last is not None, "a long file gives at least one window"
        whole = FileFeatures(path, duration, notes=list(self.last.notes))
        whole.missing = {m: r for m, r in self.last.missing.items() if m not in self.found}
        for modality in MODALITIES:
            if modality not in self.found and modality not in whole.missing:
                whole.missing[modality] = "not found in any window"
        whole.frames_sampled, whole.frames_with_face = self.frames_sampled, self.frames_with_face
        return whole

    def face_reason(self) -> str:
        span = f"{self.window_seconds:g} s window"
        if self.by_speaker:
            return f"the active speaker of each {span} (the most prominent where none was seen)"
        asked = self.face_asked
        if asked >= self.faces > 0:
            return (
                f"the last face tracked in each {span} (face {asked} was asked for but at most "
                f"{self.faces} were tracked in one)"
            )
        rank = "most prominent" if asked == 0 else f"number {asked}"
        return f"the {rank} face of each {span}"

    def aggregated(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "window_seconds": self.window_seconds,
            "windows_per_path": dict(self.counts),
            "method": "mean of the calibrated probabilities (values) of its windows, each "
            "predicted as its own clip",
        }
