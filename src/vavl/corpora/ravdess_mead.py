"""RAVDESS and MEAD, named by their file-name schemes.

RAVDESS (Livingstone & Russo, 2018): ``MM-VV-EE-II-SS-RR-AA.ext`` with modality MM (01 audio-video,
02 video only, 03 audio only), vocal channel VV (01 speech, 02 song), emotion EE, intensity II,
statement SS, repetition RR and actor AA. The audio-only file (WAV as released, or a FLAC copy)
and the video of the same recording form one clip (audio from the audio file, video from the MP4).

MEAD (Wang et al., 2020): ``<speaker>/video/<view>/<emotion>/level_<n>/<take>.mp4`` with the audio
in ``<speaker>/audio/<emotion>/level_<n>/<take>.m4a``, or flat names
``<speaker>_<view>_<emotion>_level<n>_<take>.mp4`` / ``<speaker>_<emotion>_<n>_<take>.mp4``. Files
whose names say neither are taken from a ``manifest.csv`` (path, speaker, emotion) if present.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from vavl.corpora.base import Clip, Corpus, media_by_stem, require_folder
from vavl.errors import DataError
from vavl.types import Modality

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
# Onto CREMA-D's six classes (calm and surprised have no counterpart).
RAVDESS_TO_CREMA_D: dict[str, str | None] = {"fearful": "fear", "calm": None, "surprised": None}
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
MEAD_TO_CREMA_D: dict[str, str | None] = {
    "disgusted": "disgust",
    "contempt": None,
    "surprised": None,
}


def load_ravdess(
    root: Path, name: str = "ravdess", channels: Sequence[str] = ("speech", "song")
) -> Corpus:
    require_folder(root, "RAVDESS", "corpus")
    files = media_by_stem(root, [".wav", ".flac", ".mp4"])
    recordings: dict[str, dict[Modality, Path]] = {}
    details: dict[str, tuple[str, str, str]] = {}
    for stem, path in files.items():
        parts = stem.split("-")
        if len(parts) != 7 or parts[2] not in RAVDESS_EMOTIONS or parts[1] not in RAVDESS_CHANNELS:
            continue
        modality_code, channel, emotion, _, _, _, actor = parts
        if RAVDESS_CHANNELS[channel] not in channels:
            continue
        recording = "-".join(parts[1:])  # the same take in every modality
        media = recordings.setdefault(recording, {})
        if modality_code == "03" or (modality_code == "01" and "audio" not in media):
            media["audio"] = path
        if modality_code in ("01", "02") and "visual" not in media:
            media["visual"] = path
        details[recording] = (RAVDESS_EMOTIONS[emotion], actor, RAVDESS_CHANNELS[channel])
    if not recordings:
        raise DataError(
            f"{root}: no RAVDESS files (MM-VV-EE-II-SS-RR-AA.wav/.flac/.mp4) under this folder"
        )
    clips = [
        Clip(
            id=f"{name}/{recording}",
            corpus=name,
            speaker=f"{name}:{details[recording][1]}",
            media=media,
            label=details[recording][0],
            metadata={"channel": details[recording][2]},
        )
        for recording, media in sorted(recordings.items())
    ]
    return Corpus(name, clips)


MEAD_FLAT = re.compile(
    r"^(?P<speaker>[MW]\d{3})_(?:(?P<view>[a-z_]+?)_)?(?P<emotion>[a-z]+)_(?:level)?(?P<level>\d)_(?P<take>\d{3})$"
)


def _mead_manifest(root: Path) -> dict[Path, tuple[str, str]]:
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {
        (root / row["path"]).resolve(): (row["speaker"], row["emotion"])
        for row in rows
        if row.get("speaker") and row.get("emotion")
    }


def load_mead(root: Path, name: str = "mead") -> Corpus:
    require_folder(root, "MEAD", "corpus")
    manifest = _mead_manifest(root)
    audio_files = media_by_stem(root, [".m4a", ".wav"])
    clips = []
    for path in sorted(root.rglob("*.mp4")):
        relative = path.relative_to(root).parts
        speaker = emotion = None
        if len(relative) >= 6 and relative[1] == "video":  # the official tree
            speaker, emotion = relative[0], relative[3]
            take = f"{relative[3]}_{relative[4]}_{path.stem}"
            audio = root / speaker / "audio" / relative[3] / relative[4] / f"{path.stem}.m4a"
        elif match := MEAD_FLAT.match(path.stem):
            speaker, emotion, take = match["speaker"], match["emotion"], path.stem
            audio = audio_files.get(path.stem, path)
        elif path.resolve() in manifest:
            speaker, emotion = manifest[path.resolve()]
            take = "_".join(relative).removesuffix(".mp4")
            audio = path
        else:
            continue
        if emotion not in MEAD_EMOTIONS:
            raise DataError(
                f"{path}: unknown MEAD emotion '{emotion}' (known: {', '.join(MEAD_EMOTIONS)})"
            )
        media: dict[Modality, Path] = {"visual": path}
        if audio.is_file():
            media["audio"] = audio  # a video file without sound simply yields no audio features
        clips.append(
            Clip(
                id=f"{name}/{speaker}/{take}",
                corpus=name,
                speaker=f"{name}:{speaker}",
                media=media,
                label=emotion,
            )
        )
    if not clips:
        raise DataError(
            f"{root}: no MEAD videos (<speaker>/video/<view>/<emotion>/level_<n>/<take>.mp4 or "
            "<speaker>_<view>_<emotion>_level<n>_<take>.mp4) under this folder"
        )
    return Corpus(name, clips)
