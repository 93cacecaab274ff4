"""The VAVL network: sizes, paths, masks and batch independence."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import small_model_config
from vavl.config import ModelConfig
from vavl.models import VAVL, build_model
from vavl.models.conformer import (
    ConformerEncoder,
    MaskedBatchNorm1d,
    RelativeMultiHeadAttention,
    relative_position_encoding,
)


def small_vavl(outputs: int = 4, **changes: object) -> VAVL:
    model = build_model(small_model_config(**changes), outputs)
    assert isinstance(model, VAVL)
    return model.eval()


def test_paper_sized_model_has_the_designed_shapes() -> None:
    model = build_model(ModelConfig(), 6)
    assert isinstance(model, VAVL)
    assert model.audio_projection.weight.shape == (50, 1024)
    assert model.audio_projection.bias is None
    assert model.visual_projection.weight.shape == (50, 1408)
    assert len(model.audio_encoder.blocks) == 3 and len(model.visual_encoder.blocks) == 3
    assert len(model.shared_encoder.blocks) == 2
    assert model.shared_encoder.blocks[0].attention.heads == 8
    assert model.shared_encoder.blocks[0].convolution.depthwise.kernel_size == (31,)
    head = [m for m in model.audio_head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [(512, 512), (512, 256), (256, 6)]
    fusion = [m for m in model.fusion_head.modules() if isinstance(m, torch.nn.Linear)]
    assert fusion[0].in_features == 1024
    reconstruction = [
        m for m in model.visual_reconstruction.modules() if isinstance(m, torch.nn.Linear)
    ]
    assert reconstruction[-1].out_features == 1408


def test_relative_attention_matches_a_direct_computation() -> None:
    attention = RelativeMultiHeadAttention(dim=8, heads=2, dropout=0.0).eval()
    x = torch.randn(1, 5, 8)
    mask = torch.ones(1, 5, dtype=torch.bool)
    positions = relative_position_encoding(5, 8, x.device)
    fast = attention(x, mask, positions)

    q = attention.query(x).view(5, 2, 4)
    k = attention.key(x).view(5, 2, 4)
    v = attention.value(x).view(5, 2, 4)
    p = attention.position(positions).view(9, 2, 4)  # row r: distance 4 - r
    scores = torch.empty(2, 5, 5)
    for h in range(2):
        for i in range(5):
            for j in range(5):
                row = 4 - (i - j)
                content = (q[i, h] + attention.content_bias[h]) @ k[j, h]
                position = (q[i, h] + attention.position_bias[h]) @ p[row, h]
                scores[h, i, j] = (content + position) / math.sqrt(4)
    weights = scores.softmax(-1)
    slow = attention.output(torch.einsum("hij,jhd->ihd", weights, v).reshape(1, 5, 8))
    assert torch.allclose(fast, slow, atol=1e-6)


def test_relative_encoding_depends_on_distance_only() -> None:
    short, long = (
        relative_position_encoding(3, 8, torch.device("cpu")),
        relative_position_encoding(6, 8, torch.device("cpu")),
    )
    # Distance 0 is the middle row; distances +-2 exist in both.
    assert torch.allclose(short[2], long[5]) and torch.allclose(short[0], long[3])


def _paired_inputs(batch: int = 3) -> dict[str, torch.Tensor]:
    audio, visual = torch.randn(batch, 23, 12), torch.randn(batch, 17, 10)
    audio_mask = torch.ones(batch, 23, dtype=torch.bool)
    visual_mask = torch.ones(batch, 17, dtype=torch.bool)
    audio_mask[0, 9:] = False
    visual_mask[0, 6:] = False
    audio[0, 9:] = 100.0  # junk in the padding must not matter
    visual[0, 6:] = -100.0
    return {"audio": audio, "audio_mask": audio_mask, "visual": visual, "visual_mask": visual_mask}


@pytest.mark.parametrize("config", [small_model_config(), ModelConfig(audio_dim=12, visual_dim=10)])
def test_a_clip_alone_and_padded_in_a_batch_agree(config: ModelConfig) -> None:
    model = build_model(config, 6).eval()
    inputs = _paired_inputs()
    with torch.no_grad():
        batched = model(**inputs)
        alone = model(audio=inputs["audio"][:1, :9], visual=inputs["visual"][:1, :6])
    for path in ("audio", "visual", "audiovisual"):
        difference = (batched.predictions[path][0] - alone.predictions[path][0]).abs().max()
        assert difference < 1e-5, (path, float(difference))
    for modality in ("audio", "visual"):
        difference = (batched.embeddings[modality][0] - alone.embeddings[modality][0]).abs().max()
        assert difference < 1e-5


def test_a_clip_does_not_depend_on_its_batch_neighbours() -> None:
    model = small_vavl()
    inputs = _paired_inputs(batch=4)
    with torch.no_grad():
        first = model(**inputs).predictions["audiovisual"][0]
        inputs["audio"][1:] = torch.randn_like(inputs["audio"][1:]) * 5
        inputs["visual"][1:] = torch.randn_like(inputs["visual"][1:]) * 5
        second = model(**inputs).predictions["audiovisual"][0]
    assert torch.allclose(first, second, atol=1e-6)


def test_masked_frames_inside_a_clip_are_ignored() -> None:
    model = small_vavl()
    visual = torch.randn(1, 12, 10)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, [3, 4, 8]] = False  # frames without a face
    with torch.no_grad():
        before = model(visual=visual, visual_mask=mask).predictions["visual"]
        visual[0, [3, 4, 8]] = 1e3
        after = model(visual=visual, visual_mask=mask).predictions["visual"]
    assert torch.allclose(before, after, atol=1e-6)


def test_padding_gets_no_gradient_in_training_mode() -> None:
    model = small_vavl(dropout=0.0).train()
    inputs = _paired_inputs()
    inputs["audio"].requires_grad_(True)
    inputs["visual"].requires_grad_(True)
    output = model(**inputs)
    sum(prediction.sum() for prediction in output.predictions.values()).backward()
    assert inputs["audio"].grad is not None and inputs["visual"].grad is not None
    assert inputs["audio"].grad[0, 9:].abs().max() == 0
    assert inputs["visual"].grad[0, 6:].abs().max() == 0
    assert inputs["audio"].grad[0, :9].abs().max() > 0


def test_batch_norm_statistics_skip_padding() -> None:
    norm = MaskedBatchNorm1d(3, momentum=1.0).train()
    x = torch.randn(2, 3, 7)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    x[1, :, 4:] = 1e4
    norm(x, mask)
    real = torch.cat([x[0], x[1, :, :4]], dim=1)
    assert torch.allclose(norm.running_mean, real.mean(dim=1), atol=1e-5)
    assert torch.allclose(norm.running_var, real.var(dim=1, unbiased=True), atol=1e-4)


def test_each_path_appears_only_when_its_inputs_do() -> None:
    model = small_vavl()
    inputs = _paired_inputs()
    with torch.no_grad():
        audio_only = model(audio=inputs["audio"], audio_mask=inputs["audio_mask"])
        visual_only = model(visual=inputs["visual"], visual_mask=inputs["visual_mask"])
        both = model(**inputs)
    assert set(audio_only.predictions) == {"audio"}
    assert set(visual_only.predictions) == {"visual"}
    assert set(both.predictions) == {"audio", "visual", "audiovisual"}
    # The unimodal paths of the audio-visual model give the unimodal models' answers.
    assert torch.allclose(both.predictions["audio"], audio_only.predictions["audio"], atol=1e-6)
    assert torch.allclose(both.predictions["visual"], visual_only.predictions["visual"], atol=1e-6)


def test_clips_missing_a_modality_inside_a_batch() -> None:
    model = small_vavl()
    inputs = _paired_inputs()
    inputs["visual_mask"][1] = False  # clip 1 has no video
    inputs["audio_mask"][2] = False  # clip 2 has no audio
    with torch.no_grad():
        output = model(**inputs)
        clip1_audio = model(audio=inputs["audio"][1:2]).predictions["audio"][0]
    assert output.present["audio"].tolist() == [True, True, False]
    assert output.present["visual"].tolist() == [True, False, True]
    assert output.present["audiovisual"].tolist() == [True, False, False]
    assert torch.isnan(output.predictions["audiovisual"][1:]).all()
    assert not torch.isnan(output.predictions["audio"][:2]).any()
    assert torch.allclose(output.predictions["audio"][1], clip1_audio, atol=1e-5)
    rows, index = output.rows("visual")
    assert index.tolist() == [0, 2] and rows.shape == (2, 4)


def test_encoder_outputs_zeros_on_padding() -> None:
    encoder = ConformerEncoder(4, 8, 1, 2, 3, 2, 0.0).eval()
    mask = torch.tensor([[True, True, False]])
    assert encoder(torch.randn(1, 3, 4), mask)[0, 2].abs().max() == 0
