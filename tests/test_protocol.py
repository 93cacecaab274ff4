"""The paper's protocol: the shipped paper configs carry the reference's settings, each switch
between vavl and the reference changes what it says, and the protocol's facts (arousal's
orientation, sample deviations, overlapping partitions, shared speakers) hold."""

from __future__ import annotations

import logging
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import demo_config, require_shared_data, small_model_config
from vavl.cli import main
from vavl.config import config_from_dict
from vavl.config_data import CorporaDataConfig, CorpusConfig
from vavl.config_files import apply_overrides, load_config
from vavl.corpora import load_corpus
from vavl.corpora.base import Clip, Split, check_clips
from vavl.data import Collator, Item
from vavl.experiment import partition_overlap
from vavl.methods import METHODS
from vavl.models import build_model
from vavl.models.auxformer import AuxFormer, TransformerStack
from vavl.models.conformer import (
    RelativeMultiHeadAttention,
    position_table,
    reference_shift,
)
from vavl.models.layers import MLP, masked_mean
from vavl.models.vavl import VAVL
from vavl.normalization import FeatureNormalizer
from vavl.preparation import ExperimentData, prepare
from vavl.training import build_recipe

PAPER_CONFIGS = (
    "crema-d",
    "msp-improv",
    "compare-crema-d",
    "crema-d-offline",
    "msp-improv-offline",
)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_carry_the_reference_settings(name: str) -> None:
    config = load_config(name)
    assert not config.task.soft_labels
    assert config.training.selection_path == "audiovisual"
    assert config.training.max_grad_norm is None
    assert config.training.shared_optimizer == "single"
    model = config.model
    assert (model.attention_scale, model.relative_positions) == ("model", "reference")
    assert model.linear_init == "xavier" and not model.depthwise_bias
    features = config.features
    if name.endswith("-offline"):  # the same recipe on features that need no weight files
        assert (features.audio, features.visual, model.audio_dim, model.visual_dim) == (
            "whisper-base", "fer", 512, 128)  # fmt: skip
        assert features.audio_options == {} and features.standardise == ("audio", "visual")
    else:  # the paper's features, read from the weight files a user provides
        assert (features.audio, features.visual, model.audio_dim, model.visual_dim) == (
            "wav2vec2", "enet_b2", 1024, 1408)  # fmt: skip
        assert features.audio_options["layers"] == 12 and features.standardise == ("visual",)
    assert (model.head_dropout, model.head_final_activation) == (0.2, False)


def test_the_reference_initialisation_is_xavier_uniform_with_zero_biases() -> None:
    """``model.linear_init: xavier``: every linear layer of the Conformers (input projection,
    attention, feed-forward) starts as the reference's ``Linear``: weights from U(-b, b) with
    b = sqrt(6 / (fan_in + fan_out)), biases zero; PyTorch's default draws biases too."""
    config = small_model_config(audio_dim=32, visual_dim=24, model_dim=64)
    torch.manual_seed(0)
    reference = VAVL(config.model_copy(update={"linear_init": "xavier"}), 4)
    default = VAVL(config, 4)
    for model, xavier in ((reference, True), (default, False)):
        layers = [m for m in model.audio_encoder.modules() if isinstance(m, nn.Linear)]
        assert len(layers) > 5
        for layer in layers:
            weight = layer.weight.detach()
            fan_out, fan_in = weight.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            if layer.bias is not None:
                assert bool((layer.bias == 0).all()) == xavier
            if xavier:
                assert float(weight.abs().max()) <= bound
                assert float(weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
            else:  # Kaiming-uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                assert float(weight.abs().max()) <= 1 / math.sqrt(fan_in) + 1e-6
    # The reference's depthwise convolutions have no bias: 53,884,818 parameters at the paper's
    # size, 4,096 fewer than with one (512 channels x 8 blocks).
    paper = load_config("compare-crema-d").model
    assert sum(p.numel() for p in VAVL(paper, 6).parameters()) == 53_884_818
    with_bias = VAVL(paper.model_copy(update={"depthwise_bias": True}), 6)
    assert sum(p.numel() for p in with_bias.parameters()) == 53_884_818 + 4_096
    # The heads are the reference's nn.Linear: PyTorch's default under both settings.
    assert not bool((reference.audio_head.layers[-1].bias == 0).all())


def test_features_reach_the_model_raw_where_the_reference_feeds_them_raw() -> None:
    """``features.standardise: [visual]``: the audio features pass as extracted (the
    reference's wav2vec2 states), the visual ones are standardised per dimension, by the
    training statistics and by a source's own alike; a saved normalizer keeps the choice."""
    rng = np.random.default_rng(0)
    items = [
        Item(
            f"c{k}",
            audio=rng.normal(5.0, 3.0, (7, 4)).astype(np.float32),
            visual=rng.normal(-2.0, 0.5, (5, 3)).astype(np.float32),
            metadata={"corpus": "a" if k < 4 else "b"},
        )
        for k in range(8)
    ]
    normalizer = FeatureNormalizer.fit(items, ("visual",)).for_items(items, "source")
    frames = items[0].audio
    assert frames is not None and items[0].visual is not None
    assert np.array_equal(normalizer.apply("audio", frames), frames)
    assert np.array_equal(normalizer.apply("audio", frames, "a"), frames)
    visual = np.concatenate([normalizer.apply("visual", i.visual, "a") for i in items[:4]])  # type: ignore[arg-type]
    assert visual.mean(0) == pytest.approx(0.0, abs=1e-5)
    assert visual.std(0) == pytest.approx(1.0, abs=1e-4)
    again = FeatureNormalizer.from_state_dict(normalizer.state_dict())
    assert np.array_equal(again.apply("audio", frames, "b"), frames)
    both = FeatureNormalizer.fit(items)  # vavl's default
    assert not np.allclose(both.apply("audio", frames), frames)


def test_vavl_config_shows_the_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "crema-d"]) == 0
    shown = capsys.readouterr().out
    assert "soft_labels: false" in shown and "selection_path: audiovisual" in shown


