"""Emotion timelines: windows, paths per window, equivalence with whole-clip prediction, memory."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from helpers import real_face_frames, require_shared_data, write_media
from vavl.cli import main
from vavl.features import pipeline as pipeline_module
from vavl.media import SAMPLE_RATE
from vavl.predict import Predictor


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


def test_one_window_over_a_short_clip_is_the_clip_prediction(predictor: Predictor) -> None:
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_FEA_XX.flv"
    timeline = predictor.timeline(clip, window=3.0, hop=1.0)
    assert len(timeline.windows) == 1
    whole = predictor.predict(clip)
    for path, result in whole.paths.items():
        assert timeline.windows[0].paths[path].probabilities == pytest.approx(
            result.probabilities, abs=1e-5
        )


def test_windows_follow_what_each_moment_has(predictor: Predictor) -> None:
    # The face arrives halfway; the audio track stops at 4 s.
    clip = require_shared_data() / "face-video-samples/pyfeat/noface_face.mov"
    timeline = predictor.timeline(clip, window=2.0, hop=0.5)
    starts = [w.start for w in timeline.windows]
    assert starts == pytest.approx(np.arange(0, 4.5, 0.5))
    paths = [set(w.paths) for w in timeline.windows]
    assert paths[0] == {"audio"} and paths[-1] == {"visual"}
    assert {"audio", "visual", "audiovisual"} in paths


def test_cli_writes_timelines(tmp_path: Path) -> None:
    clip = require_shared_data() / "face-video-samples/hdtf-sadtalker/WDA_KatieHill_000.mp4"
    assert (
        main(
            [
                "predict",
                str(clip),
                "--timeline",
                "--window",
                "2",
                "--hop",
                "1",
                "--timeline-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    with open(tmp_path / "WDA_KatieHill_000.timeline.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"] for row in rows} == {"audio", "visual", "audiovisual"}
    assert rows[0]["start"] == "0.0" and float(rows[-1]["end"]) <= 8.1
    document = json.loads((tmp_path / "WDA_KatieHill_000.timeline.json").read_text())
    assert document["window"] == 2.0 and len(document["windows"]) == 7
    assert (tmp_path / "WDA_KatieHill_000.timeline.png").stat().st_size > 20_000


def test_memory_does_not_grow_with_the_length_of_the_file(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    face = real_face_frames(count=1)[0]
    frame = np.full((288, 352, 3), 70, np.uint8)
    frame[16:272, 48:304] = face
    monkeypatch.setattr(pipeline_module, "FRAME_CACHE_BYTES", 8 * 2**20)
    peaks = {}
    for minutes in (1, 4):
        seconds = minutes * 60
        speech = (
            np.random.default_rng(minutes).normal(0, 0.05, seconds * SAMPLE_RATE).astype(np.float32)
        )
        path = write_media(
            tmp_path / f"long{minutes}.mp4",
            (frame for _ in range(seconds * 2)),
            fps=2,
            audio=speech,
        )
        del speech
        tracemalloc.start()
        timeline = predictor.timeline(path, window=3.0, hop=3.0)
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert (
            len(timeline.windows) == seconds // 3 - 0 or len(timeline.windows) == seconds // 3 + 1
        )
        assert all(set(w.paths) == {"audio", "visual", "audiovisual"} for w in timeline.windows)
    assert peaks[4] < 1.25 * peaks[1], peaks  # four times longer, about the same memory
