"""Any labelled folder or manifest CSV.

Folder: ``<root>/<label>/<file>`` (the folder name is the label; speakers unknown, so each file is
its own speaker). Manifest CSV: a ``path`` column (relative to the CSV) and either a ``label``
column (classes) or one numeric column per attribute; optional ``speaker``, ``split`` and ``id``,
``start`` and ``end`` (seconds: the clip is that span of its file, as a segment of a longer
recording; give each such row an ``id``), and ``votes_<class>`` columns (how many annotators
chose each class: a soft label, and the most voted class where ``label`` is empty; map a
non-class such as ``unknown`` to null).
A video file feeds both modalities, an audio file only the audio, a still image (a face photo)
only the visual modality.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from vavl.corpora.base import Clip, Corpus, Split, require_folder, split_name
from vavl.errors import DataError
from vavl.images import IMAGE_SUFFIXES
from vavl.media import AUDIO_SUFFIXES
from vavl.spans import Span
from vavl.types import Modality

VOTES = "votes_"  # a manifest's vote columns: votes_<class>, the annotators' counts


def _media(path: Path) -> dict[Modality, Path]:
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return {"audio": path}
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return {"visual": path}
    return {"audio": path, "visual": path}


def load_folder(root: Path, name: str) -> Corpus:
    require_folder(root, name, "corpus")
    clips = []
    for label_folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(label_folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                clip_id = f"{name}/{path.relative_to(root).as_posix()}"
                clips.append(
                    Clip(clip_id, name, f"{name}:{clip_id}", _media(path), label=label_folder.name)
                )
    if not clips:
        raise DataError(f"{root}: no <label>/<file> media found (expected one folder per label)")
    return Corpus(name, clips)


def load_manifest(path: Path, name: str, attributes: Sequence[str] = ()) -> Corpus:
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = list(reader)
    if "path" not in columns:
        raise DataError(f"{path}: a manifest needs a 'path' column")
    regression = bool(attributes) and set(attributes) <= columns
    if not regression and "label" not in columns:
        needed = f"a 'label' column or the attribute columns {list(attributes)}"
        raise DataError(f"{path}: a manifest needs {needed}")
    votes = sorted(c for c in columns if c.startswith(VOTES))
    clips = []
    split: dict[str, Split] = {}
    for number, row in enumerate(rows, start=2):
        media_path = path.parent / row["path"]
        clip_id = f"{name}/{row.get('id') or row['path']}"
        try:
            values = {a: float(row[a]) for a in attributes} if regression else None
            soft = _soft_label(row, votes) if votes and not regression else None
        except ValueError:
            raise DataError(
                f"{path}:{number}: attribute values and votes must be numbers"
            ) from None
        label = None if regression else row["label"] or _most_voted(soft)
        if not regression and not label:
            continue  # no label and no votes: nothing to learn from
        clips.append(
            Clip(
                clip_id,
                name,
                f"{name}:{row.get('speaker') or clip_id}",
                _media(media_path),
                label=label,
                soft_label=soft,
                attributes=values,
                span=Span.parse(row.get("start"), row.get("end"), f"{path}:{number}"),
            )
        )
        if row.get("split"):
            split[clip_id] = split_name(row["split"], f"{path}:{number}")
    return Corpus(name, clips, [split] if split else None)


def _soft_label(row: dict[str, str], columns: Sequence[str]) -> dict[str, float] | None:
    """Each class's share of the votes in the ``votes_<class>`` columns (None: no vote)."""
    counts = {column.removeprefix(VOTES): float(row[column] or 0) for column in columns}
    total = sum(counts.values())
    return {name: count / total for name, count in counts.items()} if total > 0 else None


def _most_voted(soft: dict[str, float] | None) -> str | None:
    return None if not soft else max(soft, key=lambda name: soft[name])