def test_model_auxformer_is_the_references() -> None:
    config = apply_overrides(load_config("compare-crema-d"), list(METHODS["auxformer"]))
    model, training = config.model, config.training
    assert (model.heads, model.model_dim, model.causal_mask) == (10, 50, True)
    assert (model.embedding, model.alpha_init, model.audiovisual_output) == (
        "every-stack",
        "uniform",
        "mean",
    )
    assert training.betas == (0.9, 0.999) and training.weight_decay == 0
    assert training.max_grad_norm is None and training.epochs == 30
    assert training.learning_rate == 7.25e-4 and training.modality_dropout == 0.2
    assert (model.cross_attention_dropout, model.context_norm) == (0.0, "query")


def test_auxformer_cross_attention_reads_its_context_as_the_reference_does() -> None:
    """``context_norm: query`` normalises keys and values with the query's LayerNorm (no
    second one); ``cross_attention_dropout: 0`` keeps every cross-modal attention weight while
    the self-attention stacks keep model.dropout."""
    base = small_model_config(name="auxformer", model_dim=8, heads=2, dropout=0.3)
    reference = AuxFormer(base.model_copy(update={"context_norm": "query",
                                                  "cross_attention_dropout": 0.0}), 4)  # fmt: skip
    ours = AuxFormer(base, 4)
    for modality in ("audio", "visual"):
        for layer in reference.cross[modality].layers:
            assert layer.context_norm is None and layer.attention.dropout == 0.0
        for layer in ours.cross[modality].layers:
            assert layer.context_norm is not None and layer.attention.dropout == 0.3
        for layer in reference.memory[modality].layers:
            assert layer.attention.dropout == 0.3
    layer = reference.cross["audio"].layers[0].eval()
    x, context = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    mask, context_mask = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    with torch.no_grad():
        expected, _ = layer.attention(layer.norm(x), layer.norm(context), layer.norm(context))
        layer.feed_forward = nn.Sequential()  # the attention's residual alone
        out = layer(x, mask, context, context_mask)
    torch.testing.assert_close(out, x + expected + (x + expected))


def _attention(scale: str, positions: str) -> RelativeMultiHeadAttention:
    torch.manual_seed(0)
    return RelativeMultiHeadAttention(16, 4, 0.0, scale, positions)  # type: ignore[arg-type]


def test_attention_scale_divides_by_the_head_or_the_model_size() -> None:
    x = torch.randn(2, 7, 16)
    positions = position_table("exact", 7, 16, x.device)
    by_head = _attention("head", "exact").scores(x, positions)
    by_model = _attention("model", "exact").scores(x, positions)
    torch.testing.assert_close(by_model * math.sqrt(16), by_head * math.sqrt(4))


def _position_scores(style: str, x: torch.Tensor) -> torch.Tensor:
    """The position term alone (no content: keys zeroed), first clip, first head."""
    attention = _attention("head", style)
    with torch.no_grad():
        attention.key.weight.zero_()
        attention.key.bias.zero_()
        return attention.scores(x, position_table(style, x.shape[1], 16, x.device))[0, 0]  # type: ignore[arg-type]


