"""What every corpus adapter produces: clips with media paths, speakers, labels and partitions.

A :class:`Clip` names the media file that feeds each modality (CREMA-D's audio comes from its WAV
files, its video from the FLV files), its speaker (prefixed with the corpus name, so that corpora
can be mixed without speaker clashes) and its label in the corpus's own words. Label maps turn
those words into the task's classes; partitions say which split each clip is in.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from vavl.errors import DataError
from vavl.spans import WHOLE, MediaSpan, Span
from vavl.types import Modality

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, Split, Split] = ("train", "dev", "test")
# The words corpora use for their partitions (FER+ says "valid", Hugging Face "validation").
SPLIT_NAMES = {
    "train": "train",
    **dict.fromkeys(("dev", "development", "valid", "validation", "val"), "dev"),
    "test": "test",
}

logger = logging.getLogger("vavl")


@dataclass(frozen=True)
class Clip:
    id: str  # unique across corpora: "<corpus>/<name>"
    corpus: str
    speaker: str  # "<corpus>:<speaker>"
    media: Mapping[Modality, Path]  # the file that feeds each modality the clip has
    label: str | None = None  # a class, in the corpus's words
    soft_label: Mapping[str, float] | None = None  # class -> share of annotators
    attributes: Mapping[str, float] | None = None  # e.g. arousal, valence, dominance
    metadata: Mapping[str, Any] = field(default_factory=dict)
    span: Span = WHOLE  # the part of its media files the clip is (a segment of a recording)

    def source(self, modality: Modality) -> MediaSpan:
        """What feeds ``modality`` (the clip must have it): its file, or its span of the file."""
        return MediaSpan(self.media[modality], self.span)


@dataclass
class Corpus:
    """Clips of one corpus, and the partitions its authors defined (clip id -> split), if any."""

    name: str
    clips: list[Clip]
    partitions: list[dict[str, Split]] | None = None

    def speakers(self) -> list[str]:
        return sorted({clip.speaker for clip in self.clips})


def split_name(value: str, source: str) -> Split:
    try:
        return SPLIT_NAMES[value.strip().lower()]  # type: ignore[return-value]
    except KeyError:
        raise DataError(
            f"{source}: unknown split '{value}' (use train, dev (or valid) or test)"
        ) from None


@dataclass
class AuthorsPartitions:
    """The VAVL authors' partition CSVs: one row per clip (FileName, labels, SpkrID, Split_Set)."""

    rows: dict[str, dict[str, str]]  # clip name (no extension) -> its row in the first file
    partitions: list[dict[str, Split]]  # per file: clip name -> split
    speakers: dict[str, str]  # clip name -> SpkrID


def read_authors_partitions(
    folder: Path, pattern: str, required: set[str], allowed: set[str] | None = None
) -> AuthorsPartitions:
    """Read every ``pattern`` file of ``folder``; columns are checked before any row is used."""
    files = sorted(folder.glob(pattern))
    if not files:
        raise DataError(f"{folder}: no {pattern} partition files here")
    result = AuthorsPartitions({}, [], {})
    needed = required | {"FileName", "SpkrID", "Split_Set"}
    for path in files:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            if allowed is not None and columns - allowed - needed:
                raise DataError(
                    f"{path}: unknown columns {sorted(columns - allowed - needed)} "
                    f"(expected {', '.join(sorted(needed | allowed))})"
                )
            if needed - columns:
                raise DataError(f"{path}: missing columns {sorted(needed - columns)}")
            partition: dict[str, Split] = {}
            for row in reader:
                clip = Path(row["FileName"]).stem
                partition[clip] = split_name(row["Split_Set"], str(path))
                result.rows.setdefault(clip, row)
                result.speakers[clip] = row["SpkrID"]
        result.partitions.append(partition)
    return result


