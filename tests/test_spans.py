"""A span of a longer recording predicted as if it were its own file (`--start`, `--end`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import require_shared_data, write_wav
from vavl.cli import main
from vavl.errors import MediaError
from vavl.features.store import FeatureStore
from vavl.media import SAMPLE_RATE, read_audio
from vavl.predict import Predictor
from vavl.spans import Span

RAVDESS = "ravdess-speech-16k/Actor_01/03-01-{:02d}-02-01-01-01.flac"  # strong intensity


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


def _speech(emotion: int) -> np.ndarray:
    samples = read_audio(require_shared_data() / RAVDESS.format(emotion))
    assert samples is not None
    return samples


def test_a_span_is_predicted_as_the_same_audio_alone(
    predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An angry, a happy and a sad utterance in one recording: the span of the happy one gets
    what that utterance gets as its own file, and not what the recording gets."""
    angry, happy, sad = _speech(5), _speech(3), _speech(4)
    recording = write_wav(tmp_path / "three.wav", np.concatenate([angry, happy, sad]))
    alone = write_wav(tmp_path / "happy.wav", happy)
    start = len(angry) / SAMPLE_RATE
    end = start + len(happy) / SAMPLE_RATE
    expected = predictor.predict(alone).paths["audio"].probabilities
    span = predictor.predict(recording, span=Span(start, end))
    assert span.paths["audio"].probabilities == pytest.approx(expected, abs=1e-4)
    assert span.span == pytest.approx((start, end), abs=1e-3)
    assert span.duration == pytest.approx(end - start, abs=1e-3)
    whole = predictor.predict(recording).paths["audio"].probabilities
    assert whole != pytest.approx(expected, abs=1e-2)

    # The command line says the same, and names the span in every format.
    arguments = ["predict", str(recording), "--start", f"{start}", "--end", f"{end}"]
    assert main([*arguments, "--format", "json"]) == 0
    (written,) = json.loads(capsys.readouterr().out)["predictions"]
    assert written["span"] == pytest.approx([start, end], abs=1e-3)
    assert written["paths"]["audio"]["probabilities"] == pytest.approx(expected, abs=1e-4)
    assert main(arguments) == 0
    assert f"three.wav [{start:g} s to {round(end, 3):g} s]:" in capsys.readouterr().out
    assert main([*arguments, "--format", "csv"]) == 0
    header, row = [line for line in capsys.readouterr().out.splitlines() if line]
    assert header.startswith("file,start,end,status") and f",{start},{round(end, 3)}," in row


def test_a_span_of_a_video_reads_its_frames_only_and_never_the_whole_files_features(
    predictor: Predictor, tmp_path: Path
) -> None:
    """A span of a video samples its own frames; with a store holding the whole file's
    features (`vavl extract`), the span is still read from the media, not from those."""
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"
    span = Span(0.5, 1.7)
    cut = predictor.predict(clip, span=span)
    assert set(cut.paths) == {"audio", "visual", "audiovisual"}
    rate = predictor.pipeline.visual.frame_rate  # type: ignore[union-attr]
    assert abs(cut.frames_sampled - 1.2 * rate) <= 1
    store = tmp_path / "store"
    assert main(["extract", str(clip), "--out", str(store), "--quiet"]) == 0
    stored = predictor.predict(clip, span=span, store=FeatureStore(store))
    for name, result in cut.paths.items():
        assert stored.paths[name].probabilities == pytest.approx(result.probabilities, abs=1e-5)
    whole = predictor.predict(clip, store=FeatureStore(store))
    assert whole.frames_sampled > cut.frames_sampled
    assert whole.paths["audio"].probabilities != pytest.approx(
        cut.paths["audio"].probabilities, abs=1e-3
    )


def test_spans_that_name_nothing_are_one_line(
    predictor: Predictor, capsys: pytest.CaptureFixture[str]
) -> None:
    data = require_shared_data()
    clip = data / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"  # 2.24 s
    with pytest.raises(MediaError, match=r"1001_DFA_ANG_XX\.flv: the span starts at 5 s but"):
        predictor.predict(clip, span=Span(5.0))
    with pytest.raises(MediaError, match=r"single_face\.jpg: a still image has no time span"):
        predictor.predict(data / "face-video-samples/pyfeat/single_face.jpg", span=Span(1.0))
    with pytest.raises(MediaError, match=r"too short \(0\.10 s"):
        predictor.predict(clip, span=Span(1.0, 1.1))
    assert main(["predict", str(clip), "--start", "2", "--end", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith("--end 1 must come after --start 2")
    assert main(["predict", str(clip), "--start", "1", "--timeline"]) == 2
    assert "--timeline draws whole files" in capsys.readouterr().err
