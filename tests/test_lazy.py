"""Corpora larger than memory: clips left in the feature store and read batch by batch, and a
rerun that neither hashes media again nor reads features to start."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import demo_config
from vavl.checkpoint import load_checkpoint
from vavl.config import ExperimentConfig
from vavl.config_files import apply_overrides
from vavl.data import Collator
from vavl.errors import DataError
from vavl.experiment import run_experiment
from vavl.features import extraction
from vavl.features.index import EntrySummary, HashCache
from vavl.features.records import ModalityFeatures
from vavl.features.store import EntryRecord, FeatureStore, StoredFeatures
from vavl.preparation import prepare
from vavl.synthetic import synthetic_corpus_overrides, write_synthetic_corpus
from vavl.training import config_changes

SMALL = [
    "model.model_dim=32", "model.heads=2", "model.audio_blocks=1", "model.visual_blocks=1",
    "model.head_hidden=[32]", "training.epochs=1", "training.batch_size=8",
]  # fmt: skip


def _config(tmp_path: Path, *more: str) -> ExperimentConfig:
    folder = tmp_path / "corpus"
    if not (folder / "manifest.csv").exists():
        write_synthetic_corpus(folder, 60, seconds=(1.0, 3.0))
    return apply_overrides(demo_config(), [*SMALL, *synthetic_corpus_overrides(folder), *more])


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of media files hashed and store entries read from now on."""
    calls = Counter[str]()
    hash_file, load = extraction.sha256_file, FeatureStore.load

    def hashing(path: Any) -> str:
        calls["hashed"] += 1
        return hash_file(path)

    def reading(store: FeatureStore, key: str, entry: str) -> Any:
        calls["read"] += 1
        return load(store, key, entry)

    monkeypatch.setattr(extraction, "sha256_file", hashing)
    monkeypatch.setattr(FeatureStore, "load", reading)
    return calls


def test_a_rerun_neither_hashes_media_nor_reads_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    prepare(config, progress=False)  # the first run hashes every file and indexes every entry
    calls = _counting(monkeypatch)
    lazy = prepare(config, progress=False)
    assert calls == {}
    item = next(iter(lazy.items.values()))
    assert item.audio is None and set(item.stored) == {"audio"}
    features = item.features("audio")  # read when asked, and checked
    assert calls["read"] == 1 and features is not None and item.length() == len(features)

    # The same batches as with every feature in memory, whatever the process's share.
    memory = prepare(apply_overrides(config, ["data.load=memory"]), progress=False)
    collate = Collator(config.task)
    ids = sorted(lazy.items)[:8]
    assert [lazy.items[i].length() for i in ids] == [memory.items[i].length() for i in ids]
    one, other = collate([lazy.items[i] for i in ids]), collate([memory.items[i] for i in ids])
    assert one.audio is not None and other.audio is not None
    assert torch.equal(one.audio, other.audio) and torch.equal(one.target, other.target)  # type: ignore[arg-type]

    # A file touched since is hashed again and its entry checked; nothing else is.
    calls.clear()
    media = tmp_path / "corpus" / "media" / "000" / "0000007.wav"
    os.utime(media, ns=(1, 1))
    prepare(config, progress=False)
    assert calls == {"hashed": 1, "read": 1}


def test_lazy_and_in_memory_features_train_the_same_model(tmp_path: Path) -> None:
    """Lazily, with two DataLoader processes reading the store, as with everything in memory."""
    config = _config(tmp_path, "training.num_workers=2")
    lazy = run_experiment(config, tmp_path / "lazy", progress=False)
    config = _config(tmp_path, "data.load=memory")
    memory = run_experiment(config, tmp_path / "memory", progress=False)
    assert lazy.test == memory.test
    one, other = (load_checkpoint(tmp_path / run / "best.pt") for run in ("lazy", "memory"))
    for name, value in one.model_state.items():
        assert torch.equal(other.model_state[name], value), name
    # The training statistics were computed once, kept in the store, and read back.
    assert len(list((tmp_path / "corpus" / "store" / "index").glob("statistics-*.pt"))) == 1


def test_an_entry_damaged_behind_the_index_is_one_line_and_verify_redoes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "training.num_workers=2")
    run_experiment(config, tmp_path / "first", progress=False)  # its statistics are kept
    data = prepare(config, progress=False)
    stored = data.split(1)["train"][0].stored["audio"]
    entry = FeatureStore(stored.store).entry_path(stored.key, stored.entry)
    before = entry.stat()
    entry.write_bytes(b"\0" * before.st_size)  # same size, same time: the index cannot tell
    os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))
    # Read in a DataLoader worker, the error still comes back as its own one line.
    with pytest.raises(DataError) as raised:
        run_experiment(config, tmp_path / "run", progress=False)
    assert re.fullmatch(
        rf"\S*{entry.name}: feature entry damaged .* data.verify=true to make it again",
        str(raised.value),
    )

    calls = _counting(monkeypatch)
    prepare(apply_overrides(config, ["data.verify=true"]), progress=False)
    assert calls["hashed"] == len(data.items) and calls["read"] >= len(data.items)
    assert entry.read_bytes() != b"\0" * before.st_size  # made again from its media


def test_the_index_cuts_frames_as_the_features_are_cut() -> None:
    """Ten minutes of 50 frames/s (float32 times drift) cut at 12 s, and a first real frame at
    0.7 s with a cut at 0.7 s: the index counts what the cut of the stored times keeps."""
    times = (np.arange(30_000) / 50).astype(np.float32)
    valid = np.arange(30_000) >= 35
    stored = StoredFeatures(
        ModalityFeatures(np.zeros((30_000, 2), np.float32), times, valid), None, EntryRecord()
    )
    summary = EntrySummary.of(stored)
    assert summary.rate == 50
    for seconds in (12.0, 0.7, 1.0, 599.99, 700.0):
        kept = times < seconds
        assert summary.frames_before(seconds) == kept.sum()
        assert summary.has_valid_before(seconds) == valid[kept].any()


def test_verifying_or_reading_lazily_is_the_same_run(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for override in ("data.verify=true", "data.load=memory", "data.workers=2"):
        assert config_changes(config, apply_overrides(config, [override])) == []


def test_a_file_changing_while_it_is_hashed_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    media = tmp_path / "corpus" / "media" / "000" / "0000003.wav"
    hash_file = extraction.sha256_file

    def hashing_while_copied(path: Any) -> str:
        found = hash_file(path)
        if Path(path) == media:  # still being written
            with open(media, "ab") as handle:
                handle.write(b"\0" * 64)
        return found

    monkeypatch.setattr(extraction, "sha256_file", hashing_while_copied)
    prepare(config, progress=False)
    assert HashCache(FeatureStore(tmp_path / "corpus" / "store")).lookup(media) is None
