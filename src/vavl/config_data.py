"""The typed schema of an experiment's data: the synthetic set, or real corpora and how their
clips are split into folds (part of :class:`~vavl.config.ExperimentConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vavl.config_base import _Strict
from vavl.types import MODALITIES, Modality


class SyntheticDataConfig(_Strict):
    """A generated feature set whose labels are carried by the chosen modalities."""

    source: Literal["synthetic"] = "synthetic"
    n_train: int = Field(320, ge=1)
    n_dev: int = Field(80, ge=1)
    n_test: int = Field(80, ge=1)
    audio_dim: int = Field(32, gt=0)
    visual_dim: int = Field(24, gt=0)
    audio_frames: tuple[int, int] = (30, 80)
    visual_frames: tuple[int, int] = (20, 50)
    informative: tuple[Modality, ...] = MODALITIES
    missing_audio: float = Field(0.0, ge=0.0, le=1.0, description="share of clips with no audio")
    missing_visual: float = Field(0.0, ge=0.0, le=1.0, description="share of clips with no video")
    signal: float = Field(0.8, gt=0.0, description="strength of the label pattern per frame")
    speaker_spread: float = Field(
        0.3, ge=0.0, description="standard deviation of each speaker's feature offset"
    )
    folds: int = Field(1, ge=1, description="more than 1: speaker folds over all clips")
    fold: int = Field(1, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SyntheticDataConfig:
        for name in ("audio_frames", "visual_frames"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"data.{name} must be [min, max] with 1 <= min <= max")
        if self.missing_audio + self.missing_visual >= 1.0:
            raise ValueError("missing_audio + missing_visual must stay below 1")
        return self

    def dim(self, modality: Modality) -> int:
        return self.audio_dim if modality == "audio" else self.visual_dim


class CorpusConfig(_Strict):
    """One corpus of an experiment (see vavl.corpora for the layouts each format reads)."""

    format: Literal[
        "crema-d",
        "msp-improv",
        "msp-podcast",
        "mosei",
        "ravdess",
        "mead",
        "tess",
        "folder",
        "manifest",
    ]
    root: Path = Field(description="the corpus folder (for 'manifest': the CSV file)")
    name: str | None = Field(None, description="prefix of clip ids and speakers (default: format)")
    partitions: Path | None = Field(None, description="the authors' partition CSV folder")
    labels: Literal[
        "intended", "votes-audio", "votes-video", "votes-audiovisual", "votes-all", "authors"
    ] = Field("intended", description="CREMA-D: which labels to use")
    votes: Path | None = Field(None, description="CREMA-D: tabulatedVotes.csv if not in root")
    label_file: Path | None = Field(
        None,
        description="CMU-MOSEI: CMU_MOSEI_Labels.csd (needs h5py) or a CSV export of it "
        "(default: the .csd under root)",
    )
    label_map: str | dict[str, str | None] = Field(
        default_factory=dict,
        description="corpus label -> task label (null drops it), or a named map",
    )
    channels: tuple[Literal["speech", "song"], ...] = ("speech", "song")
    flip: tuple[str, ...] = Field(
        (),
        description="MSP-IMPROV: attributes to reverse (6 - value) at load; none by default: the "
        "released labels already rate angry and happy clips higher in arousal than sad and "
        "neutral ones (the reference reverses arousal in place every epoch)",
    )
    rescale: tuple[float, float] | None = Field(
        None,
        description="map the attributes from this corpus's rating scale (MSP-IMPROV 1-5, "
        "MSP-Podcast 1-7) onto [low, high], to train beside a corpus rated on that scale",
    )
    test_set: Literal["Test1", "Test2"] = Field(
        "Test1", description="MSP-Podcast: the Split_Set that tests (the other is left out)"
    )
    modalities: tuple[Modality, ...] = MODALITIES
    role: Literal["all", "train", "dev"] = Field(
        "all",
        description="'train': only ever used for training (a corpus with one split of its own, "
        "as MSP-Podcast: only its training clips, so that its development and test clips stay "
        "unseen); 'dev': "
        "only for development (model selection and calibration), never trained on nor tested",
    )


class SpeakerFold(_Strict):
    """One fold of a named-speaker split; every other speaker trains."""

    test: tuple[str, ...] = Field(min_length=1)
    dev: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> SpeakerFold:
        both = set(self.test) & set(self.dev)
        if both:
            raise ValueError(f"speakers in both test and dev: {', '.join(sorted(both))}")
        return self


class SplitConfig(_Strict):
    """How clips are split: the authors' partitions, seeded speaker folds, named speakers, one
    corpus left out per fold (cross-corpus), or a seeded share of every corpus's speakers."""

    method: Literal["partitions", "speaker-folds", "speakers", "corpora", "shares"] = (
        "speaker-folds"
    )
    folds: int = Field(5, ge=2, description="method 'speaker-folds': how many")
    seed: int = 0
    speakers: tuple[SpeakerFold, ...] = Field(
        (), description="method 'speakers': the test (and dev) speakers of each fold"
    )
    corpora: tuple[str, ...] = Field(
        (),
        description="method 'corpora': the corpora left out, one per fold (default: every "
        "corpus with role 'all')",
    )
    dev_share: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="methods 'corpora' and 'shares': the share of each training corpus's "
        "speakers (of its clips, where it names none) held out for development",
    )
    test_share: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="method 'shares': the share of each corpus's speakers held out for test (0: "
        "no test set, every other speaker trains: a model to ship, not to score)",
    )

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.method == "speakers" and not self.speakers:
            raise ValueError("split.method 'speakers' needs split.speakers: [{test: [...]}]")
        return self


SCALINGS = {True: "train-range", False: "none"}  # what scale_attributes' old true and false meant


class CorporaDataConfig(_Strict):
    """Real corpora, their features (extracted into ``store`` when missing) and the protocol."""

    source: Literal["corpora"] = "corpora"
    corpora: tuple[CorpusConfig, ...] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    fold: int = Field(1, ge=1, description="the fold `vavl train` runs; `vavl cv` runs all")
    store: Path = Field(Path("features"), description="feature store folder")
    workers: int = Field(1, ge=1, description="extraction processes")
    load: Literal["lazy", "memory"] = Field(
        "lazy",
        description="lazy: features stay in the store and are read batch by batch (memory "
        "does not grow with the corpus); memory: every clip's features are read up front",
    )
    verify: bool = Field(
        False,
        description="hash every media file again and read every store entry (its checksum "
        "checked; a damaged one is made again) instead of trusting the store's index",
    )
    max_audio_seconds: float | None = Field(
        None, gt=0, description="train and test on the first seconds of audio only (ref.: 12)"
    )
    scale_attributes: Literal["train-range", "fixed", "none"] = Field(
        "train-range",
        description="regression targets: min-max scaled by the training split's range, by the "
        "fixed rating scale (attribute_scale; reference: (x - 1) / 4 on MSP-IMPROV), or as rated",
    )
    attribute_scale: tuple[float, float] = Field(
        (1.0, 5.0), description="the attributes' rating scale (MSP-IMPROV 1-5) for 'fixed'"
    )

    @model_validator(mode="before")
    @classmethod
    def _scaling_from_a_switch(cls, values: Any) -> Any:
        """Configs before the fixed scale said true (the training range) or false."""
        if isinstance(values, dict) and isinstance(values.get("scale_attributes"), bool):
            values = values | {"scale_attributes": SCALINGS[values["scale_attributes"]]}
        return values