def require_folder(path: Path, corpus: str, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {corpus} {what} folder not found")
    return path


def media_by_stem(folder: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    """Files under ``folder`` (recursively) with one of ``suffixes``, by file stem."""
    wanted = {suffix.lower() for suffix in suffixes}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in wanted:
            found.setdefault(path.stem, path)
    return found


def map_labels(
    clips: Sequence[Clip], label_map: Mapping[str, str | None], classes: Sequence[str]
) -> tuple[list[Clip], Counter[str]]:
    """Clips relabelled into ``classes`` (pure). Labels mapped to None are dropped, and counted.

    A label absent from ``label_map`` keeps its name; it must then be one of ``classes``.
    """
    kept, dropped = [], Counter[str]()
    for clip in clips:
        if clip.label is None:
            kept.append(clip)
            continue
        target = label_map.get(clip.label, clip.label)
        if target is None:
            dropped[clip.label] += 1
            continue
        if target not in classes:
            raise DataError(
                f"{clip.corpus}: clip '{clip.id}' has label '{clip.label}', which is not one of "
                f"the task's labels ({', '.join(classes)}); map it with data.corpora[].label_map"
            )
        soft = None
        if clip.soft_label is not None:
            merged: dict[str, float] = defaultdict(float)
            for name, share in clip.soft_label.items():
                mapped = label_map.get(name, name)
                if mapped is not None:
                    merged[mapped] += share
            soft = dict(merged)
        kept.append(replace(clip, label=target, soft_label=soft))
    return kept, dropped


def speaker_folds(speakers: Sequence[str], folds: int, seed: int) -> list[dict[str, Split]]:
    """Seeded speaker-independent folds: fold k tests group k, develops on group k+1, trains on
    the rest. Every speaker is tested exactly once."""
    unique = sorted(set(speakers))
    if len(unique) < 3:
        raise DataError(f"speaker-independent folds need at least 3 speakers, found {len(unique)}")
    folds = min(folds, len(unique))
    shuffled = unique[:]
    random.Random(seed).shuffle(shuffled)
    groups = [shuffled[index::folds] for index in range(folds)]
    assignments = []
    for fold in range(folds):
        split: dict[str, Split] = {speaker: "train" for speaker in unique}
        split |= dict.fromkeys(groups[(fold + 1) % folds], "dev")
        split |= dict.fromkeys(groups[fold], "test")
        assignments.append(split)
    return assignments


def corpus_folds(
    corpora: Sequence[Corpus], left_out: Sequence[str], dev_share: float, seed: int
) -> list[dict[str, Split]]:
    """Cross-corpus folds: fold k tests every clip of one corpus (``left_out``, default all)
    and trains on the others, holding a seeded ``dev_share`` of each one's speakers for
    development (of its clips, for a corpus whose clips are their own speakers)."""
    names = [corpus.name for corpus in corpora]
    unknown = sorted(set(left_out) - set(names))
    if unknown:
        raise DataError(
            f"split.corpora names corpora the data does not have: {', '.join(unknown)} "
            f"(they are: {', '.join(names)})"
        )
    if len(corpora) < 2:
        raise DataError("split.method 'corpora' needs at least two corpora with role 'all'")
    development = set(held_out_speakers(corpora, (dev_share,), seed)[0])
    folds = []
    for name in left_out or names:
        fold: dict[str, Split] = {}
        for corpus in corpora:
            for clip in corpus.clips:
                held: Split = "dev" if clip.speaker in development else "train"
                fold[clip.id] = "test" if corpus.name == name else held
        folds.append(fold)
    return folds


def held_out_speakers(
    corpora: Sequence[Corpus], shares: Sequence[float], seed: int
) -> list[list[str]]:
    """For each share, that share of every corpus's speakers (seeded, rounded; disjoint)."""
    chosen: list[list[str]] = [[] for _ in shares]
    for corpus in corpora:
        speakers = corpus.speakers()
        random.Random(f"{seed}:{corpus.name}").shuffle(speakers)
        start = 0
        for group, share in zip(chosen, shares, strict=True):
            count = round(share * len(speakers))
            group += speakers[start : start + count]
            start += count
    return chosen


def share_split(
    corpora: Sequence[Corpus], dev_share: float, test_share: float, seed: int
) -> dict[str, Split]:
    """One fold: a seeded share of every corpus's speakers develops, another tests, the rest
    trains (stratified by corpus, so that every corpus is in every split)."""
    dev, test = (set(group) for group in held_out_speakers(corpora, (dev_share, test_share), seed))
    return {
        clip.id: "test" if clip.speaker in test else "dev" if clip.speaker in dev else "train"
        for corpus in corpora
        for clip in corpus.clips
    }


def check_clips(clips: Sequence[Clip], split: Mapping[str, Split] | None = None) -> None:
    """Refuse, before any training, duplicate ids, missing media and speakers across splits."""
    seen: set[str] = set()
    for clip in clips:
        if clip.id in seen:
            raise DataError(f"{clip.corpus}: clip id '{clip.id}' appears twice")
        seen.add(clip.id)
        if not clip.media:
            raise DataError(f"{clip.corpus}: clip '{clip.id}' has no media file")
        for path in clip.media.values():
            if not path.is_file():
                raise DataError(f"{path}: media file of clip '{clip.id}' ({clip.corpus}) not found")
    if split is None:
        return
    splits_of: dict[str, set[Split]] = defaultdict(set)
    for clip in clips:
        if clip.id in split:
            splits_of[clip.speaker].add(split[clip.id])
    shared = sorted(s for s, found in splits_of.items() if {"train", "dev"} <= found)
    if shared:
        logger.warning(
            "%d speaker(s) in both train and dev (%s%s): development figures will be optimistic",
            len(shared),
            ", ".join(shared[:3]),
            ", ..." if len(shared) > 3 else "",
        )
    for speaker, found in sorted(splits_of.items()):
        if "test" in found and len(found) > 1:
            others = ", ".join(sorted(found - {"test"}))
            raise DataError(
                f"speaker '{speaker}' is in both test and {others}: the split is not "
                "speaker-independent"
            )
