"""Feature store and ``vavl extract``: real data, bad inputs, resume, damaged entries, memory."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import (
    SHARED_DATA,
    real_face_frames,
    require_shared_data,
    shared_test_media,
    small_model_config,
    stored_item,
    write_media,
)
from vavl.checkpoint import load_checkpoint
from vavl.cli import main
from vavl.config import ExperimentConfig, FaceSettings, TaskConfig, TrainingConfig
from vavl.errors import ConfigError, DataError, FeatureMismatchError
from vavl.features import create_extractor
from vavl.features.base import feature_key
from vavl.features.extraction import ExtractionSettings, ExtractorSpec, run_extraction
from vavl.features.pipeline import FeaturePipeline
from vavl.features.records import ModalityFeatures
from vavl.features.store import EntryRecord, FeatureStore
from vavl.training import Trainer

HARD_CASES = {
    "crowd_walking.mp4": (0.3, 1.0),  # many small faces walking in and out
    "face_noface.mov": (0.2, 0.6),  # the face leaves halfway
    "noface_face.mov": (0.2, 0.6),  # the face arrives halfway
}


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["path"].endswith(name)]
    return row


def test_store_round_trip_and_damage_detection(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    features = ModalityFeatures(
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([0.0, 0.1, 0.2], np.float32),
        np.array([True, False, True]),
    )
    path = store.save("fer-abc", "ab" * 32, features, record=EntryRecord(duration_s=1.5))
    loaded = store.load("fer-abc", "ab" * 32)
    assert loaded is not None and loaded.features is not None
    assert np.array_equal(loaded.features.features, features.features)
    assert loaded.features.valid.tolist() == [True, False, True]
    assert loaded.record.duration_s == 1.5
    store.save("fer-abc", "cd" * 32, None, "no face found in 20 sampled frames")
    missing = store.load("fer-abc", "cd" * 32)
    assert (
        missing is not None
        and missing.features is None
        and "no face" in str(missing.missing_reason)
    )
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert store.load("fer-abc", "ab" * 32) is None  # detected, so it will be recomputed
    assert not list(tmp_path.rglob("*.tmp"))


def test_keys_cover_extractor_settings_and_face_settings() -> None:
    fer = create_extractor("fer")
    faces = FaceSettings().model_dump()
    assert feature_key(fer, faces) != feature_key(fer, FaceSettings(margin=0.4).model_dump())
    assert feature_key(fer, faces) != feature_key(create_extractor("fer", frame_rate=10), faces)
    assert feature_key(create_extractor("logmel")) == feature_key(create_extractor("logmel"))
    assert fer.describe(faces).key == feature_key(fer, faces)


def test_every_shared_file_gets_a_report_row(
    shared_store: tuple[Path, list[dict[str, Any]]],
) -> None:
    store, rows = shared_store
    assert len(rows) == len(shared_test_media())
    assert {row["status"] for row in rows} == {"extracted"}
    with open(store / "report.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    assert (store / "report.json").is_file()
    assert _row(rows, "crops256/sad.mp4")["notes"].startswith("truncated")
    assert _row(rows, "crops256/sad.mp4")["audio"] == "missing: silent audio track"
    assert (
        _row(rows, "front256/W009_front_sad_level3_001.mp4")["audio"] == "missing: no audio stream"
    )
    assert _row(rows, "Actor_02/03-01-01-01-01-01-02.wav")["visual"] == "missing: no video stream"
    assert _row(rows, "pyfeat/no_face.mp4")["visual"].startswith("missing: no face found")


def test_a_face_track_on_most_frames_of_every_video_with_a_face(
    shared_store: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, rows = shared_store
    videos = [r for r in rows if r["video_frames_sampled"] not in ("", 0)]
    assert len(videos) > 50
    for row in videos:
        name = Path(row["path"]).name
        if name == "no_face.mp4":
            continue
        share = row["frames_with_face"] / row["video_frames_sampled"]
        low, high = HARD_CASES.get(name, (0.9, 1.0))
        assert low <= share <= high, (name, share)


def test_a_second_run_does_no_work(shared_store: tuple[Path, list[dict[str, Any]]]) -> None:
    store, rows = shared_store
    entries = {p: p.stat().st_mtime_ns for p in (store / "features").rglob("*.npz")}
    again = run_extraction([r["path"] for r in rows], store, progress=False, report_name="again")
    assert {row["status"] for row in again.rows} == {"cached"}
    assert {p: p.stat().st_mtime_ns for p in entries} == entries
    assert [r["visual"] for r in again.rows] == [r["visual"] for r in rows]


def test_a_damaged_entry_is_recomputed(tmp_path: Path) -> None:
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_SAD_XX.flv"
    settings = ExtractionSettings(audio=ExtractorSpec("logmel"))
    run_extraction([clip], tmp_path, settings, progress=False)
    entry = next((tmp_path / "features").glob("fer-*/*/*.npz"))
    entry.write_bytes(entry.read_bytes()[:100])
    rerun = run_extraction([clip], tmp_path, settings, progress=False)
    assert rerun.rows[0]["status"] == "extracted"
    assert rerun.rows[0]["notes"] == "damaged visual entry recomputed"
    assert run_extraction([clip], tmp_path, settings, progress=False).rows[0]["status"] == "cached"


def test_cli_extract_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = require_shared_data() / "crema-d-samples/AudioMP3"
    store = tmp_path / "store"
    assert main(["extract", str(clips), "--out", str(store), "--visual", "none",
                 "--audio", "logmel", "--quiet"]) == 0  # fmt: skip
    assert "6 files: 6 extracted" in capsys.readouterr().out
    (tmp_path / "junk.mp3").write_bytes(b"junk")
    assert main(["extract", str(tmp_path / "junk.mp3"), "--out", str(store), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{tmp_path / 'junk.mp3'}: ")
    assert "1 files: 1 failed" in captured.out
    assert main(["extract", str(tmp_path / "nowhere"), "--out", str(store)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_extraction_resumes_without_redoing_anything(tmp_path: Path) -> None:
    clips = require_shared_data() / "mead-samples" / "front256"
    store = tmp_path / "store"
    command = [sys.executable, "-m", "vavl.cli", "extract", str(clips), "--out", str(store),
               "--audio", "none", "--quiet"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=environment, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(store.rglob("*.npz"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "extraction finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p: p.stat().st_mtime_ns for p in store.rglob("*.npz")}
    assert 5 <= len(done) < 24
    subprocess.run(command, env=environment, check=True, stderr=subprocess.DEVNULL)
    after = {p: p.stat().st_mtime_ns for p in store.rglob("*.npz")}
    assert len(after) == 24
    assert {p: after[p] for p in done} == done  # nothing finished was recomputed
    with open(store / "report.csv", newline="") as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert statuses.count("cached") == len(done) and statuses.count("extracted") == 24 - len(done)


@pytest.mark.slow
def test_a_ten_minute_video_is_read_once_and_no_frame_is_kept(tmp_path: Path) -> None:
    face = real_face_frames(count=1)[0]
    frame = np.full((360, 480, 3), 90, np.uint8)
    frame[50:306, 110:366] = face
    minutes, fps = 10, 2
    path = write_media(
        tmp_path / "long.mp4",
        (frame for _ in range(minutes * 60 * fps)),
        fps=fps,
        audio=np.random.default_rng(0).normal(0, 0.05, minutes * 60 * 16_000).astype(np.float32),
    )
    pipeline = FeaturePipeline(create_extractor("logmel"), create_extractor("fer", frame_rate=fps))
    tracemalloc.start()
    result = pipeline.extract(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.visual is not None and result.audio is not None
    assert result.frames_sampled == minutes * 60 * fps == result.frames_with_face
    assert len(result.audio.features) == minutes * 60 * 50
    decoded_size = minutes * 60 * fps * frame.nbytes + minutes * 60 * 16_000 * 4
    assert peak < 64 * 2**20 < decoded_size / 4, (peak, decoded_size)


def test_models_remember_their_extractors_and_refuse_others(
    shared_store: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    store_root, _ = shared_store
    store = FeatureStore(store_root)
    audio_key, visual_key = store.resolve_key("whisper-base"), store.resolve_key("fer")
    keys = {"audio": audio_key, "visual": visual_key}
    clips = sorted((SHARED_DATA / "crema-d-samples" / "VideoFlash").glob("*.flv"))
    items = [
        stored_item(store, clip, keys, id=clip.stem, label=i % 2) for i, clip in enumerate(clips)
    ]
    assert items[0].audio is not None and items[0].audio.shape[1] == 512
    assert items[0].visual is not None and items[0].visual.shape[1] == 128
    described = {
        "audio": store.extractor_description(audio_key),
        "visual": store.extractor_description(visual_key),
    }
    config = ExperimentConfig(
        model=small_model_config(audio_dim=512, visual_dim=128),
        task=TaskConfig(labels=("a", "b")),
        training=TrainingConfig(epochs=1, batch_size=3, progress=False),
    )
    Trainer(config, items[:4], items[4:], tmp_path, described).fit()
    checkpoint = load_checkpoint(tmp_path / "best.pt")
    assert checkpoint.extractors == described
    checkpoint.check_features(described)
    other = {"audio": create_extractor("logmel").describe()}
    with pytest.raises(FeatureMismatchError, match=f"trained on audio features from '{audio_key}'"):
        checkpoint.check_features(other)
    with pytest.raises(DataError, match="holds no 'facemesh' features"):
        store.resolve_key("facemesh")


def test_bad_extractor_options_fail_before_any_report(tmp_path: Path) -> None:
    clip = write_media(tmp_path / "clip.mp4", audio=np.zeros(16_000, np.float32))
    for workers, options in ((1, {"speech_floor_db": 0}), (2, {"speech_flor_db": 30})):
        settings = ExtractionSettings(audio=ExtractorSpec("logmel", options), visual=None)
        with pytest.raises(ConfigError, match="speech_flo"):
            run_extraction([clip], tmp_path / "store", settings, workers=workers, progress=False)
        assert not (tmp_path / "store" / "report.csv").exists()
