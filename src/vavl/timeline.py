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
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from vavl.errors import ConfigError
from vavl.files import csv_text, write_atomically, write_text_atomically
from vavl.media import probe
from vavl.results import PathPrediction
from vavl.types import PATHS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vavl.config import TaskConfig
    from vavl.features.records import FileFeatures


@dataclass
class TimelineWindow:
    start: float  # seconds
    end: float
    paths: dict[str, PathPrediction] = field(default_factory=dict)


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

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for window in self.windows:
            for path, result in window.paths.items():
                row: dict[str, Any] = {
                    "start": round(window.start, 3),
                    "end": round(window.end, 3),
                    "path": path,
                    "label": result.label or "",
                }
                row |= {f"p_{c}": round(p, 5) for c, p in result.probabilities.items()}
                row |= {a: round(v, 5) for a, v in result.values.items()}
                rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration": self.duration,
            "window": self.window,
            "hop": self.hop,
            "labels": list(self.labels),
            "notes": self.notes,
            "windows": [
                {
                    "start": window.start,
                    "end": window.end,
                    "paths": {path: answer.to_dict() for path, answer in window.paths.items()},
                }
                for window in self.windows
            ],
        }

    def figure(self) -> Figure:
        """One panel per path: each class's probability (or each attribute) over time, as lines;
        a clip with a single window gets bars instead (a line needs two points)."""
        from matplotlib.figure import Figure  # only when drawing: it takes 0.4 s to import

        paths = [p for p in PATHS if any(p in w.paths for w in self.windows)] or ["audio"]
        figure = Figure(figsize=(10, 2.2 * len(paths) + 0.6), layout="constrained")
        axes_list = np.atleast_1d(figure.subplots(len(paths), 1, sharex=True))
        centres = np.array([(w.start + w.end) / 2 for w in self.windows])
        colours = [f"C{i}" for i in range(len(self.labels))]
        single = len(self.windows) == 1
        for axes, path in zip(axes_list, paths, strict=True):
            for number, name in enumerate(self.labels):
                series = []
                for window in self.windows:
                    result = window.paths.get(path)
                    scores = result.probabilities or result.values if result else {}
                    series.append(scores.get(name, np.nan))
                if single:
                    axes.bar(number, series[0], color=colours[number], label=name)
                else:
                    axes.plot(centres, series, color=colours[number], label=name, linewidth=1.4)
            axes.set_title(path, fontsize=9, loc="left")
            axes.set_ylabel("value" if self.kind == "regression" else "probability")
            if self.kind != "regression":
                axes.set_ylim(0, 1)
            axes.grid(alpha=0.3)
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
    windows: Iterable[tuple[FileFeatures, dict[str, PathPrediction]]],
    task: TaskConfig,
    progress: bool = True,
) -> Timeline:
    """The timeline of ``path`` from its answered ``windows`` (``window`` seconds, one every
    ``hop`` seconds; read lazily, after the window and hop are checked)."""
    if not (window > 0 and hop > 0):
        raise ConfigError(f"timeline: window and hop must be above 0 s, not {window} and {hop}")
    duration = probe(path).duration or 0.0
    expected = max(1, math.floor(max(duration - window, 0.0) / hop + 1e-9) + 1)
    rows: list[TimelineWindow] = []
    notes: list[str] = []
    for features, paths in tqdm(
        windows, total=expected, desc="timeline", unit="window", disable=not progress
    ):
        end = features.start + (features.duration or 0.0)
        rows.append(TimelineWindow(features.start, end, paths))
        notes.extend(n for n in features.notes if n not in notes)
    return Timeline(
        source=str(path),
        duration=duration or (rows[-1].end if rows else 0.0),
        window=window,
        hop=hop,
        labels=task.labels,
        kind=task.kind,
        windows=rows,
        notes=notes,
    )
