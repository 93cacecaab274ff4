from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vavl.config import ExperimentConfig
from vavl.config_files import apply_overrides, load_config, save_config, shipped_configs
from vavl.errors import ConfigError
from vavl.types import CREMA_D_EMOTIONS


def test_defaults_are_the_papers_recipe() -> None:
    config = ExperimentConfig()
    model, training = config.model, config.training
    assert (model.audio_dim, model.visual_dim, model.projection_dim, model.model_dim) == (
        1024,
        1408,
        50,
        512,
    )
    assert (model.audio_blocks, model.visual_blocks, model.shared_blocks) == (3, 3, 2)
    assert (model.heads, model.kernel_size, model.dropout) == (8, 31, 0.1)
    assert config.task.labels == CREMA_D_EMOTIONS
    assert (training.learning_rate, training.weight_decay, training.betas) == (
        5e-5,
        5e-7,
        (0.95, 0.999),
    )
    assert (training.epochs, training.batch_size) == (20, 32)
    assert training.resolved_reconstruction_weight("classification") == 2.0
    assert training.resolved_reconstruction_weight("regression") == 1.0
    assert training.modality_dropout == 0.0


def test_yaml_and_toml_read_the_same(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("model:\n  audio_dim: 384\ntraining:\n  epochs: 3\n")
    (tmp_path / "a.toml").write_text("[model]\naudio_dim = 384\n[training]\nepochs = 3\n")
    from_yaml, from_toml = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.toml")
    assert from_yaml == from_toml
    assert from_yaml.model.audio_dim == 384 and from_yaml.training.epochs == 3


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    config = load_config("demo-synthetic")
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def _one_line_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_unknown_field_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  model_dimm: 256\n")
    assert "unknown field 'model.model_dimm'" in _one_line_error(path)


def test_wrong_feature_dims_fail_at_load(tmp_path: Path) -> None:
    path = tmp_path / "dims.yaml"
    path.write_text("model:\n  audio_dim: 1024\ndata:\n  source: synthetic\n  audio_dim: 384\n")
    message = _one_line_error(path)
    assert "model.audio_dim is 1024" in message and "384" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  model_dim: 100\n  heads: 8\n", "divisible by heads"),
        ("model:\n  kernel_size: 30\n", "kernel_size must be odd"),
        ("training:\n  epochs: many\n", "training.epochs"),
        ("task:\n  kind: ordinal\n", "task.kind"),
        ("task:\n  labels: [a, a]\n", "duplicates"),
        ("model: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_values_fail_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert expected in _one_line_error(path)


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("no-such-config")
    assert "demo-synthetic" in shipped_configs()


def test_overrides_are_validated() -> None:
    config = apply_overrides(ExperimentConfig(), ["training.epochs=3", "model.heads=4"])
    assert config.training.epochs == 3 and config.model.heads == 4
    with pytest.raises(ConfigError, match=r"unknown field 'training\.epoch'"):
        apply_overrides(config, ["training.epoch=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(config, ["training.epochs"])


def test_every_shipped_config_loads_and_takes_every_method() -> None:
    from vavl.methods import METHODS

    for name in shipped_configs():
        config = load_config(name)
        for method, overrides in METHODS.items():
            with_method = apply_overrides(config, [*overrides, f"method={method}"])
            assert with_method.data == config.data and with_method.features == config.features
    compare = load_config("compare-crema-d")
    assert (compare.model.audio_dim, compare.model.visual_dim) == (1024, 1408)
    assert compare.features.audio == "wav2vec2" and compare.features.visual == "enet_b2"
    assert compare.data is not None and compare.data.split.method == "partitions"  # type: ignore[union-attr]


def test_the_model_option_names_a_known_method(capsys: pytest.CaptureFixture[str]) -> None:
    from vavl.cli import main

    assert main(["config", "demo-synthetic", "--model", "transformer"]) == 2
    assert (
        "--model transformer: unknown; choose from vavl, vavl-small, vavl-no-shared"
        in capsys.readouterr().err
    )
    assert (
        main(["config", "demo-synthetic", "--model", "auxformer", "--set", "model.heads=10"]) == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"] == "auxformer" and printed["model"]["model_dim"] == 50
    assert printed["model"]["heads"] == 10 and printed["training"]["recipe"] == "joint"


def test_a_config_extends_another_section_by_section(tmp_path: Path) -> None:
    """``extends``: the fields a file gives replace the base's, section by section; the rest
    (the CREMA-D partitions' speaker lists, say) comes from the base."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: crema-d-offline\ntraining: {epochs: 3}\ndata: {store: /tmp/s}\n")
    config = load_config(mine)
    base = load_config("crema-d")
    assert config.training.epochs == 3 and config.training.batch_size == base.training.batch_size
    assert config.features.audio == "whisper-base" and config.model.audio_dim == 512
    assert config.data.store == Path("/tmp/s")  # type: ignore[union-attr]
    assert config.data.split == base.data.split  # type: ignore[union-attr]
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: extends a\.yaml, which extends it back"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: [crema-d]\n")
    with pytest.raises(ConfigError, match="extends takes a config name or file"):
        load_config(tmp_path / "c.yaml")
