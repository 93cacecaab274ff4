"""Emotion timelines: windows, paths per window, equivalence with whole-clip prediction, memory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import (
    logmel_checkpoint,
    looped_speech_wav,
    require_shared_data,
    vavl_peak_rss_mib,
    write_wav,
)
from vavl.cli import main
from vavl.media import SAMPLE_RATE, VideoReader, probe, read_audio
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


def _looped_clip(path: Path, seconds: float) -> Path:
    """A real RAVDESS clip (angry) looped to ``seconds``, 16 kHz mono WAV."""
    clip = read_audio(
        require_shared_data() / "ravdess-speech-16k/Actor_01/03-01-05-01-01-01-01.flac"
    )
    assert clip is not None
    looped = np.tile(clip, int(seconds * SAMPLE_RATE / len(clip)) + 1)[: int(seconds * SAMPLE_RATE)]
    return write_wav(path, looped)


def _alone(
    predictor: Predictor, path: Path, start: float, end: float
) -> dict[str, dict[str, float]]:
    """Each path's probabilities for [start, end) of ``path`` given as its own input: the
    decoded samples and frames of that span only."""
    waveform = read_audio(path)
    assert waveform is not None
    sound = waveform[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
    if probe(path).video is None:
        prediction = predictor.predict(sound)
    else:
        faces = predictor.pipeline.faces
        decoded = list(VideoReader(path, max_side=faces.max_side))
        frames = [f.image for f in decoded if start - 1e-6 <= f.time < end - 1e-6]
        fps = probe(path).video.fps  # type: ignore[union-attr]
        prediction = predictor.predict(frames, fps=fps, waveform=sound)
    return {path: result.probabilities for path, result in prediction.paths.items()}


@pytest.mark.parametrize(
    "recording", ["looped RAVDESS clip (2 min)", "face-video-samples/visualvoice/interview.mp4"]
)
@pytest.mark.slow
def test_every_window_is_answered_as_the_same_span_alone(
    predictor: Predictor, recording: str, tmp_path: Path
) -> None:
    """Where a window sits in the file must not change its answer: each timeline window of a
    real recording gets what the same audio and frames get as their own input."""
    if recording.startswith("looped"):
        path, every = _looped_clip(tmp_path / "loop.wav", 120), 9  # a sample of its 118
    else:
        path, every = require_shared_data() / recording, 3  # 5 of its 15, first to last
    timeline = predictor.timeline(path, window=3.0, hop=1.0)
    assert len(timeline.windows) == (118 if recording.startswith("looped") else 15)
    compared = 0
    for window in timeline.windows[::every]:
        alone = _alone(predictor, path, window.start, window.end)
        assert set(alone) == set(window.paths), window.start
        for name, probabilities in alone.items():
            assert window.paths[name].probabilities == pytest.approx(probabilities, abs=0.02), (
                window.start,
                name,
            )
            compared += 1
    assert compared >= 14  # the loop: 14 windows x audio; the interview: 5 x 3 paths


def test_a_long_file_is_the_mean_of_its_windows_alone(predictor: Predictor, tmp_path: Path) -> None:
    path = _looped_clip(tmp_path / "loop.wav", 40)  # 12 s + 12 s + 12 s + the last 4 s
    whole = predictor.predict(path)
    assert whole.aggregated is not None and whole.aggregated["windows"] == 4
    spans = [(0, 12), (12, 24), (24, 36), (36, 40)]
    windows = [_alone(predictor, path, start, end)["audio"] for start, end in spans]
    mean = {label: float(np.mean([w[label] for w in windows])) for label in windows[0]}
    assert whole.paths["audio"].probabilities == pytest.approx(mean, abs=1e-4)


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
    with open(tmp_path / "WDA_KatieHill_000.mp4.timeline.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"] for row in rows} == {"audio", "visual", "audiovisual"}
    assert rows[0]["start"] == "0.0" and float(rows[-1]["end"]) <= 8.1
    document = json.loads((tmp_path / "WDA_KatieHill_000.mp4.timeline.json").read_text())
    assert document["window"] == 2.0 and len(document["windows"]) == 7
    assert (tmp_path / "WDA_KatieHill_000.mp4.timeline.png").stat().st_size > 20_000


@pytest.mark.slow
def test_memory_does_not_grow_with_the_length_of_the_file(tmp_path: Path) -> None:
    """Whole-file prediction and timelines of 2 and 10 minutes of 48 kHz stereo speech (both
    fill the engine's batches): the peak resident memory of the process grows by less than
    holding the longer file's 16 kHz samples alone would add (30 MiB more than the shorter's;
    measured: 16 MiB of allocator growth). A tiny log-mel model with 4 s windows keeps it fast
    and its own working memory small."""
    small = ["model.model_dim=16", "model.heads=2", "model.audio_blocks=1"]
    model = logmel_checkpoint(tmp_path / "logmel.pt", "prediction.max_clip_seconds=4", *small)
    peaks = {}
    for minutes in (2, 10):
        path = looped_speech_wav(tmp_path / f"talk{minutes}.wav", minutes)
        base = ["predict", str(path), "--model", str(model)]
        timeline = [*base, "--timeline", "--hop", "3", "--timeline-dir", str(tmp_path / "t")]
        peaks[minutes] = (vavl_peak_rss_mib(base), vavl_peak_rss_mib(timeline))
        path.unlink()
    for short, long in zip(peaks[2], peaks[10], strict=True):
        assert long <= short + 24, peaks
    document = json.loads((tmp_path / "t" / "talk10.wav.timeline.json").read_text())
    assert len(document["windows"]) == 200


def test_long_files_are_predicted_as_the_mean_of_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = logmel_checkpoint(tmp_path / "logmel.pt")  # max_clip_seconds: 12
    long, short = looped_speech_wav(tmp_path / "long.wav", 0.5), tmp_path / "short.wav"
    looped_speech_wav(short, 0.1)
    assert main(["predict", str(long), str(short), "--model", str(model), "--format", "json"]) == 0
    first, second = json.loads(capsys.readouterr().out)["predictions"]
    assert first["aggregated"]["windows"] == 3  # 12 s + 12 s + the last 6 s
    assert first["aggregated"]["windows_per_path"] == {"audio": 3}
    assert first["duration"] == pytest.approx(30.0, abs=0.05)
    assert sum(first["paths"]["audio"]["probabilities"].values()) == pytest.approx(1.0)
    assert second["aggregated"] is None and set(second["paths"]) == {"audio"}


def test_a_short_clip_draws_its_one_window_and_names_never_collide(tmp_path: Path) -> None:
    model = logmel_checkpoint(tmp_path / "logmel.pt")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        looped_speech_wav(tmp_path / folder / "x.wav", 0.03)  # 1.8 s: shorter than a window
    clips = [str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.wav")]
    out = tmp_path / "out"
    assert (
        main(["predict", *clips, "--model", str(model), "--timeline", "--timeline-dir", str(out)])
        == 0
    )
    assert sorted(p.name for p in out.glob("*.png")) == [
        "x.wav-2.timeline.png",
        "x.wav.timeline.png",
    ]
    timeline = Predictor.load(model).timeline(clips[0])
    assert len(timeline.windows) == 1
    (axes,) = timeline.figure().axes
    assert len(axes.patches) == len(timeline.labels)  # one bar per class
    assert axes.get_ylabel() == "probability"
