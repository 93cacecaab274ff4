"""CMU-MOSEI: sentence segments of 3,228 YouTube monologues, each rated for sentiment on
[-3, 3] and for six emotions' intensities on [0, 3] (several can be present at once).

The release layout, anywhere under the corpus folder:

- full videos ``<video id>.mp4`` (``Raw/Videos/Full/Combined``); a ``<video id>.wav``
  (``Raw/Audio/Full/WAV_16000``), when there is one, feeds the audio instead of the video;
- segmented transcripts ``<video id>.txt`` (``Raw/Transcript/Segmented/Combined``), a line per
  segment: ``<video>___<segment>___<start>___<end>___<text>``: the segments' numbers and words;
- the labels (``label_file:``): ``CMU_MOSEI_Labels.csd``, the SDK's HDF5 computational sequence
  ("All Labels": per video, intervals (start, end) and seven values in the order sentiment,
  happiness, sadness, anger, surprise, disgust, fear; reading it needs h5py:
  ``pip install 'vavl[mosei]'``), or a CSV export of it with the columns ``video, start, end``
  and the seven values by name (optional: ``segment``, ``text``, ``split``).

Each labelled interval is one clip: that span of its video (vavl reads only the span). The
partition is the SDK's standard train/valid/test folds of video ids (shipped with vavl, in
``mosei_folds.json``), or a CSV's ``split`` column; segments of videos in neither are left out.
MOSEI has no speaker ids: a video (one YouTuber's monologue) is its own speaker, and the
standard folds keep each video in one split.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from vavl.corpora.base import Clip, Corpus, Split, media_by_stem, require_folder, split_name
from vavl.errors import DataError
from vavl.spans import Span
from vavl.types import Modality

EMOTIONS = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
VALUES = ("sentiment", *EMOTIONS)  # the order of the seven values in "All Labels"
TRANSCRIPT_SEPARATOR = "___"
SAME_TIME = 0.011  # seconds: a label's interval and its transcript line name one segment

logger = logging.getLogger("vavl")


@dataclass(frozen=True)
class Segment:
    """One labelled interval of a video."""

    video: str
    start: float
    end: float
    values: dict[str, float]  # sentiment and the six intensities
    number: str | None = None  # the transcript's segment number
    text: str | None = None
    split: Split | None = None


def read_csd_labels(path: Path) -> list[Segment]:
    """The labelled intervals of an SDK computational sequence (HDF5)."""
    try:
        import h5py
    except ImportError:
        raise DataError(
            f"{path}: reading CMU-MOSEI's .csd labels needs h5py (pip install 'vavl[mosei]'), "
            "or give a CSV export of them"
        ) from None
    segments = []
    try:
        with h5py.File(path, "r") as handle:
            data = handle[next(iter(handle.keys()))]["data"]
            for video in data:
                values = np.asarray(data[video]["features"], np.float64)
                intervals = np.asarray(data[video]["intervals"], np.float64)
                if len(values) != len(intervals):
                    raise DataError(
                        f"{path}: video {video} has {len(intervals)} intervals but "
                        f"{len(values)} label rows"
                    )
                if values.ndim != 2 or values.shape[1] != len(VALUES):
                    raise DataError(
                        f"{path}: video {video} has labels of shape {values.shape}; CMU-MOSEI's "
                        f"have {len(VALUES)} values ({', '.join(VALUES)})"
                    )
                for (start, end), row in zip(intervals, values, strict=True):
                    named = dict(zip(VALUES, map(float, row), strict=True))
                    segments.append(Segment(video, float(start), float(end), named))
    except (OSError, KeyError, StopIteration) as error:
        raise DataError(f"{path}: not a CMU-MOSEI label sequence ({error})") from None
    return segments


def read_csv_labels(path: Path) -> list[Segment]:
    """The labelled intervals of a CSV export: video, start, end and the seven values."""
    needed = {"video", "start", "end", *VALUES}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = needed - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        segments = []
        for number, row in enumerate(reader, start=2):
            try:
                times = float(row["start"]), float(row["end"])
                values = {name: float(row[name]) for name in VALUES}
            except ValueError:
                raise DataError(f"{path}:{number}: times and labels must be numbers") from None
            split = split_name(row["split"], f"{path}:{number}") if row.get("split") else None
            segments.append(
                Segment(
                    row["video"], *times, values, row.get("segment") or None,
                    row.get("text") or None, split,
                )
            )  # fmt: skip
    return segments


def read_transcripts(root: Path) -> dict[str, list[tuple[str, float, float, str]]]:
    """Every segmented transcript line under ``root``: video -> (segment, start, end, text)."""
    found: dict[str, list[tuple[str, float, float, str]]] = defaultdict(list)
    for path in sorted(root.rglob("*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(TRANSCRIPT_SEPARATOR, 4)
            if len(parts) != 5:
                continue  # not a segmented transcript's line
            video, segment, start, end, text = parts
            try:
                found[video].append((segment, float(start), float(end), text.strip()))
            except ValueError:
                continue
    return found


def standard_folds() -> dict[str, Split]:
    """The SDK's standard partition of CMU-MOSEI's videos: video id -> split."""
    text = resources.files("vavl.corpora").joinpath("mosei_folds.json").read_text()
    folds = json.loads(text)
    return {video: split for split in ("train", "dev", "test") for video in folds[split]}


def _named(
    segment: Segment, transcripts: dict[str, list[tuple[str, float, float, str]]]
) -> Segment:
    """The segment with its number and words from the transcript line of the same times."""
    if segment.number is not None:
        return segment
    for number, start, end, text in transcripts.get(segment.video, ()):
        # Times before 0 count as 0 (a CSV export may have moved them already).
        same_start = abs(max(start, 0.0) - max(segment.start, 0.0)) < SAME_TIME
        if same_start and abs(end - segment.end) < SAME_TIME:
            return replace(segment, number=number, text=segment.text or text)
    return segment


def _from_zero(segments: list[Segment], name: str) -> list[Segment]:
    """The segments with a start before 0 (the SDK's labels have a few, a fraction of a second
    early) starting at 0 instead."""
    early = sum(segment.start < 0 for segment in segments)
    if early:
        logger.info("%s: %d segments start before 0 s; they start at 0 s", name, early)
    return [replace(s, start=0.0) if s.start < 0 else s for s in segments]


def load_mosei(root: Path, name: str, label_file: Path | None) -> Corpus:
    require_folder(root, "CMU-MOSEI", "corpus")
    if label_file is None:
        found = sorted(root.rglob("CMU_MOSEI_Labels.csd"))
        if not found:
            raise DataError(
                f"{root}: no CMU_MOSEI_Labels.csd here; name the labels (.csd or CSV) with "
                "label_file:"
            )
        label_file = found[0]
    if not label_file.is_file():
        raise DataError(f"{label_file}: CMU-MOSEI label file not found")
    csv_export = label_file.suffix.lower() == ".csv"
    segments = read_csv_labels(label_file) if csv_export else read_csd_labels(label_file)
    videos, audio = media_by_stem(root, [".mp4"]), media_by_stem(root, [".wav"])
    if not videos and not audio:
        raise DataError(
            f"{root}: no CMU-MOSEI media (<video id>.mp4, .wav) found under this folder"
        )
    transcripts = read_transcripts(root)
    folds = standard_folds()
    given = all(segment.split is not None for segment in segments)
    clips, partition, left_out = [], {}, Counter[str]()
    seen: set[tuple[str, float, float]] = set()
    named = [_named(segment, transcripts) for segment in segments]
    for segment in _from_zero(named, name):
        if (segment.video, segment.start, segment.end) in seen:
            left_out["a second label row of the same interval"] += 1
            continue
        seen.add((segment.video, segment.start, segment.end))
        media: dict[Modality, Path] = {}
        if segment.video in videos:
            media = {"audio": videos[segment.video], "visual": videos[segment.video]}
        if segment.video in audio:
            media["audio"] = audio[segment.video]
        split = segment.split if given else folds.get(segment.video)
        if not media or split is None:
            left_out["video not in this copy" if not media else "video in no standard fold"] += 1
            continue
        label = segment.number or f"{segment.start:.2f}-{segment.end:.2f}"
        clip = Clip(
            id=f"{name}/{segment.video}_{label}",
            corpus=name,
            speaker=f"{name}:{segment.video}",
            media=media,
            attributes=segment.values,
            metadata={"text": segment.text} if segment.text else {},
            span=Span(segment.start, segment.end),
        )
        clips.append(clip)
        partition[clip.id] = split
    for reason, count in left_out.items():
        logger.info("%s: %d labelled segments left out (%s)", name, count, reason)
    if not clips:
        raise DataError(f"{root}: none of {label_file.name}'s segments has its video here")
    return Corpus(name, clips, [partition])
