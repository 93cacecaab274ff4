"""The feature-extractor interface and registry.

An extractor turns one modality into frame-level features: audio extractors take 16 kHz mono
waveforms, visual extractors take aligned face crops. Each has an ``id``, a ``version``, a
``dim`` and a ``frame_rate`` (frames per second), and ``settings()`` lists everything else that
changes its output: together they key the feature store, so features from a different extractor
or a different configuration are never mixed up.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from vavl.config import Modality
from vavl.errors import ConfigError, FeatureMismatchError

FloatArray = NDArray[np.float32]


class FeatureExtractor(ABC):
    id: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[Modality]
    dim: int
    frame_rate: float  # frames per second of the output

    def settings(self) -> dict[str, Any]:
        """Options that change the output (besides id and version)."""
        return {}

    def key(self) -> str:
        """A short stable name for id + version + settings, used to file features in the store."""
        description = json.dumps(
            {"id": self.id, "version": self.version, "settings": self.settings()}, sort_keys=True
        )
        return f"{self.id}-{hashlib.sha256(description.encode()).hexdigest()[:12]}"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "modality": self.modality,
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "settings": self.settings(),
            "key": self.key(),
        }


class AudioExtractor(FeatureExtractor):
    modality: ClassVar[Modality] = "audio"
    # The longest waveform ``extract`` takes at once; the pipeline feeds longer audio in chunks.
    chunk_seconds: float = 30.0

    @abstractmethod
    def extract(self, waveform: FloatArray) -> FloatArray:
        """(frames, dim) features of a 16 kHz mono waveform of at most ``chunk_seconds``."""


class VisualExtractor(FeatureExtractor):
    modality: ClassVar[Modality] = "visual"

    def __init__(self, frame_rate: float = 15.0) -> None:
        self.frame_rate = frame_rate

    @abstractmethod
    def extract(self, faces: NDArray[np.uint8]) -> FloatArray:
        """(n, dim) features of n aligned RGB face crops (n, size, size, 3)."""


ExtractorFactory = Callable[..., FeatureExtractor]
EXTRACTORS: dict[str, tuple[Modality, ExtractorFactory, str]] = {}


def register(
    name: str, modality: Modality, description: str
) -> Callable[[ExtractorFactory], ExtractorFactory]:
    """Class decorator adding an extractor to the registry under ``name``."""

    def add(factory: ExtractorFactory) -> ExtractorFactory:
        EXTRACTORS[name] = (modality, factory, description)
        return factory

    return add


_PRELOADED: dict[str, Future[Any]] = {}


def _preload_key(name: str, modality: Modality | None, options: dict[str, Any]) -> str:
    return json.dumps([name, modality, options], sort_keys=True, default=str)


def preload_extractor(name: str, modality: Modality, **options: Any) -> None:
    """Start building an extractor in a background thread; :func:`create_extractor` with the same
    arguments then takes it. Loading Whisper's weights (most of a second) so overlaps with
    importing torch and reading the checkpoint."""
    key = _preload_key(name, modality, options)
    if key not in _PRELOADED:
        pool = ThreadPoolExecutor(max_workers=1)
        _PRELOADED[key] = pool.submit(_build, name, modality, options)
        pool.shutdown(wait=False)  # its thread ends when the build does


def create_extractor(name: str, modality: Modality | None = None, **options: Any) -> Any:
    """The registered extractor ``name``, built with ``options``."""
    preloaded = _PRELOADED.pop(_preload_key(name, modality, options), None)
    if preloaded is not None:
        return preloaded.result()
    return _build(name, modality, options)


def _build(name: str, modality: Modality | None, options: dict[str, Any]) -> Any:
    if name not in EXTRACTORS:
        known = ", ".join(sorted(EXTRACTORS))
        raise ConfigError(f"unknown feature extractor '{name}' (known: {known})")
    registered_modality, factory, _ = EXTRACTORS[name]
    if modality is not None and registered_modality != modality:
        raise ConfigError(f"'{name}' is a {registered_modality} extractor, not a {modality} one")
    return factory(**options)


def check_extractors(
    expected: dict[str, Any], given: dict[str, Any], model_name: str = "the model"
) -> None:
    """Refuse features that do not come from the extractors a model was trained on.

    Both arguments map a modality to an extractor description (``FeatureExtractor.describe()``,
    or just an id); a modality the model never saw (None) is not checked.
    """
    for modality, wanted in expected.items():
        if wanted is None or given.get(modality) is None:
            continue
        have = given[modality]
        wanted_key = wanted.get("key", wanted.get("id")) if isinstance(wanted, dict) else wanted
        have_key = have.get("key", have.get("id")) if isinstance(have, dict) else have
        if wanted_key != have_key:
            wanted_id = wanted.get("id", wanted_key) if isinstance(wanted, dict) else wanted
            raise FeatureMismatchError(
                f"{model_name} was trained on {modality} features from '{wanted_key}' but these "
                f"come from '{have_key}'; extract them with the '{wanted_id}' extractor and the "
                "same settings"
            )
