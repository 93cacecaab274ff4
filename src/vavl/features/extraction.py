"""``vavl extract``: media files -> the feature store, in parallel, resumable, with a report.

Every input file gets one report row whatever happens to it: ``extracted``, ``cached`` (its
features were already in the store: nothing recomputed) or ``failed`` with a one-line reason; a
bad file never stops the batch. Entries are written as each file finishes, so a killed run loses
only the files in progress, and rerunning it skips everything done.

Shards (``--shard i/n``, or one per process under ``torchrun``) take every n-th input of the same
list into the same store: no file is done twice, entries never collide (they are keyed by
content and written atomically), and whichever shard finishes last merges the shard reports into
one, in input order.
"""

from __future__ import annotations

import csv
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vavl.config import FaceSettings
from vavl.containers import check_readable
from vavl.errors import DataError, VavlError
from vavl.features.base import (
    AudioExtractor,
    VisualExtractor,
    check_options,
    create_extractor,
)
from vavl.features.extraction_report import (
    REPORT_FIELDS,
    ExtractionReport,
    cached_row,
    described_entries,
    inputs_digest,
    merge_shard_reports,
    shard_report_name,
    span_fields,
    unfinished_row,
    write_report,
)
from vavl.features.index import EntrySummary, HashCache, StoreIndex, file_identity
from vavl.features.pipeline import FeaturePipeline
from vavl.features.store import FeatureStore
from vavl.files import sha256_file
from vavl.media import MEDIA_SUFFIXES
from vavl.spans import MediaSpan, Span
from vavl.types import MODALITIES

logger = logging.getLogger("vavl")
# What a worker's row carries to the main process for the index: its entries' summaries, and
# the file's size and time while it was hashed and read.
SUMMARIES, IDENTITY = "_summaries", "_identity"


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered extractor's name and options (picklable, unlike the extractor itself)."""

    id: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        return create_extractor(self.id, **self.options)


@dataclass(frozen=True)
class ExtractionSettings:
    audio: ExtractorSpec | None = ExtractorSpec("whisper-base")
    visual: ExtractorSpec | None = ExtractorSpec("fer")
    faces: FaceSettings = field(default_factory=FaceSettings)


