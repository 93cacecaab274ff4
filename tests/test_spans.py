"""A span of a longer recording predicted as if it were its own file (`--start`, `--end`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import demo_config, require_shared_data, write_wav
from vavl.cli import main
from vavl.config_files import apply_overrides
from vavl.errors import MediaError
from vavl.experiment import run_experiment
from vavl.features import create_extractor
from vavl.features.pipeline import FeaturePipeline
from vavl.features.store import FeatureStore
from vavl.media import SAMPLE_RATE, read_audio
from vavl.predict import Predictor
from vavl.preparation import prepare
from vavl.spans import Span

RAVDESS_SPEECH = "ravdess-speech-16k"
RAVDESS = RAVDESS_SPEECH + "/Actor_01/03-01-{:02d}-02-01-01-01.flac"  # strong intensity


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


def _recordings(folder: Path) -> tuple[Path, list[dict[str, str]]]:
    """Four RAVDESS actors, each one recording of four utterances in a row (neutral, happy,
    sad, angry), and a manifest naming each utterance by its span: actors 1 and 2 train, 3
    develops, 4 tests."""
    rows = []
    for actor in (1, 2, 3, 4):
        spoken, start = [], 0.0
        for label, name in (("neutral", "01-01"), ("happy", "03-02"), ("sad", "04-02"),
                            ("angry", "05-02")):  # fmt: skip
            clip = f"{RAVDESS_SPEECH}/Actor_{actor:02d}/03-01-{name}-01-01-{actor:02d}.flac"
            samples = read_audio(require_shared_data() / clip)
            assert samples is not None
            spoken.append(samples)
            end = start + len(samples) / SAMPLE_RATE
            split = "train" if actor <= 2 else "dev" if actor == 3 else "test"
            rows.append({"id": f"a{actor}-{label}", "path": f"actor{actor}.wav",
                         "start": f"{start}", "end": f"{end}", "label": label,
                         "speaker": f"{actor}", "split": split})  # fmt: skip
            start = end
        write_wav(folder / f"actor{actor}.wav", np.concatenate(spoken))
    manifest = folder / "segments.csv"
    manifest.write_text(
        ",".join(rows[0]) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows)
    )
    return manifest, rows


def test_segments_of_long_recordings_are_extracted_and_trained_on_as_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest's ``start``/``end`` make each row a span of a longer recording: extraction
    reads each span as its own file (the same features as the utterance alone), files it once,
    and training and evaluation see one clip per span."""
    manifest, rows = _recordings(tmp_path)
    store = tmp_path / "store"
    corpora = f"[{{format: manifest, root: {manifest}, modalities: [audio]}}]"
    config = apply_overrides(
        demo_config(),
        ["model.audio_dim=80", "features.audio=logmel", "training.epochs=1",
         f"data={{source: corpora, store: {store}, corpora: {corpora}}}"],
    )  # fmt: skip
    data = prepare(config, progress=False)
    assert sorted(data.items) == sorted(f"manifest/{row['id']}" for row in rows)
    # Actor 3's happy utterance: the same frames as its samples given as their own input.
    row = next(row for row in rows if row["id"] == "a3-happy")
    recording = read_audio(tmp_path / "actor3.wav")
    assert recording is not None
    first, last = (round(float(row[end]) * SAMPLE_RATE) for end in ("start", "end"))
    happy = recording[first:last]
    alone = FeaturePipeline(create_extractor("logmel"), None).extract_arrays(happy)
    assert alone.audio is not None
    span = data.items["manifest/a3-happy"].features("audio")
    assert span is not None and span == pytest.approx(alone.audio.features, abs=1e-5)
    assert len(list((store / "features").rglob("*@*.npz"))) == len(rows)

    result = run_experiment(config, tmp_path / "run", progress=False)
    assert result.test["audio"]["n"] == 4  # actor 4's four spans

    # `vavl extract` reads the same manifest: one row per span, all already in the store.
    assert main(["extract", str(manifest), "--out", str(store), "--audio", "logmel",
                 "--visual", "none", "--quiet"]) == 0  # fmt: skip
    assert "16 files: 16 cached" in capsys.readouterr().out
    with open(store / "report.csv", newline="") as handle:
        report = list(csv.DictReader(handle))
    assert [(r["start"], r["end"]) for r in report] == [(r["start"], r["end"]) for r in rows]


def test_a_span_past_the_end_of_its_file_is_one_line_naming_the_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_wav(tmp_path / "short.wav", _speech(3))  # about 3.5 s
    manifest = tmp_path / "spans.csv"
    manifest.write_text("path,start,end\nshort.wav,20,25\n")
    assert main(["extract", str(manifest), "--out", str(tmp_path / "s"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'short.wav'} [20 s to 25 s]: the span starts at 20 s but" in err
    manifest.write_text("path,start,end\nshort.wav,2,1\n")
    assert main(["extract", str(manifest), "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "spans.csv:2: not a time span: start 2, end 1" in capsys.readouterr().err
