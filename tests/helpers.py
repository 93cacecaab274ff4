"""Shared helpers for the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from vavl.config import ExperimentConfig, ModelConfig, apply_overrides, load_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def small_model_config(**changes: object) -> ModelConfig:
    """A VAVL small enough for unit tests, with every mechanism of the full one."""
    values: dict[str, object] = {
        "audio_dim": 12,
        "visual_dim": 10,
        "projection_dim": 8,
        "model_dim": 16,
        "audio_blocks": 2,
        "visual_blocks": 1,
        "shared_blocks": 1,
        "heads": 2,
        "kernel_size": 5,
        "head_hidden": (16, 8),
    }
    values.update(changes)
    return ModelConfig(**values)  # type: ignore[arg-type]


def demo_config(*overrides: str) -> ExperimentConfig:
    return apply_overrides(load_config("demo-synthetic"), ["training.progress=false", *overrides])
