"""The feature-extractor interface and registry.

An extractor turns one modality into frame-level features: audio extractors take 16 kHz mono
waveforms, visual extractors take aligned face crops. Each has an ``id``, a ``version``, a
``dim`` and a ``frame_rate`` (frames per second), and ``settings()`` lists everything else that
changes its output: together they key the feature store, so features from a different extractor
or a different configuration are never mixed up.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from vavl.errors import ConfigError, FeatureMismatchError
from vavl.media import SAMPLE_RATE
from vavl.types import Modality

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

    def describe(
        self, faces: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None
    ) -> ExtractorDescription:
        """What this extractor makes (with the face settings, for a visual one), and the
        ``options`` that rebuild it."""
        return ExtractorDescription(
            id=self.id,
            key=feature_key(self, faces),
            version=self.version,
            modality=self.modality,
            dim=self.dim,
            frame_rate=self.frame_rate,
            settings=self.settings(),
            faces=dict(faces) if faces is not None and self.modality == "visual" else None,
            options=None if options is None else dict(options),
        )


def feature_key(extractor: FeatureExtractor, faces: Mapping[str, Any] | None = None) -> str:
    """The store key of an extractor's features; a visual key also covers how faces were found
    and cropped (``faces``: the face settings as a dict)."""
    if extractor.modality != "visual" or faces is None:
        return extractor.key()
    description = json.dumps({"extractor": extractor.key(), "faces": dict(faces)}, sort_keys=True)
    return f"{extractor.id}-{hashlib.sha256(description.encode()).hexdigest()[:12]}"


def near_loudest(energy: NDArray[np.float64], range_db: float) -> NDArray[np.bool_]:
    """Which frames (by mean square) are within ``range_db`` of the loudest: loud enough to
    hold speech, where pauses and the room are not."""
    if len(energy) == 0:
        return np.zeros(0, bool)
    level = 10 * np.log10(np.maximum(energy, 1e-12))
    return np.asarray(level >= level.max() - range_db)


@dataclass(frozen=True)
class ExtractorDescription:
    """What made some features, in one record: filed with them in the store, listed in the
    extraction report, kept in checkpoints, and compared before features meet a model.

    ``key`` is what must match (the extractor, its version and every setting; for visual
    features the face settings too); ``id`` and ``options`` rebuild the extractor. A description
    saved as a bare id (synthetic features, features given as arrays) has only ``id`` and ``key``
    and cannot be rebuilt.
    """

    id: str
    key: str
    version: str | None = None
    modality: Modality | None = None
    dim: int | None = None
    frame_rate: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    faces: dict[str, Any] | None = None
    options: dict[str, Any] | None = None

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any] | str) -> ExtractorDescription:
        """A description as :meth:`to_dict` wrote it, or a bare extractor id."""
        if isinstance(saved, str):
            return cls(id=saved, key=saved)
        known = {name: saved[name] for name in cls.__dataclass_fields__ if name in saved}
        # A full description without options was made with the extractor's defaults.
        return cls(**{"key": saved.get("id", ""), "options": {}, **known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: unknown fields left out, but ``options`` always there (null: the
        extractor cannot be rebuilt), so that :meth:`from_saved` reads back the same record."""
        return {
            name: value
            for name, value in asdict(self).items()
            if value is not None or name == "options"
        }

    @property
    def rebuildable(self) -> bool:
        return self.options is not None

    def build(self, **changes: Any) -> FeatureExtractor:
        """The extractor again, with ``changes`` to its options (e.g. threads)."""
        if self.options is None:
            raise ConfigError(
                f"'{self.id}' features are named by their id only: the extractor's options are "
                "unknown, so it cannot be rebuilt"
            )
        return create_extractor(self.id, self.modality, **{**self.options, **changes})


Descriptions = Mapping[str, ExtractorDescription | None]  # modality -> what made its features


