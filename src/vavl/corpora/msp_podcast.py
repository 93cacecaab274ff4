"""MSP-Podcast: 100k+ speaking turns of podcasts, audio only, with a categorical emotion and
arousal / valence / dominance on a 1-7 scale (the MSP lab's corpus; the unpaired audio VAVL is
built to learn from beside MSP-IMPROV's audio-visual clips).

The release layout: ``Audios/<FileName>`` (.wav) and ``Labels/labels_consensus.csv`` with the
columns FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set. EmoClass letters
become words (A angry, S sad, H happy, U surprise, F fear, D disgust, C contempt, N neutral,
O other, X no-agreement); the shipped map ``msp-podcast-to-crema-d`` keeps CREMA-D's six and
drops the rest. Split_Set: Train and Development train and develop; ``test_set`` (Test1 by
default, or Test2) tests; the other test set and Test3 (released without labels) are left out.
Speakers are SpkrID (``Unknown`` speakers: each clip its own).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

from vavl.corpora.base import Clip, Corpus, Split, media_by_stem, require_folder
from vavl.errors import DataError

EMOTIONS = {
    "A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
    "C": "contempt", "N": "neutral", "O": "other", "X": "no-agreement",
}  # fmt: skip
ATTRIBUTE_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
SCALE = (1.0, 7.0)
COLUMNS = {"FileName", "EmoClass", *ATTRIBUTE_COLUMNS.values(), "SpkrID", "Split_Set"}
MSP_PODCAST_TO_CREMA_D: dict[str, str | None] = {
    "surprise": None, "contempt": None, "other": None, "no-agreement": None,
}  # fmt: skip
UNKNOWN_SPEAKER = "unknown"
LABEL_FILES = ("labels_consensus.csv", "labels_concensus.csv")

logger = logging.getLogger("vavl")


def _split_of(split_set: str, test_set: str) -> Split | None:
    """Train, Development and the chosen test set; None for the others (left out)."""
    value = split_set.strip().lower()
    if value == "train":
        return "train"
    if value in ("development", "dev", "validation"):
        return "dev"
    return "test" if value == test_set.lower() else None


def load_msp_podcast(root: Path, name: str, test_set: str = "Test1") -> Corpus:
    require_folder(root, "MSP-Podcast", "corpus")
    # Older releases spell it "concensus".
    found = [root / "Labels" / file for file in LABEL_FILES if (root / "Labels" / file).is_file()]
    if not found:
        raise DataError(f"{root}: MSP-Podcast's Labels/labels_consensus.csv not found")
    labels = found[0]
    audio = media_by_stem(root / "Audios" if (root / "Audios").is_dir() else root, [".wav"])
    clips, partition, left_out = [], {}, Counter[str]()
    with open(labels, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{labels}: missing columns {sorted(missing)}")
        for number, row in enumerate(reader, start=2):
            stem = Path(row["FileName"]).stem
            split = _split_of(row["Split_Set"], test_set)
            if split is None:
                left_out[row["Split_Set"]] += 1
                continue
            if stem not in audio:
                left_out["not in this copy"] += 1
                continue
            try:
                values = {a: float(row[c]) for a, c in ATTRIBUTE_COLUMNS.items()}
            except ValueError:
                raise DataError(
                    f"{labels}:{number}: EmoAct, EmoVal, EmoDom must be numbers"
                ) from None
            emotion = EMOTIONS.get(row["EmoClass"].strip().upper())
            if emotion is None:
                raise DataError(f"{labels}:{number}: unknown EmoClass '{row['EmoClass']}'")
            speaker = row["SpkrID"].strip()
            clip_id = f"{name}/{stem}"
            known = speaker and speaker.lower() != UNKNOWN_SPEAKER
            clips.append(
                Clip(
                    id=clip_id,
                    corpus=name,
                    speaker=f"{name}:{speaker if known else clip_id}",
                    media={"audio": audio[stem]},
                    label=emotion,
                    attributes=values,
                    metadata={"gender": row.get("Gender", "")},
                )
            )
            partition[clip_id] = split
    for reason, count in sorted(left_out.items()):
        logger.info("%s: %d labelled clips left out (%s)", name, count, reason)
    if not clips:
        raise DataError(
            f"{root}: no labelled MSP-Podcast audio of Train, Development or {test_set}"
        )
    return Corpus(name, clips, [partition])