def test_exact_positions_depend_on_the_distance_only_and_the_reference_does_not() -> None:
    constant = torch.ones(1, 8, 16)  # one query for every frame
    for style in ("exact", "reference"):
        scores = _position_scores(style, constant)
        shorter = _position_scores(style, constant[:, :6])
        same = torch.allclose(scores[:6, :6], shorter, atol=1e-5)
        # exact: the same distances score the same whatever the clip's (padded) length
        assert same == (style == "exact"), style
    exact = _position_scores("exact", constant)
    for offset in range(-7, 8):
        diagonal = torch.diagonal(exact, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    # The reference's shift: a key one step ahead of its query always scores 0.
    reference = _position_scores("reference", torch.randn(1, 8, 16))
    assert torch.all(torch.diagonal(reference, 1) == 0)


def test_the_reference_shift_reads_what_the_reference_reads() -> None:
    rows = torch.arange(4.0)[:, None] * 100 + torch.arange(4.0)[None, :]  # row i, position p
    shifted = reference_shift(rows)
    for i in range(4):
        for j in range(4):
            if j <= i:
                expected = 100 * i + (4 - 1 - (i - j))  # the position 3 - (i - j), this row
            elif j == i + 1:
                expected = 0  # the padding column
            else:
                expected = 100 * (i + 1) + (j - i - 2)  # the next query's row
            assert shifted[i, j] == expected, (i, j)


def test_head_layout_and_dropout() -> None:
    ours = MLP(8, (16, 4), 3, 0.1)
    reference = MLP(8, (16, 4), 3, 0.2, final_activation=False)
    kinds = [type(layer).__name__ for layer in reference.layers]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "Linear"]
    assert [type(layer).__name__ for layer in ours.layers].count("ReLU") == 2
    model = VAVL(small_model_config(head_dropout=0.2, head_final_activation=False), 4)
    dropouts = [m.p for m in model.audio_head.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.2] and len(model.fusion_head.layers) == 5


def test_the_residual_around_the_shared_block() -> None:
    torch.manual_seed(0)
    model = VAVL(small_model_config(), 4).eval()
    features = torch.randn(3, 9, model.config.audio_dim)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    assert model.shared_encoder is not None
    with torch.no_grad():
        branch = model.audio_encoder(model.audio_projection(features), mask)
        expected = masked_mean(model.shared_norm(model.shared_encoder(branch, mask) + branch), mask)
        torch.testing.assert_close(model.encode("audio", features, mask), expected)
        ablated = VAVL(small_model_config(shared_residual=False), 4).eval()
        ablated.load_state_dict(model.state_dict())
        assert not torch.allclose(ablated.encode("audio", features, mask), expected)


def _adam_steps(recipe: object, parameter: torch.nn.Parameter) -> list[int]:
    return [
        int(optimizer.state[parameter]["step"])
        for optimizer in recipe.optimizers.values()  # type: ignore[attr-defined]
        if parameter in optimizer.state
    ]


@pytest.mark.parametrize("style, expected", [("per-step", [1, 1]), ("single", [2])])
def test_the_shared_block_gets_one_adam_state_or_two(style: str, expected: list[int]) -> None:
    config = demo_config(
        "model.model_dim=16", "model.heads=2", "data.n_train=16",
        f"training.shared_optimizer={style}",
    )  # fmt: skip
    items = prepare(config).split(1)["train"][:16]
    torch.manual_seed(0)
    model = build_model(config.model, config.task.output_dim)
    recipe = build_recipe(model, config, torch.device("cpu"), None)
    recipe.train_step(Collator(config.task, FeatureNormalizer.fit(items))(items))
    assert isinstance(model, VAVL) and model.shared_encoder is not None
    shared = next(model.shared_encoder.parameters())
    assert _adam_steps(recipe, shared) == expected
    assert ("shared" in recipe.optimizers) == (style == "single")


def _auxformer(**changes: object) -> AuxFormer:
    torch.manual_seed(0)
    config = small_model_config(name="auxformer", model_dim=8, heads=2, **changes)
    model = build_model(config, 4)
    assert isinstance(model, AuxFormer)
    return model.eval()


