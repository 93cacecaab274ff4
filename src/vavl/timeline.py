"""Emotion over time: every path's answer for each window of a file, bounded memory.

The feature pipeline reads the file once, front to back, and gives each window's features as if
the window were its own file (:meth:`~vavl.features.pipeline.FeaturePipeline.windows`); the
inference engine answers them in batches; here they become a timeline, written as CSV, JSON and
a picture. A window without a face has no visual path, one in silence no audio path.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from vavl.errors import ConfigError
from vavl.files import csv_text, write_atomically, write_text_atomically
from vavl.media import probe
from vavl.people import People, numbers, where
from vavl.results import PathPrediction
from vavl.speakers import SILENCE
from vavl.types import PATHS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from vavl.config import TaskConfig
    from vavl.features.records import FileFeatures


@dataclass
class TimelineWindow:
    start: float  # seconds
    end: float
    paths: dict[str, PathPrediction] = field(default_factory=dict)
    people: dict[int, PathPrediction] = field(default_factory=dict)  # each person's face


class Panel(NamedTuple):
    """One panel of a timeline's picture: its title and what it draws, a path's answers or a
    person's face's (with their speaking seconds shaded)."""

    title: str
    path: str | None = None
    person: int | None = None

    def answer(self, window: TimelineWindow) -> PathPrediction | None:
        if self.person is not None:
            return window.people.get(self.person)
        return window.paths.get(self.path or "")


@dataclass
class Timeline:
    source: str
    duration: float
    window: float
    hop: float
    labels: tuple[str, ...]
    kind: str  # classification, multilabel or regression
    windows: list[TimelineWindow]
    notes: list[str] = field(default_factory=list)
    # When who speaks was looked for: the persons (number, where) and who spoke each second.
    people: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """CSV rows: each window's answer per path, then per person (its face)."""
        rows = []
        for window in self.windows:
            answers: list[tuple[str, int | str, PathPrediction]] = [
                (path, "", r) for path, r in window.paths.items()
            ]
            answers += [("visual", person, r) for person, r in window.people.items()]
            for path, person, result in answers:
                row: dict[str, Any] = {
                    "start": round(window.start, 3),
                    "end": round(window.end, 3),
                    "path": path,
                }
                row |= {"person": person} if self.people else {}
                rows.append(row | result.columns())
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration": self.duration,
            "window": self.window,
            "hop": self.hop,
            "labels": list(self.labels),
            "notes": self.notes,
            "people": self.people,
            "turns": self.turns,
            "windows": [
                {
                    "start": window.start,
                    "end": window.end,
                    "paths": {path: answer.to_dict() for path, answer in window.paths.items()},
                    "people": {str(n): answer.to_dict() for n, answer in window.people.items()},
                }
                for window in self.windows
            ],
        }

    def panels(self) -> list[Panel]:
        """What the picture shows, a panel each: every path, then every person's face."""
        panels = [Panel(path, path) for path in PATHS if any(path in w.paths for w in self.windows)]
        for person in self.people:
            number = person["person"]
            spoke = sum(t["end"] - t["start"] for t in self.turns if t["person"] == number)
            shaded = f"; shaded: speaking ({spoke:g} s)" if len(self.windows) > 1 else ""
            title = f"person {number} ({person['where']}): face{shaded}"
            panels.append(Panel(title, person=number))
        return panels or [Panel("audio")]

    def figure(self) -> Figure:
        """One panel per path and per person: each class's probability (or each attribute)
        over time, as lines, a person's speaking seconds shaded; then who speaks when. A clip
        with a single window gets bars instead (a line needs two points)."""
        from matplotlib.figure import Figure  # only when drawing: it takes 0.4 s to import

        panels = self.panels()
        single = len(self.windows) == 1
        strip = bool(self.people) and not single  # seconds against the bars' labels: no
        heights = [2.2] * len(panels) + ([0.4 + 0.3 * (len(self.people) + 1)] if strip else [])
        figure = Figure(figsize=(10, sum(heights) + 0.6), layout="constrained")
        axes_list = np.atleast_1d(
            figure.subplots(len(heights), 1, sharex=True, height_ratios=heights)
        )
        centres = np.array([(w.start + w.end) / 2 for w in self.windows])
        colours = [f"C{i}" for i in range(len(self.labels))]
        for axes, panel in zip(axes_list, panels, strict=False):
            for number, name in enumerate(self.labels):
                series = []
                for window in self.windows:
                    result = panel.answer(window)
                    scores = result.probabilities or result.values if result else {}
                    series.append(scores.get(name, np.nan))
                if single:
                    axes.bar(number, series[0], color=colours[number], label=name)
                else:
                    axes.plot(centres, series, color=colours[number], label=name, linewidth=1.4)
            if panel.person is not None and not single:
                for turn in self.turns:
                    if turn["person"] == panel.person:
                        axes.axvspan(turn["start"], turn["end"], color="0.6", alpha=0.35, lw=0)
            axes.set_title(panel.title, fontsize=9, loc="left")
            axes.set_ylabel("value" if self.kind == "regression" else "probability")
            if self.kind != "regression":
                axes.set_ylim(0, 1)
            axes.grid(alpha=0.3)
        if strip:
            self._draw_turns(axes_list[-1])
        if single:
            only = self.windows[0]
            axes_list[-1].set_xticks(range(len(self.labels)), self.labels)
            span = f"{only.start:g}-{only.end:.2f} s"
            axes_list[-1].set_xlabel(f"one window ({span}): the clip is shorter than two windows")
        else:
            axes_list[-1].set_xlabel("time (s), window centres")
        handles, names = axes_list[0].get_legend_handles_labels()
        # Below the panels: above them it would run into the title.
        figure.legend(handles, names, loc="outside lower center", ncol=len(self.labels))
        figure.suptitle(
            f"{Path(self.source).name}: window {self.window:g} s, hop {self.hop:g} s", fontsize=10
        )
        return figure

    def _draw_turns(self, axes: Axes) -> None:
        """Who speaks in each second: a row per person, and one for the seconds with speech
        that no face can be said to speak (unclear, lips not visible, a voice off-screen)."""
        rows = [f"person {p['person']}" for p in self.people] + ["speech, unclear who"]
        for turn in self.turns:
            span = [(turn["start"], turn["end"] - turn["start"])]
            if turn["person"] is not None:
                axes.broken_barh(span, (turn["person"] - 0.4, 0.8), color="0.35")
            elif turn["status"] != SILENCE:
                # Hatched grey, not a colour: the class lines above own the colours.
                unclear = (len(rows) - 1.4, 0.8)
                axes.broken_barh(span, unclear, facecolor="0.85", edgecolor="0.45", hatch="//")
        axes.set_yticks(range(len(rows)), rows, fontsize=8)
        axes.set_ylim(len(rows) - 0.5, -0.5)
        axes.set_title("who speaks (blank: nobody speaks)", fontsize=9, loc="left")

    def write(self, directory: str | Path, name: str | None = None) -> dict[str, Path]:
        """``<name>.timeline.csv``, ``.json`` and ``.png`` in ``directory``; ``name`` defaults
        to the file's name with its extension (``talk.mp4`` and ``talk.wav`` stay apart)."""
        directory = Path(directory)
        name = name or Path(self.source).name
        rows = self.rows()
        table = csv_text(rows, None if rows else ["start", "end", "path"])
        picture = io.BytesIO()
        self.figure().savefig(picture, format="png", dpi=100)
        return {
            "csv": write_text_atomically(directory / f"{name}.timeline.csv", table),
            "json": write_text_atomically(
                directory / f"{name}.timeline.json", json.dumps(self.to_dict(), indent=1)
            ),
            "png": write_atomically(
                directory / f"{name}.timeline.png", lambda h: h.write(picture.getvalue())
            ),
        }


