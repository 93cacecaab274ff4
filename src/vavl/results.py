"""What a prediction is: each path's answer and a file's whole result (records only, shared by
the predictor, timelines, the CLI and the web page)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.files import csv_text
from vavl.spans import Span


@dataclass
class PathPrediction:
    """One path's answer: a class with probabilities, the labels present with each one's
    probability (``label`` joins them with +), or attribute values."""

    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    present: list[str] | None = None  # multilabel: the labels at or above their thresholds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``present`` only where a multi-label model says it."""
        result = asdict(self)
        if self.present is None:
            del result["present"]
        return result

    def columns(self) -> dict[str, object]:
        """CSV columns: the label, each label's probability (``p_<label>``), each value."""
        row: dict[str, object] = {"label": self.label or ""}
        row |= {f"p_{name}": round(value, 5) for name, value in self.probabilities.items()}
        row |= {name: round(value, 5) for name, value in self.values.items()}
        return row


@dataclass
class PersonPrediction:
    """One person (a face tracked through the video): what its face shows (``seen``: every
    frame of it, no sound), how long its lips were seen following the speech heard, and every
    path's answer over that time (``speaking``: its voice and face only while it spoke)."""

    person: int  # 0: the most prominent (largest and most persistent)
    where: str  # its place in the picture, in words
    frames: int  # sampled frames it was found in
    area: float  # its mean share of the picture
    speaking_seconds: float
    speaking_share: float | None  # of the seconds with speech heard (None: none was)
    seen: dict[str, PathPrediction]
    speaking: dict[str, PathPrediction]

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        for kind in ("seen", "speaking"):
            result[kind] = {p: answer.to_dict() for p, answer in getattr(self, kind).items()}
        return result

    def to_rows(self) -> list[dict[str, object]]:
        """CSV rows: one per answer (its face; each path while it spoke)."""
        rows = []
        for kind, answers in (("face", self.seen), ("speaking", self.speaking)):
            for path, answer in answers.items():
                row: dict[str, object] = {
                    "status": "predicted",
                    "path": path,
                    "person": self.person,
                    "person_answer": kind,
                    "where": self.where,
                    "speaking_seconds": self.speaking_seconds,
                    "speaking_share": "" if self.speaking_share is None else self.speaking_share,
                }
                rows.append(row | answer.columns())
        return rows

    def to_text(self) -> str:
        share = "" if self.speaking_share is None else f" ({self.speaking_share:.0%} of speech)"
        lines = [
            f"  person {self.person} ({self.where}, in {self.frames} frame"
            f"{'' if self.frames == 1 else 's'}): "
            f"speaking {self.speaking_seconds:g} s{share}"
        ]
        for kind, answers in (("face", self.seen), ("speaking", self.speaking)):
            for path, answer in answers.items():
                if kind == "speaking" and path != "audiovisual" and "audiovisual" in answers:
                    continue  # while it spoke, the fused answer is the one to read
                lines.append(f"    {kind + ' (' + path + ')':<26} {_in_words(answer)}")
        return "\n".join(lines)


def _in_words(answer: PathPrediction) -> str:
    """A path's answer on one line: its label and top three, or its values."""
    if answer.label is None:
        return ", ".join(f"{name} {value:.3f}" for name, value in answer.values.items())
    top = sorted(answer.probabilities.items(), key=lambda kv: -kv[1])[:3]
    return f"{answer.label:<10} ({', '.join(f'{label} {share:.2f}' for label, share in top)})"


