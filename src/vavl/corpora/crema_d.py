"""CREMA-D: 7,442 acted clips of 91 actors, 6 emotions (Cao et al., 2014).

Official layout: ``VideoFlash/*.flv`` (video with audio), ``AudioWAV/*.wav`` (``AudioMP3/*.mp3`` is
used when the WAVs are absent) and ``processedResults/tabulatedVotes.csv``. File names are
``<actor>_<sentence>_<emotion>_<level>``; the emotion in the name is the *intended* one.

``tabulatedVotes.csv`` has three rows per clip, one per rating condition (its first column is
100000 x condition + clip number: 1 voice only, 2 face only, 3 audio-visual). A vote-based label is
the class with the most votes in the chosen rows (ties are dropped) and the vote shares are kept
as a soft label. The VAVL authors' five partitions (``label_consensus_{1..5}.csv``) carry their own
smoothed consensus labels for 5,820 clips and speaker-independent splits (63/14/14 actors).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

from vavl.corpora.base import (
    Clip,
    Corpus,
    Split,
    media_by_stem,
    read_authors_partitions,
    require_folder,
)
from vavl.errors import DataError
from vavl.types import CREMA_D_EMOTIONS, Modality

CremaLabels = Literal[
    "intended", "votes-audio", "votes-video", "votes-audiovisual", "votes-all", "authors"
]
EMOTION_CODES = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
VOTE_COLUMNS = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
RATING_CONDITIONS = {1: "audio", 2: "video", 3: "audiovisual"}


def parse_name(stem: str) -> tuple[str, str, str, str]:
    """(actor, sentence, emotion, level) of ``1001_DFA_ANG_XX``."""
    parts = stem.split("_")
    if len(parts) != 4 or parts[2] not in EMOTION_CODES:
        raise DataError(
            f"'{stem}': not a CREMA-D file name "
            "(<actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<level>)"
        )
    actor, sentence, code, level = parts
    return actor, sentence, EMOTION_CODES[code], level


def read_votes(path: Path) -> dict[str, dict[str, Counter[str]]]:
    """Vote counts per clip and rating condition (audio, video, audiovisual)."""
    if not path.is_file():
        raise DataError(
            f"{path}: CREMA-D vote table not found (processedResults/tabulatedVotes.csv)"
        )
    votes: dict[str, dict[str, Counter[str]]] = defaultdict(dict)
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            condition = RATING_CONDITIONS.get(int(row[""]) // 100000)
            if condition is None:
                raise DataError(f"{path}: unknown rating condition in row '{row['']}'")
            votes[row["fileName"]][condition] = Counter(
                {emotion: int(row[column]) for column, emotion in VOTE_COLUMNS.items()}
            )
    return votes


def vote_label(
    by_condition: dict[str, Counter[str]], conditions: tuple[str, ...]
) -> tuple[str | None, dict[str, float]]:
    """The majority class over ``conditions`` (None on a tie) and the vote shares."""
    total = Counter[str]()
    for condition in conditions:
        total.update(by_condition.get(condition, Counter()))
    count = sum(total.values())
    shares = {emotion: total[emotion] / count if count else 0.0 for emotion in CREMA_D_EMOTIONS}
    ranked = total.most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None, shares
    return ranked[0][0], shares


def read_partitions(
    folder: Path,
) -> tuple[dict[str, dict[str, float]], list[dict[str, Split]], dict[str, str]]:
    """The authors' consensus labels (clip -> soft label), partitions and speakers by clip."""
    found = read_authors_partitions(
        folder, "label_consensus_*.csv", set(CREMA_D_EMOTIONS), allowed={"Gender"}
    )
    labels = {
        clip: {emotion: float(row[emotion]) for emotion in CREMA_D_EMOTIONS}
        for clip, row in found.rows.items()
    }
    return labels, found.partitions, found.speakers


def load_crema_d(
    root: Path,
    name: str = "crema-d",
    labels: CremaLabels = "intended",
    votes: Path | None = None,
    partitions: Path | None = None,
) -> Corpus:
    require_folder(root, "CREMA-D", "corpus")
    videos = media_by_stem(root / "VideoFlash", [".flv"]) if (root / "VideoFlash").is_dir() else {}
    audio: dict[str, Path] = {}
    for folder, suffix in (("AudioWAV", ".wav"), ("AudioMP3", ".mp3")):
        if (root / folder).is_dir():
            audio = media_by_stem(root / folder, [suffix])
            break
    if not videos and not audio:
        raise DataError(
            f"{root}: not a CREMA-D folder: expected VideoFlash/*.flv and/or AudioWAV/*.wav "
            "(the official release layout)"
        )
    authors = read_partitions(partitions) if partitions is not None else None
    if labels == "authors" and authors is None:
        raise DataError("CREMA-D labels 'authors' need the authors' partition folder (partitions:)")
    vote_table = (
        read_votes(votes or root / "processedResults" / "tabulatedVotes.csv")
        if labels.startswith("votes-")
        else None
    )
    conditions = tuple(RATING_CONDITIONS.values()) if labels == "votes-all" else (labels[6:],)
    clips = []
    for stem in sorted(set(videos) | set(audio)):
        actor, sentence, intended, level = parse_name(stem)
        media: dict[Modality, Path] = {}
        if stem in audio or stem in videos:
            media["audio"] = audio.get(stem) or videos[stem]
        if stem in videos:
            media["visual"] = videos[stem]
        soft: dict[str, float] | None = None
        label: str | None = intended
        if authors is not None:
            if stem not in authors[0]:
                continue  # outside the authors' labelled set
            if labels == "authors":
                soft = authors[0][stem]
                label = max(soft, key=soft.__getitem__)
        if vote_table is not None:
            if stem not in vote_table:
                raise DataError(f"{root}: clip '{stem}' has no votes in the vote table")
            label, soft = vote_label(vote_table[stem], conditions)
            if label is None:
                continue  # a tie: no majority, dropped
        clips.append(
            Clip(
                id=f"{name}/{stem}",
                corpus=name,
                speaker=f"{name}:{actor}",
                media=media,
                label=label,
                soft_label=soft,
                metadata={"sentence": sentence, "level": level, "intended": intended},
            )
        )
    corpus_partitions = None
    if authors is not None:
        corpus_partitions = [
            {f"{name}/{clip}": split for clip, split in partition.items()}
            for partition in authors[1]
        ]
    return Corpus(name, clips, corpus_partitions)
