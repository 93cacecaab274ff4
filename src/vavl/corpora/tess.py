"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller, 2010).

Two female speakers (OAF, YAF) say "Say the word ___" for 200 words in 7 emotions. File names are
``<speaker>_<word>_<emotion>.<ext>`` (``ps`` is pleasant surprise), in any folder layout under the
root (the original release has one folder per speaker and emotion). Audio only.
"""

from __future__ import annotations

from pathlib import Path

from vavl.corpora.base import Clip, Corpus, media_by_stem, require_folder
from vavl.errors import DataError
from vavl.media import AUDIO_SUFFIXES

TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "pleasant_surprise",
    "sad": "sad",
}
TESS_TO_CREMA_D: dict[str, str | None] = {"pleasant_surprise": None}
# One file of the original release is named OA_ instead of OAF_.
SPEAKER_ALIASES = {"OA": "OAF"}


def load_tess(root: Path, name: str = "tess") -> Corpus:
    require_folder(root, "TESS", "corpus")
    clips = []
    for stem, path in sorted(media_by_stem(root, AUDIO_SUFFIXES).items()):
        parts = stem.split("_")
        if len(parts) < 3 or parts[-1].lower() not in TESS_EMOTIONS:
            continue
        speaker = SPEAKER_ALIASES.get(parts[0].upper(), parts[0].upper())
        word = "_".join(parts[1:-1]).lower()
        clips.append(
            Clip(
                id=f"{name}/{speaker}_{word}_{parts[-1].lower()}",
                corpus=name,
                speaker=f"{name}:{speaker}",
                media={"audio": path},
                label=TESS_EMOTIONS[parts[-1].lower()],
                metadata={"word": word},
            )
        )
    if not clips:
        raise DataError(f"{root}: no TESS files (<speaker>_<word>_<emotion>.wav) under this folder")
    return Corpus(name, clips)