def test_a_causal_stack_never_looks_ahead() -> None:
    config = small_model_config(name="auxformer", model_dim=8, heads=2, causal_mask=True)
    stack = TransformerStack(8, 2, 2, config, gated=False, positions=False).eval()
    x, mask = torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool)
    later = x.clone()
    later[:, 4:] = torch.randn(1, 2, 8)
    with torch.no_grad():
        torch.testing.assert_close(stack(x, mask)[:, :4], stack(later, mask)[:, :4])
        free = TransformerStack(8, 2, 2, config.model_copy(update={"causal_mask": False}),
                                gated=False, positions=False).eval()  # fmt: skip
        free.load_state_dict(stack.state_dict())
        assert not torch.allclose(free(x, mask)[:, :4], free(later, mask)[:, :4])


def test_embedding_once_or_at_every_stack() -> None:
    features = torch.randn(2, 5, small_model_config().audio_dim)
    once, every = _auxformer(), _auxformer(embedding="every-stack")
    every.load_state_dict(once.state_dict())
    projected = once.projections["audio"](features)
    with torch.no_grad():
        torch.testing.assert_close(every.embed("audio", features), projected)  # stacks embed
        scaled = once.embed("audio", features)
        assert torch.allclose(scaled[:, 0, 1::2], math.sqrt(8) * projected[:, 0, 1::2] + 1)
        memory = every.memory["audio"]
        x, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
        plain = TransformerStack(8, 2, 1, small_model_config(name="auxformer", model_dim=8,
                                 heads=2), gated=True, positions=False).eval()  # fmt: skip
        plain.layers = memory.layers
        plain.norm = memory.norm
        torch.testing.assert_close(memory(x, mask), plain(x * math.sqrt(8), mask))


def test_alpha_starts_at_a_half_or_uniformly() -> None:
    def alphas(model: AuxFormer) -> list[float]:
        return [float(p.detach()) for n, p in model.named_parameters() if n.endswith("alpha")]

    assert set(alphas(_auxformer())) == {0.5}
    drawn = alphas(_auxformer(alpha_init="uniform"))
    assert len(set(drawn)) == len(drawn) > 1 and all(0 <= a < 1 for a in drawn)


def test_the_audiovisual_output_is_the_fusion_head_or_the_mean_of_three() -> None:
    model = _auxformer(audiovisual_output="mean")
    dims = small_model_config()
    inputs = {
        "audio": torch.randn(2, 6, dims.audio_dim),
        "visual": torch.randn(2, 4, dims.visual_dim),
    }
    with torch.no_grad():
        output = model(**inputs)
        mean = sum(output.predictions[p] for p in ("audio", "visual")) / 3
        fused = model.fuse(
            *(model.embed(m, x) for m, x in [("audio", inputs["audio"])]),
            torch.ones(2, 6, dtype=torch.bool),
            model.embed("visual", inputs["visual"]),
            torch.ones(2, 4, dtype=torch.bool),
        )
        torch.testing.assert_close(output.predictions["audiovisual"], mean + fused / 3)
        model.train()
        torch.manual_seed(1)
        training = model(**inputs).predictions["audiovisual"]
        assert not torch.allclose(training, output.predictions["audiovisual"])


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\x00\x01" * 1600)


def test_msp_improv_arousal_stays_high_for_angry_and_happy_clips(tmp_path: Path) -> None:
    partitions = require_shared_data() / "vavl-partitions/MSP-IMPROV/labels_consensus_EmoP_4class_D"
    names = [line.split(",")[0] for line in (partitions / "labels_consensus_1.csv").open()][1:]
    chosen = {}
    for name in names:  # MSP-IMPROV-S<sentence><target emotion>-...: A, H, S or N
        target = name.split("-")[2][-1]
        if len([n for n in chosen.values() if n == target]) < 40:
            chosen[name] = target
    for name in chosen:
        _wav(tmp_path / "MSP-IMPROV" / name)
    corpus = load_corpus(
        CorpusConfig(format="msp-improv", root=tmp_path / "MSP-IMPROV", partitions=partitions)
    )
    arousal: dict[str, list[float]] = {}
    for clip in corpus.clips:
        target = chosen[clip.id.split("/")[-1] + ".wav"]
        assert clip.attributes is not None
        arousal.setdefault(target, []).append(clip.attributes["arousal"])
    means = {target: float(np.mean(values)) for target, values in arousal.items()}
    assert min(means["A"], means["H"]) > max(means["S"], means["N"]) + 0.2, means