def timeline_of(
    path: Path,
    window: float,
    hop: float,
    windows: Iterable[tuple[FileFeatures, dict[str, PathPrediction], dict[int, PathPrediction]]],
    task: TaskConfig,
    progress: bool = True,
    list_alone: bool = False,
) -> Timeline:
    """The timeline of ``path`` from its answered ``windows`` (``window`` seconds, one every
    ``hop`` seconds; read lazily, after the window and hop are checked), each with its
    persons' faces' answers (by track); persons are shown when there are several (or, with
    ``list_alone``, one)."""
    if not (window > 0 and hop > 0):
        raise ConfigError(f"timeline: window and hop must be above 0 s, not {window} and {hop}")
    duration = probe(path).duration or 0.0
    expected = max(1, math.floor(max(duration - window, 0.0) / hop + 1e-9) + 1)
    rows: list[TimelineWindow] = []
    notes: list[str] = []
    everyone = People()
    for features, paths, faces in tqdm(
        windows, total=expected, desc="timeline", unit="window", disable=not progress
    ):
        end = features.start + (features.duration or 0.0)
        rows.append(TimelineWindow(features.start, end, paths, faces))
        notes.extend(n for n in features.notes if n not in notes)
        everyone.add(features, {})
    timeline = Timeline(
        source=str(path),
        duration=duration or (rows[-1].end if rows else 0.0),
        window=window,
        hop=hop,
        labels=task.labels,
        kind=task.kind,
        windows=rows,
        notes=notes,
    )
    found = everyone.listed(list_alone)
    number = numbers(found)
    timeline.people = [{"person": n, "where": where(p.centre)} for n, p in enumerate(found)]
    timeline.turns = everyone.turn_rows(found) if found else []
    for row in rows:
        row.people = {number[t]: a for t, a in row.people.items() if t in number}
    return timeline