@dataclass
class Prediction:
    source: str
    duration: float | None
    modalities: dict[str, str]  # audio/visual -> "found" or "missing: <why>"
    frames_sampled: int
    frames_with_face: int
    faces_tracked: int  # distinct faces followed through the video
    face_used: str  # which one fed the visual path, and why
    paths: dict[str, PathPrediction]
    best_path: str | None
    best_reason: str  # which development figures made it the best path
    fallback: str | None  # which modality is missing and why, when one is
    model: str
    extractors: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    # For files longer than the model's max_clip_seconds: how the windows were combined.
    aggregated: dict[str, Any] | None = None
    # [start, end) seconds of the file when only that span was predicted (None: all of it).
    span: tuple[float, float] | None = None
    face_crops: list[NDArray[np.uint8]] = field(default_factory=list, repr=False)
    # When who speaks was looked for: every person, and who spoke in each second.
    people: list[PersonPrediction] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result.pop("face_crops")
        result["paths"] = {path: answer.to_dict() for path, answer in self.paths.items()}
        result["people"] = [person.to_dict() for person in self.people]
        return result

    def who_spoke(self) -> str:
        """Seconds per person speaking and per other status, in words."""
        seconds: dict[str, float] = {}
        for turn in self.turns:
            name = f"person {turn['person']}" if turn["person"] is not None else turn["status"]
            seconds[name] = seconds.get(name, 0.0) + turn["end"] - turn["start"]
        return ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())

    def to_text(self) -> str:
        """A few lines per file: the label (or values) of every path, and what was missing."""
        span = f" [{Span(*self.span).describe()}]" if self.span else ""
        lines = [f"{self.source}{span}:"]
        for path, result in self.paths.items():
            best = "  <- best" if path == self.best_path and len(self.paths) > 1 else ""
            lines.append(f"  {path:<12} {_in_words(result)}{best}")
        if len(self.paths) > 1:
            lines.append(f"  (best: {self.best_reason})")
        if self.frames_sampled:
            lines.append(
                f"  (faces: {self.faces_tracked} tracked, {self.frames_with_face} of "
                f"{self.frames_sampled} sampled frames with the one used: {self.face_used})"
            )
        if self.aggregated:
            windows = self.aggregated
            lines.append(
                f"  (long file: the mean over {windows['windows']} windows of "
                f"{windows['window_seconds']:g} s)"
            )
        if self.fallback:
            lines.append(f"  ({self.fallback})")
        lines += [f"  (note: {note})" for note in self.notes]
        if self.turns:
            lines.append(f"  who speaks: {self.who_spoke()}")
        lines += [person.to_text() for person in self.people]
        return "\n".join(lines)

    def to_rows(self) -> list[dict[str, object]]:
        """CSV rows: one per path (or one saying why there is none)."""
        if not self.paths:
            return [
                {
                    "file": self.source,
                    "status": "nothing to predict from",
                    "error": self.fallback or "",
                }
            ]
        rows = []
        for path, result in self.paths.items():
            row: dict[str, object] = {"file": self.source}
            if self.span:  # the part of the file predicted
                row |= {"start": self.span[0], "end": self.span[1]}
            row |= {
                "status": "predicted",
                "path": path,
                "best": path == self.best_path,
            }
            row |= result.columns()
            row |= {"audio": self.modalities["audio"], "visual": self.modalities["visual"]}
            row |= {
                "frames_with_face": self.frames_with_face,
                "faces_tracked": self.faces_tracked,
                "face_used": self.face_used,
                "windows": self.aggregated["windows"] if self.aggregated else 1,
                "fallback": self.fallback or "",
                "notes": "; ".join(self.notes),
                "error": "",  # the column failed files fill, there in every file's CSV
            }
            rows.append(row)
        return rows + [row | {"file": self.source} for p in self.people for row in p.to_rows()]


def render_predictions(
    predictions: Sequence[Prediction],
    failures: Sequence[dict[str, str]],
    output_format: str,
    model: str,
) -> str:
    """What ``vavl predict`` writes: ``table`` (a few lines per file), ``json`` or ``csv``
    (failed files included, with their one-line error)."""
    if output_format == "json":
        payload = {
            "model": model,
            "predictions": [p.to_dict() for p in predictions],
            "failed": list(failures),
        }
        return json.dumps(payload, indent=2)
    if output_format == "csv":
        rows = [row for p in predictions for row in p.to_rows()]
        rows += [{"file": f["file"], "status": "failed", "error": f["error"]} for f in failures]
        return csv_text(rows) if rows else ""
    return "\n".join(p.to_text() for p in predictions)


def prediction_summary(
    predictions: Sequence[Prediction], failures: int, total: int, unwritten_timelines: int = 0
) -> str:
    """``N of M files predicted``, with what the others lacked, how many failed and how many
    timelines could not be written."""
    empty = [p for p in predictions if not p.paths]
    summary = f"{len(predictions) - len(empty)} of {total} files predicted"
    if empty:
        reasons = sorted(
            {s.removeprefix("missing: ") for p in empty for s in p.modalities.values()}
        )
        summary += f"; {len(empty)} had nothing to predict from: {'; '.join(reasons)}"
    summary += f"; {failures} failed" if failures else ""
    if unwritten_timelines:
        summary += f"; {unwritten_timelines} timeline(s) not written"
    return summary
