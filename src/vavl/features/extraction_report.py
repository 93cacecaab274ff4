"""What ``vavl extract`` reports: one row per input file (or span of one), the report files
(CSV and JSON beside the store), and shards' reports merged into one."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vavl.errors import VavlError
from vavl.features.index import EntrySummary
from vavl.features.store import FeatureStore
from vavl.files import csv_text, read_json, write_json_atomically, write_text_atomically
from vavl.spans import MediaSpan, Span

REPORT_FIELDS = [
    "path",
    "start",  # a span of the file (blank: from its start, to its end)
    "end",
    "status",
    "audio",
    "visual",
    "duration_s",
    "audio_seconds",
    "audio_frames",
    "video_frames_sampled",
    "frames_with_face",
    "compute_s",
    "content_sha256",
    "notes",
    "error",
]


def described_entries(
    summaries: Mapping[str, EntrySummary], notes: Sequence[str] = ()
) -> dict[str, Any]:
    """What a report row says of a file's entries: each modality's status, the duration, the
    frames and the notes."""
    row: dict[str, Any] = {}
    notes = list(notes)
    for modality, summary in summaries.items():
        record = summary.record
        row[modality] = f"missing: {summary.missing}" if summary.missing else "ok"
        if record.duration_s is not None:
            row["duration_s"] = record.duration_s
        notes += [n for n in record.notes if n not in notes]
        if modality == "audio":
            row["audio_seconds"] = _blank_if_none(record.audio_seconds)
            row["audio_frames"] = summary.frames
        else:
            row["video_frames_sampled"] = _blank_if_none(record.frames_sampled)
            row["frames_with_face"] = _blank_if_none(record.frames_with_face)
    row["notes"] = "; ".join(notes)
    return row


def span_fields(source: MediaSpan) -> dict[str, Any]:
    """A report row's ``path``, ``start`` and ``end`` (blank for a whole file's ends)."""
    span = source.span
    start = "" if span.whole else span.start
    return {"path": str(source.path), "start": start, "end": _blank_if_none(span.end)}


def row_source(row: dict[str, Any]) -> MediaSpan:
    """The file (or span of one) a report row is about: the inverse of its span fields."""
    start, end = row.get("start", ""), row.get("end", "")
    span = Span(float(start or 0.0), None if end in ("", None) else float(end))
    return MediaSpan(Path(row["path"]), span)


def _blank_if_none(value: float | None) -> float | str:
    return "" if value is None else value


@dataclass
class ExtractionReport:
    rows: list[dict[str, Any]]
    extractors: dict[str, Any]
    csv_path: Path
    json_path: Path
    # Per row: each modality's entry as the index knows it (empty for a failed file).
    summaries: list[dict[str, EntrySummary]] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(row["status"] for row in self.rows)

    def summary(self) -> str:
        counts = self.counts
        parts = [f"{counts[s]} {s}" for s in ("extracted", "cached", "failed") if counts[s]]
        return f"{len(self.rows)} files: {', '.join(parts) or 'none'} (report: {self.csv_path})"


def write_report(
    store: FeatureStore,
    rows: list[dict[str, Any]],
    extractors: dict[str, Any],
    name: str,
    inputs_sha256: str = "",
) -> tuple[Path, Path]:
    csv_path = write_text_atomically(store.root / f"{name}.csv", csv_text(rows, REPORT_FIELDS))
    counts = Counter(row["status"] for row in rows)
    json_path = write_json_atomically(
        store.root / f"{name}.json",
        {
            "extractors": extractors,
            "summary": dict(counts),
            "inputs_sha256": inputs_sha256,
            "files": rows,
        },
    )
    return csv_path, json_path


def unfinished_row(source: MediaSpan) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(REPORT_FIELDS, "") | span_fields(source)
    return row | {"status": "not done", "error": "interrupted"}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1 <= i <= n) as a 0-based (index, count)."""
    number, _, count = text.partition("/")
    if not (number.isdigit() and count.isdigit() and 1 <= int(number) <= int(count)):
        raise VavlError(f"--shard {text}: expected i/n with 1 <= i <= n, e.g. 2/4")
    return int(number) - 1, int(count)


def shard_report_name(name: str, shard: tuple[int, int]) -> str:
    return f"{name}.shard-{shard[0] + 1}-of-{shard[1]}"


def merge_shard_reports(
    store: FeatureStore, inputs: Sequence[MediaSpan], count: int, name: str = "report"
) -> ExtractionReport | None:
    """The one report of all ``count`` shards over ``inputs``, once every shard has written its
    own (None before that). Reports of another input list are not mixed in."""
    digest = inputs_digest(inputs)
    shards = []
    for index in range(count):
        path = store.root / f"{shard_report_name(name, (index, count))}.json"
        if not path.is_file():
            return None
        saved = read_json(path)
        if saved.get("inputs_sha256") != digest:
            return None
        shards.append(saved)
    rows: list[dict[str, Any]] = [{}] * len(inputs)
    for index, saved in enumerate(shards):
        rows[index::count] = saved["files"]
    csv_path, json_path = write_report(store, rows, shards[0]["extractors"], name, digest)
    return ExtractionReport(rows, shards[0]["extractors"], csv_path, json_path)


def inputs_digest(inputs: Sequence[MediaSpan]) -> str:
    return hashlib.sha256(b"\n".join(os.fsencode(str(i)) for i in inputs)).hexdigest()


def cached_row(
    source: MediaSpan, content_hash: str, summaries: Mapping[str, EntrySummary]
) -> dict[str, Any]:
    row: dict[str, Any] = {name: "" for name in REPORT_FIELDS} | span_fields(source)
    row |= {"status": "cached", "content_sha256": content_hash, "compute_s": 0.0}
    return row | described_entries(summaries)
