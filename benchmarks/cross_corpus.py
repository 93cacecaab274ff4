"""Benchmark: the leave-one-corpus-out table of a cross-corpus `vavl cv` run.

A run of a config with ``data.split.method: corpora`` trains, in each fold, on every corpus but
one and tests on that one (its speakers, recordings and often its language were never heard).
For each fold and path this prints the left-out corpus's clips, the model's unweighted accuracy
(UA, mean recall over the classes the corpus has), the share of its most predicted class, and a
linear probe beside it: logistic regression (balanced classes, C chosen on the fold's
development clips) on each clip's mean and standard deviation of the same frame features,
fitted on the fold's own training clips. The last rows are the means over the folds.

    vavl cv CONFIG --run-dir runs/loco    # CONFIG with data.split.method: corpora
    python benchmarks/cross_corpus.py runs/loco [RUN ...] [--card MODEL_CARD]

(the shipped configs cross-corpus-audio and cross-corpus-faces are the default model's recipe).

For each fold whose left-out corpus has faces, its faces are also tried as a user's photos:
three frames of each of its videos (a quarter, half and three quarters in; a still corpus's
images themselves, 200 of them at most) saved as PNG, each
predicted by the fold's model through `Predictor.predict(photo)` with automatic face detection,
beside the ``fer`` network's own 7-class classifier (restricted to the task's classes) on the
same detected faces.

``--card`` writes the table into a model card (``vavl info`` prints it): the rows of the runs
given replace the card's rows of the same corpus and path, and the others stay.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import tempfile
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from default_model import STILL_AT, fit_probe, probe_predict
from PIL import Image

from vavl.calibration import unweighted_accuracy
from vavl.config_data import CorporaDataConfig
from vavl.config_files import load_config
from vavl.corpora import label_map_of, load_corpus
from vavl.data import Item
from vavl.features import create_extractor
from vavl.features.pipeline import FeaturePipeline
from vavl.features.visual import FER_CLASSES
from vavl.media import VideoReader
from vavl.normalization import FeatureNormalizer, source_of
from vavl.predict import Predictor
from vavl.preparation import prepare
from vavl.types import MODALITIES, Modality


def model_rows(
    fold_dir: Path, labels: tuple[str, ...]
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Per path: (targets, predictions, corpus) of the fold's test clips, from its CSV."""
    found: dict[str, tuple[list[int], list[int], str]] = {}
    with open(fold_dir / "predictions" / "test.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            targets, predicted, _ = found.setdefault(row["path"], ([], [], row["corpus"]))
            targets.append(labels.index(row["target"]))
            predicted.append(labels.index(row["prediction"]))
    return {p: (np.array(t), np.array(q), c) for p, (t, q, c) in found.items()}


def fold_table(fold_dir: Path) -> list[dict[str, Any]]:
    config = load_config(fold_dir / "config.yaml")
    labels = config.task.labels
    data = prepare(config, progress=False)
    assert config.data is not None and hasattr(config.data, "fold")
    splits = data.split(config.data.fold)
    rows = []
    for path, (targets, predicted, corpus) in model_rows(fold_dir, labels).items():
        counts = Counter(predicted.tolist())
        entry: dict[str, Any] = {
            "corpus": corpus,
            "path": path,
            "clips": len(targets),
            "ua": round(unweighted_accuracy(predicted, targets), 3),
            "top_class": labels[counts.most_common(1)[0][0]],
            "top_class_share": round(counts.most_common(1)[0][1] / len(predicted), 3),
        }
        if path in MODALITIES:
            modality: Modality = path  # type: ignore[assignment]
            train, dev, test = (
                [i for i in splits[split] if i.has(modality)] for split in ("train", "dev", "test")
            )
            entry |= probe_figures(train, dev, test, modality, "probe")
            if config.features.normalise == "source":  # the probe standardised as the model is
                statistics = FeatureNormalizer.fit(train).for_items(train, "source")
                own = [
                    standardised(items, statistics.for_items(items, "source"), modality)
                    for items in (train, dev, test)
                ]
                entry |= probe_figures(*own, modality, "source_probe")
        rows.append(entry)
    return rows


MOST_SOURCES = 200  # videos or stills of a left-out corpus tried as photos


def photos(fold_dir: Path, folder: Path) -> dict[str, Any] | None:
    """The fold's left-out faces as photos (PNG), predicted as a user's photos are, and by
    ``fer``'s own classifier on the same detected faces (None: the corpus has no video)."""
    config = load_config(fold_dir / "config.yaml")
    assert isinstance(config.data, CorporaDataConfig)
    labels = config.task.labels
    tested = {corpus for _, _, corpus in model_rows(fold_dir, labels).values()}
    (left_out,) = [spec for spec in config.data.corpora if (spec.name or spec.format) in tested]
    clips = [c for c in load_corpus(left_out).clips if "visual" in c.media and c.label]
    mapping = label_map_of(left_out)
    wanted = [(c, mapping.get(c.label, c.label)) for c in clips]  # type: ignore[arg-type]
    videos = [(c.media["visual"], label) for c, label in wanted if label in labels]
    if not videos:
        return None
    if len(videos) > MOST_SOURCES:  # a still corpus of thousands: an even sample is enough
        chosen = np.random.default_rng(0).choice(len(videos), MOST_SOURCES, replace=False)
        videos = [videos[index] for index in sorted(chosen)]
    predictor = Predictor.load(fold_dir / "best.pt")
    fer = FeaturePipeline(None, create_extractor("fer", output="probabilities"))
    columns = [FER_CLASSES.index(name) for name in labels]
    truth, ours, theirs = [], [], []
    for number, (video, label) in enumerate(videos):
        frames = [frame.image for frame in VideoReader(video, fps=5)]
        # The same shares of a video as the default-model benchmark's stills; a still, once.
        for index in sorted({int(share * (len(frames) - 1)) for share in STILL_AT}):
            photo = folder / f"{number}-{index}.png"
            Image.fromarray(frames[index]).save(photo)
            answer = predictor.predict(photo).paths.get("visual")
            found = fer.extract(photo).visual
            if answer is None or found is None:
                continue  # no face found: neither answers
            truth.append(labels.index(label))
            ours.append(labels.index(answer.label or ""))
            theirs.append(int(np.argmax(found.features[0][columns])))
    chosen = Counter(ours)
    return {
        "corpus": left_out.name or left_out.format,
        "photos": len(truth),
        "ua": round(unweighted_accuracy(np.array(ours), np.array(truth)), 3),
        "top_class": labels[chosen.most_common(1)[0][0]],
        "top_class_share": round(chosen.most_common(1)[0][1] / len(ours), 3),
        "fer_ua": round(unweighted_accuracy(np.array(theirs), np.array(truth)), 3),
    }


def probe_figures(
    train: list[Item], dev: list[Item], test: list[Item], modality: Modality, name: str
) -> dict[str, float]:
    """UA and the most predicted class's share of a probe fitted on ``train``."""
    guessed = probe_predict(fit_probe(train, dev, modality), test, modality)
    truth = np.array([item.label for item in test])
    shares = Counter(guessed.tolist())
    return {
        f"{name}_ua": round(unweighted_accuracy(guessed, truth), 3),
        f"{name}_top_class_share": round(shares.most_common(1)[0][1] / len(guessed), 3),
    }


def standardised(
    items: list[Item], statistics: FeatureNormalizer, modality: Modality
) -> list[Item]:
    """The items with ``modality``'s frames standardised by their sources' statistics."""
    found = []
    for item in items:
        frames = item.features(modality)
        assert frames is not None
        scaled = statistics.apply(modality, frames, source_of(item, modality))
        found.append(replace(item, **{modality: scaled}))
    return found


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| left-out corpus | path | clips | UA | most predicted | probe UA (its most) | "
        "probe standardised by source UA (its most) |",
        "|---|---|---|---|---|---|---|",
    ]

    def probe(entry: dict[str, Any], name: str) -> str:
        if f"{name}_ua" not in entry:
            return ""
        return f"{entry[f'{name}_ua']:.3f} ({entry[f'{name}_top_class_share']:.0%})"

    for entry in rows:
        lines.append(
            f"| {entry['corpus']} | {entry['path']} | {entry['clips']} | {entry['ua']:.3f} | "
            f"{entry['top_class']} {entry['top_class_share']:.0%} | {probe(entry, 'probe')} | "
            f"{probe(entry, 'source_probe')} |"
        )
    for path in dict.fromkeys(entry["path"] for entry in rows):
        chosen = [entry for entry in rows if entry["path"] == path]
        mean = np.mean([entry["ua"] for entry in chosen])
        top = max(entry["top_class_share"] for entry in chosen)
        cells = []
        for name in ("probe", "source_probe"):
            probes = [entry[f"{name}_ua"] for entry in chosen if f"{name}_ua" in entry]
            above = sum(entry["ua"] > entry.get(f"{name}_ua", 1.0) for entry in chosen)
            cells.append(
                f"{np.mean(probes):.3f} (model above on {above} of {len(chosen)})" if probes else ""
            )
        lines.append(
            f"| **mean of {len(chosen)}** | {path} | | **{mean:.3f}** | at most {top:.0%} | "
            f"{cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines)


def merged(
    card: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]], stills: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The card's table with these runs' rows in place of its rows of the same corpus and path
    (the others kept: the faces run again leaves the speech rows as they were)."""
    replaced = {(row["corpus"], row["path"]) for row in rows}
    kept = [row for row in card.get("folds", []) if (row["corpus"], row["path"]) not in replaced]
    tried = {entry["corpus"] for entry in stills}
    photos = [entry for entry in card.get("photos", []) if entry["corpus"] not in tried]
    return {"folds": kept + rows, "photos": photos + stills}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", type=Path, nargs="+", help="finished `vavl cv` runs of cross-corpus configs"
    )
    parser.add_argument("--card", type=Path, help="write the table into this model card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    folds = [
        fold
        for run in args.runs
        for fold in sorted(run.glob("fold-*"), key=lambda path: int(path.name.split("-")[1]))
    ]
    rows = [row for fold in folds for row in fold_table(fold)]
    print(markdown(rows))
    stills = []
    with tempfile.TemporaryDirectory() as folder:
        for fold in folds:
            found = photos(fold, Path(folder))
            if found is not None:
                stills.append(found)
    if stills:
        print("\nphotos of the left-out corpus (vavl predict photo.png, automatic detection):")
        print("| left-out corpus | photos | UA | most predicted | fer's own classifier UA |")
        print("|---|---|---|---|---|")
        for entry in stills:
            print(
                f"| {entry['corpus']} | {entry['photos']} | {entry['ua']:.3f} | "
                f"{entry['top_class']} {entry['top_class_share']:.0%} | {entry['fer_ua']:.3f} |"
            )
    if args.card:
        existing = json.loads(args.card.read_text()) if args.card.is_file() else {}
        existing["cross_corpus"] = merged(existing.get("cross_corpus", {}), rows, stills)
        args.card.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwritten: {args.card}")


if __name__ == "__main__":
    main()
