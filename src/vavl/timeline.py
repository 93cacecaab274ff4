"""Emotion over time for long media: sliding windows, every path, bounded memory.

The file is read in blocks (30 s by default) that overlap by one window, so memory depends on the
block length, not on the file's: a one-hour interview needs no more than a 30-second clip. Each
block goes through the same pipeline as a whole clip (its main face is tracked within the block),
then every window that starts in the block gets a prediction from each path its frames allow:
windows without a face have no visual path, windows in silence no audio path.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from vavl.config import PATHS
from vavl.data import Item
from vavl.errors import ConfigError
from vavl.features.pipeline import SILENCE_RMS, FileFeatures, ModalityFeatures
from vavl.files import write_atomically, write_text_atomically
from vavl.media import SAMPLE_RATE, VideoReader, iter_audio, probe
from vavl.predict import PathPrediction, Predictor

WINDOW_BATCH = 32


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
    kind: str  # classification or regression
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
            "windows": [asdict(window) for window in self.windows],
        }

    def figure(self) -> Figure:
        """One panel per path: each class's probability (or each attribute) over time."""
        paths = [p for p in PATHS if any(p in w.paths for w in self.windows)] or ["audio"]
        figure = Figure(figsize=(10, 2.2 * len(paths)))
        axes_list = np.atleast_1d(figure.subplots(len(paths), 1, sharex=True))
        centres = np.array([(w.start + w.end) / 2 for w in self.windows])
        for axes, path in zip(axes_list, paths, strict=True):
            for name in self.labels:
                series = []
                for window in self.windows:
                    result = window.paths.get(path)
                    scores = result.probabilities or result.values if result else {}
                    series.append(scores.get(name, np.nan))
                axes.plot(centres, series, label=name, linewidth=1.2)
            axes.set_ylabel(path, fontsize=9)
            if self.kind == "classification":
                axes.set_ylim(0, 1)
        axes_list[0].legend(
            fontsize=7, ncol=len(self.labels), loc="upper left", bbox_to_anchor=(0, 1.35)
        )
        axes_list[-1].set_xlabel("time (s)")
        figure.suptitle(
            f"{Path(self.source).name}: window {self.window:g} s, hop {self.hop:g} s",
            fontsize=10,
            y=1.02,
        )
        return figure

    def write(self, directory: str | Path) -> dict[str, Path]:
        """``<stem>.timeline.csv``, ``.json`` and ``.png`` in ``directory``."""
        directory = Path(directory)
        stem = Path(self.source).stem
        rows = self.rows()
        buffer = io.StringIO()
        fields = list(dict.fromkeys(key for row in rows for key in row)) or ["start", "end", "path"]
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        picture = io.BytesIO()
        self.figure().savefig(picture, format="png", dpi=100, bbox_inches="tight")
        return {
            "csv": write_text_atomically(directory / f"{stem}.timeline.csv", buffer.getvalue()),
            "json": write_text_atomically(
                directory / f"{stem}.timeline.json", json.dumps(self.to_dict(), indent=1)
            ),
            "png": write_atomically(
                directory / f"{stem}.timeline.png", lambda h: h.write(picture.getvalue())
            ),
        }


def _window(features: ModalityFeatures | None, start: float, end: float) -> tuple[Any, Any]:
    if features is None:
        return None, None
    inside = (features.times >= start) & (features.times < end)
    if not (inside & features.valid).any():
        return None, None
    return features.features[inside], features.valid[inside]


def predict_timeline(
    predictor: Predictor,
    path: str | Path,
    window: float = 3.0,
    hop: float = 1.0,
    block: float = 30.0,
    progress: bool = True,
) -> Timeline:
    """Predictions of every ``window``-second window, one every ``hop`` seconds."""
    if window <= 0 or hop <= 0 or block < hop:
        raise ConfigError("timeline: window and hop must be positive and block at least a hop")
    path = Path(path)
    info = probe(path)
    duration = info.duration or 0.0
    starts = np.arange(0.0, max(duration - window, 0.0) + 1e-9, hop) if duration else np.zeros(1)
    block = max(block, hop) // hop * hop  # whole hops, so that windows fall in exactly one block
    pipeline = predictor.pipeline
    windows: list[TimelineWindow] = []
    notes: list[str] = []
    blocks = max(1, math.ceil(len(starts) * hop / block))
    for index in tqdm(range(blocks), desc="timeline", unit="block", disable=not progress):
        first, last = index * block, (index + 1) * block
        block_starts = starts[(starts >= first - 1e-9) & (starts < last - 1e-9)]
        if not len(block_starts):
            continue
        end = float(block_starts[-1]) + window
        features = FileFeatures(path=path, duration=end - first)
        waveform = None
        if pipeline.audio is not None and info.audio is not None:
            chunks = list(iter_audio(path, pipeline.audio.chunk_seconds, start=first, end=end))
            waveform = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            if len(waveform):
                audio = pipeline.audio_features(iter([waveform]), features)
                if audio is not None:
                    audio.times += first
                features.audio = audio
        if pipeline.visual is not None and info.video is not None:
            rate, side = pipeline.visual.frame_rate, pipeline.faces.max_side
            frames = partial(VideoReader, path, fps=rate, max_side=side, start=first, end=end)
            features.visual = pipeline.visual_features(frames, features)
        notes += [n for n in features.notes if n not in notes]
        items = []
        for start in block_starts:
            stop = float(start) + window
            audio, _ = _window(features.audio, start, stop)
            if audio is not None and waveform is not None:
                segment = waveform[
                    round((start - first) * SAMPLE_RATE) : round((stop - first) * SAMPLE_RATE)
                ]
                if (
                    not len(segment)
                    or np.sqrt(np.mean(np.square(segment, dtype=np.float64))) < SILENCE_RMS
                ):
                    audio = None  # silence in this window
            visual, valid = _window(features.visual, start, stop)
            items.append(Item(id=f"{start:.3f}", audio=audio, visual=visual, visual_valid=valid))
        for offset in range(0, len(items), WINDOW_BATCH):
            batch = items[offset : offset + WINDOW_BATCH]
            for item, paths in zip(batch, predictor.predict_items(batch), strict=True):
                start = float(item.id)
                windows.append(
                    TimelineWindow(start, min(start + window, duration or start + window), paths)
                )
    return Timeline(
        source=str(path),
        duration=duration,
        window=window,
        hop=hop,
        labels=predictor.task.labels,
        kind=predictor.task.kind,
        windows=windows,
        notes=notes,
    )