def test_attributes_scale_by_the_training_range_or_the_fixed_rating_scale() -> None:
    """vavl's default maps the training split's range to 0-1; the reference's MSP-IMPROV maps
    the 1-5 rating scale, (x - 1) / 4, whatever the split holds; older configs said a bool."""
    items = {
        name: Item(name, attributes=np.array([value], np.float32))
        for name, value in (("a", 2.0), ("b", 4.0), ("c", 3.0), ("d", 5.0))
    }
    fold: dict[str, Split] = {"a": "train", "b": "train", "c": "dev", "d": "test"}
    scaled = {}
    for mode in ("train-range", "fixed", "none"):
        data = ExperimentData(items, [fold], {}, mode)  # type: ignore[arg-type]
        splits = data.split(1)
        scaled[mode] = [float(splits[s][0].attributes[0]) for s in ("dev", "test")]  # type: ignore[index]
    assert scaled["train-range"] == pytest.approx([0.5, 1.5])  # (x - 2) / 2
    assert scaled["fixed"] == pytest.approx([0.5, 1.0])  # (x - 1) / 4
    assert scaled["none"] == pytest.approx([3.0, 5.0])
    assert load_config("msp-improv").data.scale_attributes == "fixed"  # type: ignore[union-attr]
    for old, now in ((True, "train-range"), (False, "none")):
        corpus = CorpusConfig(format="msp-improv", root=Path("x"))
        assert CorporaDataConfig(corpora=(corpus,), scale_attributes=old).scale_attributes == now


def test_overlapping_partitions_are_noted() -> None:
    disjoint = [{"a": "test", "b": "train"}, {"a": "train", "b": "test"}]
    assert partition_overlap(disjoint) is None
    overlapping = [{"a": "test", "b": "test"}, {"a": "test", "b": "train"}]
    note = partition_overlap(overlapping)
    assert note is not None and "1 of 2 tested clips are in more than one" in note


def test_speakers_in_train_and_dev_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    media = Path(__file__)
    speakers = ["c:0", "c:1", "c:0", "c:2"]
    clips = [Clip(f"c/{i}", "c", s, {"audio": media}, label="x") for i, s in enumerate(speakers)]
    split = {"c/0": "train", "c/1": "train", "c/2": "dev", "c/3": "test"}
    with caplog.at_level(logging.WARNING, logger="vavl"):
        check_clips(clips, split)  # type: ignore[arg-type]
    assert "1 speaker(s) in both train and dev (c:0)" in caplog.text


def test_missing_real_clips_fail_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import helpers

    monkeypatch.setattr(helpers, "SHARED_DATA", tmp_path / "absent")
    monkeypatch.setenv("VAVL_REQUIRE_SHARED_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="real clips not found"):
        helpers.require_shared_data()
    monkeypatch.delenv("VAVL_REQUIRE_SHARED_DATA")
    with pytest.raises(pytest.skip.Exception, match="real clips not found"):
        helpers.require_shared_data()


def test_audio_can_be_capped_at_the_references_12_seconds(tmp_path: Path) -> None:
    source = require_shared_data() / "crema-d-samples" / "AudioMP3"
    manifest = tmp_path / "clips.csv"
    rows = [f"{source / f'1002_DFA_{e}_XX.mp3'},{e},s{i},{s}" for i, (e, s) in
            enumerate([("HAP", "train"), ("SAD", "dev"), ("ANG", "test")])]  # fmt: skip
    manifest.write_text("path,label,speaker,split\n" + "\n".join(rows) + "\n")
    config = config_from_dict(
        {
            "model": {"audio_dim": 80, "visual_dim": 8},
            "task": {"labels": ["HAP", "SAD", "ANG"]},
            "features": {"audio": "logmel", "audio_options": {"speech_floor_db": 30}},
            "data": {
                "source": "corpora",
                "store": str(tmp_path / "store"),
                "corpora": [{"format": "manifest", "root": str(manifest)}],
                "split": {"method": "partitions"},
            },
        }
    )
    whole = prepare(config, progress=False).items
    capped = prepare(apply_overrides(config, ["data.max_audio_seconds=1.0"]), progress=False).items
    for clip, item in whole.items():
        audio, cut = item.features("audio"), capped[clip].features("audio")
        assert audio is not None and cut is not None
        assert len(audio) > 100 and len(cut) == 50  # logmel: 50 frames/s
        assert capped[clip].length() == 50  # as the store's index says, before any read
        # The speech mask is cut with the frames.
        assert np.array_equal(capped[clip].valid_frames("audio"), item.valid_frames("audio")[:50])
    assert any(not item.valid_frames("audio").all() for item in whole.values())  # pauses masked
