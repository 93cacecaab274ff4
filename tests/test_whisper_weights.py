"""Whisper's weights from every source: the packages, a model folder a user names (option or
environment), the Hugging Face cache; every file checked; one line when none is found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import require_shared_data
from vavl.errors import WeightsError
from vavl.features import create_extractor, whisper_weights
from vavl.features.whisper_weights import BUILDS, ENVIRONMENT, whisper_model_dir
from vavl.media import read_audio
from vavl.predict import Predictor

CLIP = "crema-d-samples/AudioMP3/1002_DFA_DIS_XX.mp3"


@pytest.fixture(autouse=True)
def fresh_lookup() -> Iterator[None]:
    """Each test looks for the weights anew (the lookup is cached per process)."""
    whisper_weights._resolved.cache_clear()
    yield
    whisper_weights._resolved.cache_clear()


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """A faster-whisper model folder made of links to the packaged model's files."""
    packaged = whisper_model_dir("base")
    folder = tmp_path / "faster-whisper-base"
    folder.mkdir()
    for name in BUILDS["base"][0].files:
        (folder / name).symlink_to(packaged / name)
    return folder


def hide_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As if the weight packages were uninstalled, with an empty Hugging Face cache (returned)."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(whisper_weights, "_installed", lambda build: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.delenv(ENVIRONMENT["base"], raising=False)
    whisper_weights._resolved.cache_clear()
    return hub


def test_a_named_model_folder_gives_the_packaged_features(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waveform = read_audio(require_shared_data() / CLIP)
    assert waveform is not None
    packaged = create_extractor("whisper-base", blocks=3, pool=2)
    expected = packaged.extract(waveform)
    hide_packages(monkeypatch, tmp_path)
    by_option = create_extractor("whisper-base", blocks=3, pool=2, model_dir=str(model_folder))
    assert by_option.key() == packaged.key()  # where the weights came from is not a setting
    assert np.array_equal(by_option.extract(waveform), expected)
    monkeypatch.setenv(ENVIRONMENT["base"], str(model_folder))
    assert whisper_model_dir("base") == model_folder


def test_prediction_without_the_packages_from_a_model_folder(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = require_shared_data() / CLIP
    expected = Predictor.load().predict(clip).paths["audio"].probabilities
    hide_packages(monkeypatch, tmp_path)
    with pytest.raises(WeightsError, match="Whisper base weights not found"):
        Predictor.load().predict(clip)
    monkeypatch.setenv(ENVIRONMENT["base"], str(model_folder))
    got = Predictor.load().predict(clip).paths["audio"].probabilities
    assert got == pytest.approx(expected, abs=1e-6)


def test_the_hugging_face_cache_is_found(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = hide_packages(monkeypatch, tmp_path)
    snapshot = hub / "models--Systran--faster-whisper-base" / "snapshots" / "0123abc"
    snapshot.parent.mkdir(parents=True)
    model_folder.rename(snapshot)
    assert whisper_model_dir("base") == snapshot


def test_other_weights_and_no_weights_are_one_line(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_packages(monkeypatch, tmp_path)
    (model_folder / "config.json").unlink()
    (model_folder / "config.json").write_text('{"alignment_heads": []}')
    with pytest.raises(WeightsError, match=r"base: not a Whisper base build vavl knows"):
        whisper_model_dir("base", model_folder)
    with pytest.raises(WeightsError, match=r"empty: no Whisper base model here \(no model.bin\)"):
        whisper_model_dir("base", tmp_path / "empty")
    with pytest.raises(WeightsError) as missing:
        whisper_model_dir("base")
    message = str(missing.value)
    assert "\n" not in message
    for build in BUILDS["base"]:
        assert build.install_hint in message
    assert ENVIRONMENT["base"] in message and "Systran/faster-whisper-base" in message
