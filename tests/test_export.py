"""ONNX export: the three paths agree with PyTorch on real features; the ONNX backend predicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import require_shared_data
from vavl.checkpoint import load_checkpoint, model_from_checkpoint
from vavl.cli import main
from vavl.data import Collator, Item
from vavl.predict import DEFAULT_MODEL, Predictor
from vavl.spans import WHOLE


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    assert main(["export", "--onnx", "--out", str(out)]) == 0
    return out


def test_onnx_paths_agree_with_pytorch_on_real_features(exported: Path) -> None:
    from vavl.export import OnnxModel

    assert sorted(p.name for p in exported.iterdir()) == [
        "audio.onnx", "audiovisual.onnx", "onnx.json", "visual.onnx"
    ]  # fmt: skip
    data = require_shared_data()
    uncropped = data / "mead-samples/M030_sad_3_001.mp4"
    clips = [*sorted((data / "crema-d-samples/VideoFlash").glob("*.flv")), uncropped]
    features = Predictor.load(DEFAULT_MODEL).features  # the model's own extractors
    items = [Item.from_features(clip.stem, features.of_file(clip, None, WHOLE)) for clip in clips]
    checkpoint = load_checkpoint(DEFAULT_MODEL)
    batch = Collator(checkpoint.config.task, checkpoint.normalizer)(items)  # padded, masked
    assert batch.audio_mask is not None and not bool(batch.audio_mask.all())  # real padding
    with torch.no_grad():
        expected = model_from_checkpoint(checkpoint)(**batch.inputs()).predictions
    onnx = OnnxModel(exported)
    inputs = {k: v.numpy() for k, v in batch.inputs().items() if v is not None}
    for path in ("audio", "visual", "audiovisual"):
        difference = np.abs(onnx.run(path, inputs) - expected[path].numpy()).max()
        assert difference < 1e-4, (path, difference)


def test_the_onnx_backend_predicts_like_pytorch(exported: Path) -> None:
    data = require_shared_data()
    clips = [
        data / "crema-d-samples/VideoFlash/1001_DFA_DIS_XX.flv",
        data / "crema-d-samples/AudioMP3/1002_DFA_DIS_XX.mp3",
        data / "mead-samples/front256/W011_front_fear_level3_001.mp4",
    ]
    torch_backend = Predictor.load()
    onnx_backend = Predictor.load(backend="onnx", onnx_dir=exported)
    for clip in clips:
        expected, actual = torch_backend.predict(clip), onnx_backend.predict(clip)
        assert set(actual.paths) == set(expected.paths)
        for path, result in expected.paths.items():
            assert actual.paths[path].probabilities == pytest.approx(result.probabilities, abs=1e-4)


def _export_of_another_model(exported: Path, folder: Path) -> Path:
    card = json.loads((exported / "onnx.json").read_text())
    card["extractors"]["audio"]["key"] = "logmel-000"
    for file in exported.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "onnx.json").write_text(json.dumps(card))
    return folder


def test_an_export_of_another_model_is_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="exported from another model"):
        Predictor.load(backend="onnx", onnx_dir=_export_of_another_model(exported, tmp_path))


def test_vavl_predict_backend_onnx(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_DIS_XX.flv"
    answers = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.json"
        arguments = ["predict", str(clip), "--format", "json", "--out", str(out)]
        assert main([*arguments, "--backend", backend, "--onnx-dir", str(exported)]) == 0
        (answer,) = json.loads(out.read_text())["predictions"]
        answers[backend] = answer["paths"]
    assert answers["onnx"].keys() == answers["torch"].keys() == {"audio", "visual", "audiovisual"}
    for path, result in answers["torch"].items():
        got = answers["onnx"][path]["probabilities"]
        assert got == pytest.approx(result["probabilities"], abs=1e-4)
    # The option reaches onnxruntime: another model's export is refused, in one line.
    (tmp_path / "other").mkdir()
    other = _export_of_another_model(exported, tmp_path / "other")
    capsys.readouterr()
    assert main(["predict", str(clip), "--backend", "onnx", "--onnx-dir", str(other)]) == 2
    assert "exported from another model" in capsys.readouterr().err