def media_inputs(source: str | Path) -> list[Path | MediaSpan]:
    """The media files a user pointed at: one file, a folder (recursively) or a manifest CSV.

    A manifest CSV has a ``path`` column (relative paths are relative to the CSV's folder) and
    optional ``start`` and ``end`` columns (seconds): a row with either is that span of its file.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if source.is_dir():
        return list(_media_in_folder(source))
    if source.suffix.lower() == ".csv":
        with open(source, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise DataError(f"{source}: a manifest needs a 'path' column")
            found: list[Path | MediaSpan] = []
            for number, row in enumerate(reader, start=2):
                if not row["path"]:
                    continue
                span = Span.parse(row.get("start"), row.get("end"), f"{source}:{number}")
                path = source.parent / row["path"]
                found.append(path if span.whole else MediaSpan(path, span))
            return found
    return [source]


def _media_in_folder(folder: Path) -> list[Path]:
    """Media files under ``folder`` by name, and what could not be looked into: broken links
    with a media name and unreadable folders are inputs too, so that each gets its failed row."""
    found: list[Path] = []

    def unreadable(error: OSError) -> None:
        found.append(Path(error.filename))

    for root, folders, files in os.walk(folder, onerror=unreadable):
        folders.sort()
        for name in folders:  # a folder named like a media file was surely meant as one
            if Path(name).suffix.lower() in MEDIA_SUFFIXES:
                found.append(Path(root) / name)
        for name in files:
            path = Path(root) / name
            if path.suffix.lower() in MEDIA_SUFFIXES:
                found.append(path)
    return sorted(found)


def _check_file(path: Path) -> None:
    """One line saying why ``path`` is no media file to read (a folder, a link to nowhere, a
    named pipe...), if it is none."""
    if path.is_dir():
        try:
            with os.scandir(path):
                raise VavlError(f"{path}: a folder, not a media file")
        except OSError as error:
            raise VavlError(f"{path}: a folder that cannot be read ({error.strerror})") from None
    check_readable(path)


class _Extractor:
    """The per-process state: extractors are loaded once and reused for every file."""

    def __init__(self, settings: ExtractionSettings, store_root: str) -> None:
        audio: AudioExtractor | None = settings.audio.build() if settings.audio else None
        visual: VisualExtractor | None = settings.visual.build() if settings.visual else None
        self.pipeline = FeaturePipeline(audio, visual, settings.faces)
        self.store = FeatureStore(store_root)
        self.keys = self.pipeline.store_keys()
        specs = {"audio": settings.audio, "visual": settings.visual}
        for modality, extractor in (("audio", audio), ("visual", visual)):
            spec = specs[modality]
            if extractor is not None and spec is not None:
                self.store.register_extractor(
                    extractor.describe(settings.faces.model_dump(), spec.options)
                )

    def process(self, source: MediaSpan) -> dict[str, Any]:
        """One input's report row, with what the index learns of it (``SUMMARIES``: its
        entries' summaries; ``IDENTITY``: the file's size and time while it was hashed and
        read, None when it changed meanwhile)."""
        started = time.perf_counter()
        row: dict[str, Any] = {name: "" for name in REPORT_FIELDS} | span_fields(source)
        path = source.path
        try:
            before = file_identity(path)
            row.update(self._process(path, source.span))
            row[IDENTITY] = before if file_identity(path) == before else None
        except VavlError as error:
            row["status"], row["error"] = "failed", str(error).removeprefix(f"{path}: ")
        except Exception as error:  # a library failing on one file must not stop the batch
            row["status"], row["error"] = "failed", f"{type(error).__name__}: {error}"
        row["compute_s"] = round(time.perf_counter() - started, 3)
        return row

    def _process(self, path: Path, span: Span) -> dict[str, Any]:
        _check_file(path)
        content_hash = sha256_file(path)
        entry_id = span.entry_id(content_hash)
        stored = {m: self.store.load(key, entry_id) for m, key in self.keys.items()}
        todo = tuple(m for m, found in stored.items() if found is None)
        row: dict[str, Any] = {"content_sha256": content_hash, "status": "cached"}
        notes: list[str] = []
        if todo:
            damaged = [m for m in todo if self.store.entry_path(self.keys[m], entry_id).exists()]
            notes += [f"damaged {m} entry recomputed" for m in damaged]
            result = self.pipeline.extract(path, todo, span)
            self.store.save_file(self.keys, entry_id, result, todo)
            stored |= {m: self.store.load(self.keys[m], entry_id) for m in todo}
            row["status"] = "extracted"
        summaries = {}
        for modality, entry in stored.items():
            assert entry is not None
            summaries[modality] = EntrySummary.of(entry)
        row |= described_entries(summaries, notes)
        return row | {SUMMARIES: {m: summary.to_json() for m, summary in summaries.items()}}


_worker: _Extractor | None = None
PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup still stops us
        return
    if os.getppid() == 1:  # the parent died before the call: nobody would stop us
        os._exit(1)


def _start_worker(settings: ExtractionSettings, store_root: str) -> None:
    global _worker
    _die_with_parent()
    # Ctrl-C reaches the whole process group: the parent stops the batch and its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker = _Extractor(settings, store_root)


def _work(source: MediaSpan) -> dict[str, Any]:
    assert _worker is not None
    return _worker.process(source)


def _results(
    inputs: Sequence[tuple[int, MediaSpan]],
    settings: ExtractionSettings,
    store: FeatureStore,
    workers: int,
    extractor: _Extractor | None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(input number, report row) of each (number, input), as each finishes."""
    if extractor is not None:
        for index, path in inputs:
            yield index, extractor.process(path)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(settings, str(store.root))
    )
    try:
        futures: dict[Future[dict[str, Any]], int] = {
            pool.submit(_work, path): index for index, path in inputs
        }
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): drop what is queued and stop the workers now, not after
        # the files they are on; the caller writes the report with what was done.
        workers_now = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers_now:
            process.terminate()
        raise
    pool.shutdown()


