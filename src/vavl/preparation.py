"""An experiment's data: corpora (or the synthetic set) -> features in the store -> items and folds.

Corpora are read and checked first (missing folders, unknown labels, missing media, duplicate
ids, speakers in two splits), so that no problem surfaces after hours of training. Missing
features are then extracted into the store (one pass per modality over the files that feed it),
and each clip becomes an :class:`~vavl.data.Item` with the features of the modalities it has.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from vavl.config import ExperimentConfig
from vavl.config_data import CorporaDataConfig, SyntheticDataConfig
from vavl.corpora import (
    SPLITS,
    Clip,
    Split,
    check_clips,
    fold_assignments,
    label_map_of,
    load_corpus,
    map_labels,
)
from vavl.corpora.base import speaker_folds
from vavl.corpora.msp_improv import min_max_scaled
from vavl.data import Item, StoredModality
from vavl.errors import ConfigError, DataError
from vavl.features.base import ExtractorDescription
from vavl.features.extraction import ExtractionSettings, ExtractorSpec, run_extraction
from vavl.features.index import EntrySummary
from vavl.features.store import FeatureStore
from vavl.spans import MediaSpan
from vavl.synthetic import synthetic_items
from vavl.types import MODALITIES, Modality

logger = logging.getLogger("vavl")


@dataclass
class ExperimentData:
    items: dict[str, Item]
    folds: list[dict[str, Split]]
    extractors: dict[str, ExtractorDescription | None]  # what made each modality's features
    # Regression targets: scaled by the training split's range, a fixed rating scale, or not.
    scale_attributes: Literal["train-range", "fixed", "none"] = "none"
    attribute_scale: tuple[float, float] = (1.0, 5.0)  # the rating scale, for "fixed"
    notes: list[str] = field(default_factory=list)

    def split(
        self, fold: int, allow_empty_dev: bool = False, allow_empty_test: bool = False
    ) -> dict[Split, list[Item]]:
        """The items of each split of fold ``fold`` (1-based); attributes scaled by train."""
        if not 1 <= fold <= len(self.folds):
            raise ConfigError(f"fold {fold} does not exist (folds: 1 to {len(self.folds)})")
        assignment = self.folds[fold - 1]
        splits: dict[Split, list[Item]] = {split: [] for split in SPLITS}
        for item_id, split in assignment.items():
            if item_id in self.items:
                splits[split].append(replace(self.items[item_id], split=split))
        if self.scale_attributes == "fixed":
            splits = _scaled(splits, self.attribute_scale)
        elif self.scale_attributes == "train-range" and splits["train"]:
            splits = _scaled(splits)
        for split in SPLITS:
            allowed = {"dev": allow_empty_dev, "test": allow_empty_test}.get(split, False)
            if not splits[split] and not allowed:
                raise DataError(f"fold {fold} has no clip in its {split} split")
        return splits

    def modality_counts(self, fold: int) -> dict[str, dict[str, int]]:
        """Clips per split with audio, with video, with both, in total."""
        counts: dict[str, dict[str, int]] = {}
        for split, items in self.split(fold, True, True).items():
            audio = [item.has("audio") for item in items]
            visual = [item.has("visual") for item in items]
            counts[split] = {
                "clips": len(items),
                "audio": sum(audio),
                "visual": sum(visual),
                "both": sum(a and v for a, v in zip(audio, visual, strict=True)),
            }
        return counts


def _scaled(
    splits: dict[Split, list[Item]], fixed: tuple[float, float] | None = None
) -> dict[Split, list[Item]]:
    """Attributes min-max scaled by the ``fixed`` rating scale, or by the training split's."""
    rated = [item.attributes for items in splits.values() for item in items]
    attributes = next((len(values) for values in rated if values is not None), 0)
    if fixed is None:
        train = np.stack([i.attributes for i in splits["train"] if i.attributes is not None])
        ranges = {
            str(k): (float(train[:, k].min()), float(train[:, k].max())) for k in range(attributes)
        }
    else:
        ranges = dict.fromkeys(map(str, range(attributes)), fixed)
    scaled: dict[Split, list[Item]] = {}
    for split, items in splits.items():
        scaled[split] = []
        for item in items:
            if item.attributes is None:
                scaled[split].append(item)
                continue
            named = {str(k): float(v) for k, v in enumerate(item.attributes)}
            result = min_max_scaled(named, ranges)
            vector = np.array([result[str(k)] for k in range(len(named))], np.float32)
            scaled[split].append(replace(item, attributes=vector))
    return scaled


def _label_fields(clip: Clip, config: ExperimentConfig) -> dict[str, Any]:
    task = config.task
    if task.kind != "classification":  # attribute values, or intensities of labels present
        if clip.attributes is None or set(task.labels) - set(clip.attributes):
            raise DataError(
                f"{clip.corpus}: clip '{clip.id}' lacks attribute values for {list(task.labels)}"
            )
        return {"attributes": np.array([clip.attributes[a] for a in task.labels], np.float32)}
    if clip.label is None:
        raise DataError(f"{clip.corpus}: clip '{clip.id}' has no label")
    soft = None
    if clip.soft_label is not None:
        soft = np.array([clip.soft_label.get(label, 0.0) for label in task.labels], np.float32)
        # Shares of the task's classes only (votes for classes mapped away are dropped).
        soft = soft / soft.sum() if soft.sum() > 0 else None
    return {"label": task.labels.index(clip.label), "soft_label": soft}