class AudioExtractor(FeatureExtractor):
    modality: ClassVar[Modality] = "audio"
    # The longest waveform ``extract`` takes at once; the pipeline feeds longer audio in chunks.
    chunk_seconds: float = 30.0
    # Frames more than this many dB below the loudest frame of what is predicted at once (a clip,
    # a window) are marked as not speech and masked like padding: pauses and the room around a
    # sentence differ between corpora (digital silence in one, a noise floor in another) and
    # would otherwise be learnt as emotion. None: every frame counts.
    speech_floor_db: float | None = None

    def set_speech_floor(self, speech_floor_db: float | str | None) -> None:
        try:
            floor = None if speech_floor_db is None else float(speech_floor_db)
        except ValueError:
            floor = math.nan
        if floor is not None and not 0 < floor <= 120:
            raise ConfigError(
                f"speech_floor_db must be a number of dB above 0 and at most 120, "
                f"not {speech_floor_db!r}"
            )
        self.speech_floor_db = floor

    def speech_settings(self) -> dict[str, Any]:
        """The speech floor as a setting (absent when off, so older features keep their key)."""
        return {} if self.speech_floor_db is None else {"speech_floor_db": self.speech_floor_db}

    def speech_frames(self, energy: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which frames count, from each frame's mean square."""
        if self.speech_floor_db is None:
            return np.ones(len(energy), bool)
        return near_loudest(energy, self.speech_floor_db)

    @abstractmethod
    def extract(self, waveform: FloatArray) -> FloatArray:
        """(frames, dim) features of a 16 kHz mono waveform of at most ``chunk_seconds``."""

    def extract_batch(self, waveforms: Sequence[FloatArray]) -> list[FloatArray]:
        """:meth:`extract` of each waveform (each at most ``chunk_seconds``); an extractor that
        runs several at once in less time overrides this, with the same results."""
        return [self.extract(waveform) for waveform in waveforms]

    def encode(self, waveforms: Sequence[FloatArray]) -> list[FloatArray]:
        """Each waveform's features as a file holding only it gets them: cut into
        ``chunk_seconds`` chunks, each extracted on its own (in batches), joined."""
        step = int(self.chunk_seconds * SAMPLE_RATE)
        owners, chunks = [], []
        for owner, waveform in enumerate(waveforms):
            for start in range(0, max(len(waveform), 1), step):
                owners.append(owner)
                chunks.append(waveform[start : start + step])
        parts: list[list[FloatArray]] = [[] for _ in waveforms]
        for owner, features in zip(owners, self.extract_batch(chunks), strict=True):
            parts[owner].append(features)
        return [np.concatenate(part).astype(np.float32, copy=False) for part in parts]


class VisualExtractor(FeatureExtractor):
    modality: ClassVar[Modality] = "visual"

    def __init__(self, frame_rate: float = 15.0) -> None:
        self.frame_rate = frame_rate

    @abstractmethod
    def extract(self, faces: NDArray[np.uint8]) -> FloatArray:
        """(n, dim) features of n aligned RGB face crops (n, size, size, 3)."""


ExtractorFactory = Callable[..., FeatureExtractor]


@dataclass(frozen=True)
class Registration:
    modality: Modality
    factory: ExtractorFactory
    description: str
    # Output size per frame: fixed, decided by the options, or None when unknown until built.
    dim: int | Callable[[dict[str, Any]], int] | None


EXTRACTORS: dict[str, Registration] = {}


def register(
    name: str,
    modality: Modality,
    description: str,
    dim: int | Callable[[dict[str, Any]], int] | None = None,
) -> Callable[[ExtractorFactory], ExtractorFactory]:
    """Class decorator adding an extractor to the registry under ``name``; ``dim`` is its
    output size, or a function of its options giving it (configs are checked against it at
    load)."""

    def add(factory: ExtractorFactory) -> ExtractorFactory:
        EXTRACTORS[name] = Registration(modality, factory, description, dim)
        return factory

    return add


def registered_dim(name: str, options: dict[str, Any] | None = None) -> int | None:
    """The output size of ``name`` with ``options``, as declared at registration (None: an
    unknown name, or a size known only once built)."""
    registration = EXTRACTORS.get(name)
    if registration is None or registration.dim is None:
        return None
    dim = registration.dim
    return dim if isinstance(dim, int) else dim(options or {})


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


def check_options(
    name: str, options: Mapping[str, Any], modality: Modality | None = None
) -> Registration:
    """The registration of extractor ``name``, once its option names are known to fit (without
    building it: no weights are loaded)."""
    if name not in EXTRACTORS:
        known = ", ".join(sorted(EXTRACTORS))
        raise ConfigError(f"unknown feature extractor '{name}' (known: {known})")
    registration = EXTRACTORS[name]
    if modality is not None and registration.modality != modality:
        raise ConfigError(f"'{name}' is a {registration.modality} extractor, not a {modality} one")
    accepted = inspect.signature(registration.factory).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown and all(p.kind != p.VAR_KEYWORD for p in accepted.values()):
        known = ", ".join(accepted) or "none"
        raise ConfigError(f"'{name}' has no option {', '.join(unknown)} (its options: {known})")
    return registration


def _build(name: str, modality: Modality | None, options: dict[str, Any]) -> Any:
    registration = check_options(name, options, modality)
    try:
        return registration.factory(**options)
    except (TypeError, ValueError) as error:  # a value of the wrong kind, e.g. a word for a number
        given = ", ".join(f"{key}={value!r}" for key, value in options.items())
        raise ConfigError(f"'{name}' cannot be built with {given}: {error}") from None


def check_extractors(
    expected: Descriptions, given: Descriptions, model_name: str = "the model"
) -> None:
    """Refuse features that do not come from the extractors a model was trained on; a modality
    the model never saw (None) is not checked."""
    for modality, wanted in expected.items():
        have = given.get(modality)
        if wanted is None or have is None:
            continue
        if wanted.key != have.key:
            raise FeatureMismatchError(
                f"{model_name} was trained on {modality} features from '{wanted.key}' but these "
                f"come from '{have.key}'; extract them with the '{wanted.id}' extractor and the "
                "same settings"
            )
