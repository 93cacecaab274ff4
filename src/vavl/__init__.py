"""vavl: audio-visual emotion recognition with one model for audio, visual or both.

The public API mirrors the ``vavl`` command (see ``vavl.cli``). Names are imported lazily so that
``import vavl`` and ``vavl --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "ExperimentConfig": "vavl.config",
    "load_config": "vavl.config_files",
    "apply_overrides": "vavl.config_files",
    "with_method": "vavl.methods",
    "Item": "vavl.data",
    "Trainer": "vavl.training",
    "run_experiment": "vavl.experiment",
    "run_cv": "vavl.experiment",
    "evaluate_run": "vavl.experiment",
    "prepare": "vavl.preparation",
    "run_demo": "vavl.demo",
    "load_checkpoint": "vavl.checkpoint",
    "model_from_checkpoint": "vavl.checkpoint",
    "build_model": "vavl.models",
    "run_extraction": "vavl.features.extraction",
    "FeatureStore": "vavl.features.store",
    "FeaturePipeline": "vavl.features.pipeline",
    "create_extractor": "vavl.features.base",
    "Predictor": "vavl.predict",
    "Span": "vavl.spans",
}

if TYPE_CHECKING:
    from vavl.checkpoint import (
        load_checkpoint as load_checkpoint,
        model_from_checkpoint as model_from_checkpoint,
    )
    from vavl.config import ExperimentConfig as ExperimentConfig
    from vavl.config_files import apply_overrides as apply_overrides, load_config as load_config
    from vavl.data import Item as Item
    from vavl.demo import run_demo as run_demo
    from vavl.experiment import (
        evaluate_run as evaluate_run,
        run_cv as run_cv,
        run_experiment as run_experiment,
    )
    from vavl.features.base import create_extractor as create_extractor
    from vavl.features.extraction import run_extraction as run_extraction
    from vavl.features.pipeline import FeaturePipeline as FeaturePipeline
    from vavl.features.store import FeatureStore as FeatureStore
    from vavl.methods import with_method as with_method
    from vavl.models import build_model as build_model
    from vavl.predict import Predictor as Predictor
    from vavl.preparation import prepare as prepare
    from vavl.spans import Span as Span
    from vavl.training import Trainer as Trainer

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'vavl' has no attribute '{name}'")