def _extract(
    clips: list[Clip], config: ExperimentConfig, data: CorporaDataConfig, progress: bool
) -> tuple[
    dict[str, str | None],
    dict[tuple[str, MediaSpan], tuple[str, EntrySummary]],
    dict[str, ExtractorDescription | None],
]:
    """Extract what the store lacks; return the keys, (modality, file or span) -> its entry in
    the store and its summary, and the extractors' descriptions."""
    store = FeatureStore(data.store)
    features = config.features
    keys: dict[str, str | None] = {}
    entries: dict[tuple[str, MediaSpan], tuple[str, EntrySummary]] = {}
    descriptions: dict[str, ExtractorDescription | None] = {}
    for modality in MODALITIES:
        wanted = {clip.source(modality) for clip in clips if modality in clip.media}
        files = sorted(wanted, key=MediaSpan.sort_key)
        name = features.extractor(modality)
        if not files:
            keys[modality], descriptions[modality] = None, None
            continue
        if name is None:
            raise ConfigError(
                f"the corpora have {modality} media but features.{modality} names no extractor"
            )
        spec = ExtractorSpec(name, features.options(modality))
        extractor = spec.build()
        description = extractor.describe(features.faces.model_dump(), spec.options)
        keys[modality], descriptions[modality] = description.key, description
        settings = ExtractionSettings(
            audio=spec if modality == "audio" else None,
            visual=spec if modality == "visual" else None,
            faces=features.faces,
        )
        logger.info("%s features (%s) of %d files into %s", modality, name, len(files), store.root)
        report = run_extraction(
            files, store.root, settings, data.workers, progress, report_name=f"report-{modality}",
            keys={modality: description.key}, verify=data.verify,
        )  # fmt: skip
        failed = 0
        for source, row, found in zip(files, report.rows, report.summaries, strict=True):
            if row["status"] == "failed":
                failed += 1
            else:
                entry_id = source.span.entry_id(row["content_sha256"])
                entries[(modality, source)] = (entry_id, found[modality])
        if failed:
            logger.warning(
                "%d %s files could not be read (see %s)", failed, modality, report.csv_path
            )
    return keys, entries, descriptions


def prepare(config: ExperimentConfig, progress: bool = True) -> ExperimentData:
    """The items and folds the config's data section describes."""
    data = config.data
    if data is None:
        raise ConfigError(
            "the config has no 'data' section: say where the training data comes from"
        )
    if isinstance(data, SyntheticDataConfig):
        splits = synthetic_items(data, config.task)
        items = {item.id: item for items in splits.values() for item in items}
        described: dict[str, ExtractorDescription | None] = {
            m: None if name is None else ExtractorDescription.from_saved(name)
            for m in MODALITIES
            for name in [config.features.extractor(m)]
        }
        if data.folds > 1:
            by_speaker = speaker_folds(
                [i.speaker or i.id for i in items.values()], data.folds, data.seed
            )
            folds = [
                {i.id: assignment[i.speaker or i.id] for i in items.values()}
                for assignment in by_speaker
            ]
            return ExperimentData(items, folds, described)
        fold: dict[str, Split] = {}
        for split, split_items in splits.items():
            fold.update(dict.fromkeys((item.id for item in split_items), split))  # type: ignore[arg-type]
        return ExperimentData(items, [fold], described)
    return _prepare_corpora(config, data, progress)


def _prepare_corpora(
    config: ExperimentConfig, data: CorporaDataConfig, progress: bool
) -> ExperimentData:
    attributes = config.task.labels if config.task.kind != "classification" else ()
    corpora, notes, clips = [], [], []
    for spec in data.corpora:
        corpus = load_corpus(spec, attributes)
        if config.task.kind == "classification":
            corpus.clips, dropped = map_labels(corpus.clips, label_map_of(spec), config.task.labels)
            listed = ", ".join(f"{label} {count}" for label, count in sorted(dropped.items()))
            if dropped and not corpus.clips:
                raise DataError(
                    f"{corpus.name}: its label map leaves out every clip ({listed}); map its "
                    f"labels onto {', '.join(config.task.labels)}"
                )
            if dropped:
                notes.append(f"{corpus.name}: clips left out by the label map: {listed}")
        corpora.append(corpus)
        clips += corpus.clips
    check_clips(clips)
    folds = fold_assignments(corpora, [spec.role for spec in data.corpora], data.split)
    for fold in folds:
        check_clips(clips, fold)
    used = set().union(*folds)
    clips = [clip for clip in clips if clip.id in used]  # no fold reads the others: not extracted
    keys, entries, descriptions = _extract(clips, config, data, progress)
    root = str(FeatureStore(data.store).root)
    items: dict[str, Item] = {}
    without = Counter[str]()
    for clip in clips:
        stored: dict[Modality, StoredModality] = {}
        for modality in MODALITIES:
            key = keys.get(modality)
            found = (
                entries.get((modality, clip.source(modality))) if modality in clip.media else None
            )
            if key and found and found[1].frames:  # an entry saying the file lacks it: none
                cut = data.max_audio_seconds if modality == "audio" else None
                stored[modality] = StoredModality.of(root, key, *found, max_seconds=cut)
        if not stored:
            without[clip.corpus] += 1
            continue
        item = Item(
            clip.id,
            speaker=clip.speaker,
            metadata={"corpus": clip.corpus},
            stored=stored,
            **_label_fields(clip, config),
        )
        items[clip.id] = item.loaded() if data.load == "memory" else item
    for name, count in without.items():
        notes.append(f"{name}: {count} clips gave no features in either modality and are left out")
    for note in notes:
        logger.info(note)
    scale = data.scale_attributes if config.task.kind == "regression" else "none"
    return ExperimentData(items, folds, descriptions, scale, data.attribute_scale, notes)