def run_extraction(
    inputs: Sequence[str | Path | MediaSpan],
    store_root: str | Path,
    settings: ExtractionSettings | None = None,
    workers: int = 1,
    progress: bool = True,
    report_name: str = "report",
    shard: tuple[int, int] | None = None,
    keys: Mapping[str, str] | None = None,
    verify: bool = False,
) -> ExtractionReport:
    """Extract every input (a file, or a span of one) into the store (skipping what is there)
    and write the report.

    A file the hash cache knows unchanged is not hashed again, and one whose entries under
    ``keys`` (the extractors' store keys; a one-process run knows them) are indexed is not
    even read: its row comes from the index. ``verify`` hashes every file and reads every
    entry, checking its checksum (a damaged one is made again).
    With ``shard=(index, count)`` only inputs ``index, index + count, ...`` are done and the
    report is that shard's; the last shard to finish also writes the merged report."""
    settings = settings or ExtractionSettings()
    store = FeatureStore(store_root)
    store.root.mkdir(parents=True, exist_ok=True)
    stale = store.remove_stale_temporaries(older_than=time.time())
    if stale:
        logger.info("%s: removed %d half-written entries of a killed run", store.root, stale)
    every_input = [MediaSpan.of(source) for source in inputs]
    paths = every_input if shard is None else every_input[shard[0] :: shard[1]]
    rows: list[dict[str, Any] | None] = [None] * len(paths)
    extractors: dict[str, Any] = {
        modality: None if spec is None else {"id": spec.id, "options": spec.options}
        for modality, spec in zip(MODALITIES, (settings.audio, settings.visual), strict=True)
    }
    extractors["faces"] = settings.faces.model_dump()
    # Bad extractor options fail here, before the report is written: nothing was interrupted.
    # Worker processes build their own extractors; here their option names are checked. The
    # extractors are built here only for work, or to learn their keys when not given.
    for spec in (settings.audio, settings.visual):
        if spec is not None:
            check_options(spec.id, spec.options)
    local = _Extractor(settings, str(store.root)) if workers <= 1 and not keys else None
    known = _Known(store, keys or (local.keys if local is not None else None))
    summaries: list[dict[str, EntrySummary]] = [{} for _ in paths]
    todo = []
    for number, source in enumerate(paths):
        content_hash = None if verify else known.hashes.lookup(source.path)
        indexed = known.entries(source, content_hash)
        if indexed is None:
            todo.append((number, source))
            continue
        summaries[number] = indexed
        rows[number] = cached_row(source, content_hash or "", indexed)
    if todo and workers <= 1 and local is None:
        local = _Extractor(settings, str(store.root))
    statuses = Counter(row["status"] for row in rows if row)  # kept up to date: no recount
    try:
        with tqdm(total=len(paths), desc="extract", unit="file", disable=not progress) as bar:
            bar.update(len(paths) - len(todo))
            for number, row in _results(todo, settings, store, workers, local):
                summaries[number] = known.learn(paths[number], row)
                rows[number] = row
                statuses[row["status"]] += 1
                bar.update()
                bar.set_postfix(statuses, refresh=False)
    finally:
        known.save()
        done = [
            row if row is not None else unfinished_row(path)
            for row, path in zip(rows, paths, strict=True)
        ]  # fmt: skip
        name = report_name if shard is None else shard_report_name(report_name, shard)
        digest = inputs_digest(every_input)
        csv_path, json_path = write_report(store, done, extractors, name, digest)
    if shard is not None:
        merged = merge_shard_reports(store, every_input, shard[1], report_name)
        if merged is not None:
            logger.info("all %d shards done: %s", shard[1], merged.csv_path)
    return ExtractionReport(done, extractors, csv_path, json_path, summaries)


class _Known:
    """What the store already knows of the inputs: their content hashes (by path, size and
    time) and, under ``keys`` (the extractors' store keys, when known), their entries."""

    def __init__(self, store: FeatureStore, keys: Mapping[str, str] | None) -> None:
        self.hashes = HashCache(store)
        self.keys = dict(keys or {})
        self.index = StoreIndex(store, self.keys.values()) if keys else None

    def entries(
        self, source: MediaSpan, content_hash: str | None
    ) -> dict[str, EntrySummary] | None:
        """The summaries of every entry of an unchanged file, when the index has them all."""
        if self.index is None or content_hash is None:
            return None
        found = {}
        for modality, key in self.keys.items():
            summary = self.index.get(key, source.span.entry_id(content_hash))
            if summary is None:
                return None
            found[modality] = summary
        return found

    def learn(self, source: MediaSpan, row: dict[str, Any]) -> dict[str, EntrySummary]:
        """Remember what a worker's row says (its hash, its entries), taken out of the row."""
        found = {m: EntrySummary.from_json(s) for m, s in row.pop(SUMMARIES, {}).items()}
        identity, content_hash = row.pop(IDENTITY, None), row["content_sha256"]
        if not content_hash:  # the file failed
            return found
        if identity is not None:  # unchanged while it was hashed and read
            self.hashes.remember(source.path, identity, content_hash)
        for modality, summary in found.items():
            if self.index is not None and modality in self.keys:
                self.index.put(self.keys[modality], source.span.entry_id(content_hash), summary)
        return found

    def save(self) -> None:
        self.hashes.save()
        if self.index is not None:
            self.index.save()
