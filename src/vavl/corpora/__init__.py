"""Corpora: a user's copy of CREMA-D, MSP-IMPROV, MSP-Podcast, CMU-MOSEI, RAVDESS, MEAD, TESS or
any labelled folder or manifest turned into clips with media paths, speakers, labels and partitions.

:func:`load_corpus` reads one corpus as a config entry describes it; :func:`fold_assignments`
gives the clip -> split assignment of every fold (the authors' partitions or seeded
speaker-independent folds). Every problem is a one-line :class:`~vavl.errors.DataError` raised
before any training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from vavl.config_data import CorpusConfig, SplitConfig
from vavl.corpora.base import (
    SPLITS,
    Clip,
    Corpus,
    Split,
    check_clips,
    corpus_folds,
    map_labels,
    share_split,
    speaker_folds,
)
from vavl.corpora.crema_d import load_crema_d
from vavl.corpora.generic import load_folder, load_manifest
from vavl.corpora.mosei import load_mosei
from vavl.corpora.msp_improv import SCALE as MSP_IMPROV_SCALE, load_msp_improv
from vavl.corpora.msp_podcast import (
    MSP_PODCAST_TO_CREMA_D,
    SCALE as MSP_PODCAST_SCALE,
    load_msp_podcast,
)
from vavl.corpora.ravdess_mead import (
    MEAD_TO_CREMA_D,
    RAVDESS_TO_CREMA_D,
    load_mead,
    load_ravdess,
)
from vavl.corpora.tess import TESS_TO_CREMA_D, load_tess
from vavl.errors import DataError

logger = logging.getLogger("vavl")

# Onto CREMA-D's six classes; FER2013 (a folder of <emotion>/<image>) has surprise besides them.
LABEL_MAPS: dict[str, dict[str, str | None]] = {
    "ravdess-to-crema-d": RAVDESS_TO_CREMA_D,
    "mead-to-crema-d": MEAD_TO_CREMA_D,
    "tess-to-crema-d": TESS_TO_CREMA_D,
    "msp-podcast-to-crema-d": MSP_PODCAST_TO_CREMA_D,
    "fer2013-to-crema-d": {"surprise": None},
}


# The rating scale of each format whose attributes ``rescale`` can map onto another's.
RATING_SCALES = {"msp-improv": MSP_IMPROV_SCALE, "msp-podcast": MSP_PODCAST_SCALE}


def load_corpus(spec: CorpusConfig, attributes: Sequence[str] = ()) -> Corpus:
    """The clips of one corpus, only with the modalities ``spec.modalities`` names."""
    name = spec.name or spec.format
    if spec.format == "crema-d":
        corpus = load_crema_d(spec.root, name, spec.labels, spec.votes, spec.partitions)
    elif spec.format == "msp-improv":
        if spec.partitions is None:
            raise DataError(f"{name}: MSP-IMPROV needs the authors' partition folder (partitions:)")
        corpus = load_msp_improv(spec.root, spec.partitions, name, spec.flip)
    elif spec.format == "msp-podcast":
        corpus = load_msp_podcast(spec.root, name, spec.test_set)
    elif spec.format == "mosei":
        corpus = load_mosei(spec.root, name, spec.label_file)
    elif spec.format == "ravdess":
        corpus = load_ravdess(spec.root, name, spec.channels)
    elif spec.format == "mead":
        corpus = load_mead(spec.root, name)
    elif spec.format == "tess":
        corpus = load_tess(spec.root, name)
    elif spec.format == "folder":
        corpus = load_folder(spec.root, name)
    else:
        corpus = load_manifest(spec.root, name, attributes)
    kept = []
    for clip in corpus.clips:
        media = {m: p for m, p in clip.media.items() if m in spec.modalities}
        if media:
            kept.append(replace(clip, media=media))
    corpus.clips = kept
    if spec.rescale is not None:
        corpus.clips = rescaled(corpus.clips, spec.format, spec.rescale)
    return corpus


def rescaled(clips: Sequence[Clip], format: str, target: tuple[float, float]) -> list[Clip]:
    """The clips with their attributes mapped linearly from ``format``'s rating scale onto
    ``target`` (MSP-Podcast's 1-7 onto MSP-IMPROV's 1-5: 7 -> 5, 4 -> 3)."""
    if format not in RATING_SCALES:
        known = ", ".join(RATING_SCALES)
        raise DataError(f"rescale: the {format} format has no known rating scale (known: {known})")
    (low, high), (new_low, new_high) = RATING_SCALES[format], target
    factor = (new_high - new_low) / (high - low)
    return [
        replace(
            clip, attributes={k: new_low + (v - low) * factor for k, v in clip.attributes.items()}
        )
        if clip.attributes
        else clip
        for clip in clips
    ]


def label_map_of(spec: CorpusConfig) -> dict[str, str | None]:
    if isinstance(spec.label_map, str):
        if spec.label_map not in LABEL_MAPS:
            known = ", ".join(sorted(LABEL_MAPS))
            raise DataError(f"unknown label map '{spec.label_map}' (known: {known})")
        return LABEL_MAPS[spec.label_map]
    return dict(spec.label_map)


def fold_assignments(
    corpora: Sequence[Corpus], roles: Sequence[str], split: SplitConfig
) -> list[dict[str, Split]]:
    """clip id -> split for every fold. Corpora with role 'train' are always in training, those
    with role 'dev' always in development."""
    evaluated = [c for c, role in zip(corpora, roles, strict=True) if role == "all"]
    if not evaluated:
        raise DataError("no corpus can be evaluated: give at least one corpus role 'all'")
    if split.method == "partitions":
        missing = [c.name for c in evaluated if not c.partitions]
        if missing:
            raise DataError(
                f"split.method is 'partitions' but {', '.join(missing)} defines none; give its "
                "partition folder or use split.method: speaker-folds"
            )
        counts = {len(c.partitions or []) for c in evaluated}
        if len(counts) > 1:
            raise DataError(f"the corpora define different numbers of partitions: {sorted(counts)}")
        folds: list[dict[str, Split]] = [{} for _ in range(counts.pop())]
        for corpus in evaluated:
            for fold, partition in zip(folds, corpus.partitions or [], strict=True):
                fold.update(partition)
    elif split.method == "speakers":
        known = {s for corpus in evaluated for s in corpus.speakers()}
        folds = []
        for named in split.speakers:
            unknown = sorted(set(named.test + named.dev) - known)
            if unknown:
                raise DataError(
                    f"split names speakers the corpora do not have: {', '.join(unknown)} "
                    "(speakers are '<corpus>:<speaker>', e.g. crema-d:1001)"
                )
            assignment: dict[str, Split] = {speaker: "train" for speaker in known}
            assignment |= dict.fromkeys(named.dev, "dev")
            assignment |= dict.fromkeys(named.test, "test")
            folds.append({clip.id: assignment[clip.speaker] for c in evaluated for clip in c.clips})
    elif split.method == "corpora":
        folds = corpus_folds(evaluated, split.corpora, split.dev_share, split.seed)
    elif split.method == "shares":
        folds = [share_split(evaluated, split.dev_share, split.test_share, split.seed)]
    else:
        speakers = [s for corpus in evaluated for s in corpus.speakers()]
        by_speaker = speaker_folds(speakers, split.folds, split.seed)
        folds = [
            {clip.id: assignment[clip.speaker] for corpus in evaluated for clip in corpus.clips}
            for assignment in by_speaker
        ]
    fixed: dict[str, Split] = {"train": "train", "dev": "dev"}
    for corpus, role in zip(corpora, roles, strict=True):
        if role not in fixed:
            continue
        clips = [clip.id for clip in corpus.clips]
        if role == "train" and corpus.partitions and len(corpus.partitions) == 1:
            # A corpus with one split of its own (MSP-Podcast's): its training clips train,
            # its development and test clips stay unseen.
            own = corpus.partitions[0]
            clips = [clip for clip in clips if own.get(clip) == "train"]
            logger.info(
                "%s: role train: its %d training clips train; its %d other clips are left out",
                corpus.name, len(clips), len(corpus.clips) - len(clips),
            )  # fmt: skip
        for fold in folds:
            fold.update(dict.fromkeys(clips, fixed[role]))
    return folds


__all__ = [
    "LABEL_MAPS",
    "SPLITS",
    "Clip",
    "Corpus",
    "Split",
    "check_clips",
    "fold_assignments",
    "label_map_of",
    "load_corpus",
    "map_labels",
]
