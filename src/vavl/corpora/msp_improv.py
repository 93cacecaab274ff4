"""MSP-IMPROV: 8,385 clips of 6 sessions, arousal / valence / dominance on a 1-5 scale.

Labels and the session-independent partitions come from the VAVL authors' CSVs
(``labels_consensus_{1..5}.csv``: FileName, EmoAct, EmoVal, EmoDom, SpkrID = session, Gender,
Split_Set). Media files are found anywhere under the corpus folder by their name (audio .wav,
video .avi/.mp4). Attribute transforms are pure functions: the training split's range scales every
split. The released labels' arousal already runs the usual way (angry and happy clips rate
higher than sad and neutral ones), so nothing is reversed unless asked (``flip``); the
reference's ``6 - arousal`` is applied in place on every read, so its orientation alternates
between epochs, which vavl does not reproduce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vavl.corpora.base import (
    Clip,
    Corpus,
    Split,
    media_by_stem,
    read_authors_partitions,
    require_folder,
)
from vavl.errors import DataError
from vavl.types import Modality

ATTRIBUTE_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
SCALE = (1.0, 5.0)


def flip(value: float, scale: tuple[float, float] = SCALE) -> float:
    """The value on the reversed scale (6 - value on MSP-IMPROV's 1-5 scale)."""
    return scale[0] + scale[1] - value


def attribute_ranges(
    clips: Sequence[Clip], split: Mapping[str, Split]
) -> dict[str, tuple[float, float]]:
    """Minimum and maximum of each attribute over the training split only."""
    train = [clip.attributes for clip in clips if split.get(clip.id) == "train" and clip.attributes]
    if not train:
        raise DataError("no training clip with attributes to scale by")
    return {name: (min(a[name] for a in train), max(a[name] for a in train)) for name in train[0]}


def min_max_scaled(
    attributes: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Each attribute scaled to [0, 1] by the training range (values outside it stay outside)."""
    return {
        name: (value - ranges[name][0]) / max(ranges[name][1] - ranges[name][0], 1e-12)
        for name, value in attributes.items()
    }


def read_msp_partitions(
    folder: Path, flipped: Sequence[str] = ()
) -> tuple[dict[str, dict[str, float]], list[dict[str, Split]], dict[str, str]]:
    """Attributes by clip (with ``flipped`` attributes reversed), partitions, sessions by clip."""
    found = read_authors_partitions(
        folder, "labels_consensus_*.csv", set(ATTRIBUTE_COLUMNS.values())
    )
    attributes = {}
    for clip, row in found.rows.items():
        values = {name: float(row[column]) for name, column in ATTRIBUTE_COLUMNS.items()}
        attributes[clip] = {k: flip(v) if k in flipped else v for k, v in values.items()}
    return attributes, found.partitions, found.speakers


def load_msp_improv(
    root: Path,
    partitions: Path,
    name: str = "msp-improv",
    flipped: Sequence[str] = (),
) -> Corpus:
    require_folder(root, "MSP-IMPROV", "corpus")
    attributes, folds, sessions = read_msp_partitions(partitions, flipped)
    audio = media_by_stem(root, [".wav"])
    video = media_by_stem(root, [".avi", ".mp4"])
    if not audio and not video:
        raise DataError(f"{root}: no MSP-IMPROV media (.wav, .avi) found under this folder")
    clips = []
    for stem, values in sorted(attributes.items()):
        media: dict[Modality, Path] = {}
        if stem in audio:
            media["audio"] = audio[stem]
        if stem in video:
            media["visual"] = video[stem]
            media.setdefault("audio", video[stem])
        if not media:
            continue  # labelled but not in this copy of the corpus
        clips.append(
            Clip(
                id=f"{name}/{stem}",
                corpus=name,
                speaker=f"{name}:session{sessions[stem]}",
                media=media,
                attributes=values,
            )
        )
    renamed = [{f"{name}/{clip}": split for clip, split in fold.items()} for fold in folds]
    return Corpus(name, clips, renamed)
