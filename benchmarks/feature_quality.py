"""Benchmark: how much emotion each extractor's features carry, and what they cost.

Speaker-independent linear probes on the real clips in ../shared/data: clip-level mean and
standard deviation of the frame features, standardised, logistic regression, leave one speaker
out. Audio: RAVDESS speech (8 actors) and CREMA-D audio (actors 1001, 1002), 6 classes. Visual:
MEAD front-view video (M030, W009, W011) and CREMA-D video (actor 1001), 6 classes. Tiny sets:
read the accuracies as a ranking with error bars of about +-0.1 (audio) and +-0.2 (visual).
Cost: extraction seconds per second of media on one thread.

    python benchmarks/feature_quality.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vavl.corpora.crema_d import EMOTION_CODES
from vavl.features import create_extractor
from vavl.features.pipeline import FeaturePipeline


def audio_clips(data: Path) -> list[tuple[Path, str, str]]:
    clips = []
    with open(data / "ravdess-audio-samples" / "manifest.csv") as handle:
        for row in csv.DictReader(handle):
            if row["emotion_cremad6"]:
                clips.append(
                    (
                        data / "ravdess-audio-samples" / row["path"],
                        row["speaker"],
                        row["emotion_cremad6"],
                    )
                )
    for path in sorted((data / "crema-d-samples" / "derived_resampled_wav").glob("*.wav")):
        actor, _, code, _ = path.stem.split("_")
        clips.append((path, actor, EMOTION_CODES[code]))
    return clips


def visual_clips(data: Path) -> list[tuple[Path, str, str]]:
    clips = []
    with open(data / "mead-samples" / "manifest.csv") as handle:
        for row in csv.DictReader(handle):
            if row["path"].startswith("front256/") and row["emotion_cremad6"]:
                clips.append(
                    (data / "mead-samples" / row["path"], row["speaker"], row["emotion_cremad6"])
                )
    for path in sorted((data / "crema-d-samples" / "VideoFlash").glob("*.flv")):
        actor, _, code, _ = path.stem.split("_")
        clips.append((path, actor, EMOTION_CODES[code]))
    return clips


def probe_accuracy(
    features: list[np.ndarray], speakers: list[str], labels: list[str], per_speaker: bool
) -> float:
    pooled = np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in features])
    if per_speaker:
        for speaker in set(speakers):
            rows = [i for i, s in enumerate(speakers) if s == speaker]
            pooled[rows] = StandardScaler().fit_transform(pooled[rows])
    correct = 0
    for speaker in sorted(set(speakers)):
        train = [i for i, s in enumerate(speakers) if s != speaker]
        test = [i for i, s in enumerate(speakers) if s == speaker]
        scaler = StandardScaler().fit(pooled[train])
        model = LogisticRegression(max_iter=5000, C=0.5).fit(
            scaler.transform(pooled[train]), [labels[i] for i in train]
        )
        correct += sum(
            model.predict(scaler.transform(pooled[test])) == np.array([labels[i] for i in test])
        )
    return correct / len(labels)


def measure(name: str, modality: str, clips: list[tuple[Path, str, str]], options: dict) -> None:
    extractor = create_extractor(name, **options)
    pipeline = FeaturePipeline(
        extractor if modality == "audio" else None, extractor if modality == "visual" else None
    )
    features, speakers, labels = [], [], []
    compute, media = 0.0, 0.0
    for path, speaker, label in clips:
        started = time.perf_counter()
        result = pipeline.extract(path, (modality,))
        compute += time.perf_counter() - started
        media += result.duration or 0.0
        found = result.audio if modality == "audio" else result.visual
        if found is None:
            continue
        features.append(found.features[found.valid])
        speakers.append(speaker)
        labels.append(label)
    label = f"{name} {options}" if options else name
    plain = probe_accuracy(features, speakers, labels, per_speaker=False)
    normalised = probe_accuracy(features, speakers, labels, per_speaker=True)
    print(
        f"{modality:<7} {label:<34} dim {extractor.dim:>5}  clips {len(labels):>3}  "
        f"accuracy {plain:.2f}  per-speaker-normalised {normalised:.2f}  "
        f"real-time factor {compute / media:.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    args = parser.parse_args()
    print("chance: 0.17 (6 classes)")
    audio, visual = audio_clips(args.data), visual_clips(args.data)
    for name, options in [
        ("whisper-base", {"window": "fit"}),
        ("whisper-base", {"window": "full"}),
        ("whisper-tiny", {"window": "fit"}),
        ("logmel", {}),
    ]:
        measure(name, "audio", audio, options)
    for name, options in [
        ("fer", {"keep": 0.9}),
        ("fer", {"keep": 1.0}),
        ("facemesh", {}),
        ("face-pixels", {}),
    ]:
        measure(name, "visual", visual, options)


if __name__ == "__main__":
    main()
