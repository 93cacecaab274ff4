"""Benchmark: which of two faces speaks, by lip-audio synchrony (:mod:`vavl.speakers`).

Every ordered pair (A, B) of the shared talking-head clips with speech (HDTF, VoxCeleb and
LivePortrait samples) is heard as one soundtrack that switches every 4 s between A's own audio
and B's; in each 1 s window the face whose lips are more in sync with what is heard (over the
window and ``--context`` seconds around it) is chosen, and the truth is known by construction.
The synchrony model is fitted, for each pair, on every other clip with speech (the CREMA-D
videos too), never on A or B. Lips come from the ``facemesh`` extractor through the feature
pipeline (its face tracking, 15 frames a second); the audio features are the default model's
(Whisper base's third block, 25 a second), computed on the switched soundtrack itself.

    python benchmarks/active_speaker.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vavl.features import create_extractor
from vavl.features.pipeline import FeaturePipeline
from vavl.media import SAMPLE_RATE, read_audio
from vavl.speakers import SyncModel, lip_shapes

SWITCH_EVERY = 4.0  # seconds of one speaker before the other
TESTED = ("hdtf-sadtalker", "voxceleb-pcavs", "liveportrait")


def audio_pipeline() -> FeaturePipeline:
    return FeaturePipeline(create_extractor("whisper-base", blocks=3, pool=2), None)


def at_times(values: np.ndarray, value_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The frames of ``values`` (starting at ``value_times``) nearest to ``times``."""
    later = np.clip(np.searchsorted(value_times, times), 0, len(value_times) - 1)
    earlier = np.clip(later - 1, 0, None)
    closer = np.abs(value_times[earlier] - times) < np.abs(value_times[later] - times)
    return np.asarray(values, np.float64)[np.where(closer, earlier, later)]


def recordings(data: Path) -> dict[Path, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per clip with speech and a face in every sampled frame: (lip shapes, frame times, audio)."""
    clips = [
        p for folder in TESTED for p in sorted((data / "face-video-samples" / folder).glob("*.mp4"))
    ]
    clips += sorted((data / "crema-d-samples" / "VideoFlash").glob("*.flv"))
    faces = FeaturePipeline(None, create_extractor("facemesh"))
    found = {}
    for clip in tqdm(clips, "lips and audio", leave=False):
        wave = read_audio(clip)
        if wave is None or np.sqrt(np.mean(wave**2)) < 1e-3:  # no speech to be in sync with
            continue
        visual = faces.extract(clip).visual
        if visual is None or not visual.valid.all():
            continue
        found[clip] = (lip_shapes(visual.features), np.asarray(visual.times, np.float64), wave)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    parser.add_argument("--context", type=float, nargs="+", default=[0.0, 2.0])
    args = parser.parse_args()
    clips = recordings(args.data)
    audio = audio_pipeline()
    own = {}
    for clip, (_, times, _) in clips.items():
        found = audio.extract(clip).audio
        own[clip] = at_times(found.features, found.times, times)
    tested = [clip for clip in clips if clip.parent.name in TESTED]
    right = dict.fromkeys(args.context, 0)
    windows = 0
    for first, second in tqdm(list(itertools.permutations(tested, 2)), "pairs", leave=False):
        model = SyncModel.fit([(clips[c][0], own[c]) for c in clips if c not in (first, second)])
        # The pair lasts as long as its shorter clip; both faces at the first one's frame times.
        shorter = min(clips[first][1][-1], clips[second][1][-1])
        times = clips[first][1][clips[first][1] <= shorter]
        frames = len(times)
        samples = min(len(clips[first][2]), len(clips[second][2]), int(times[-1] * SAMPLE_RATE))
        moments = np.arange(samples) / SAMPLE_RATE
        speaker = (moments // SWITCH_EVERY).astype(int) % 2
        heard = np.where(speaker == 0, clips[first][2][:samples], clips[second][2][:samples])
        sound = audio.extract_arrays(heard.astype(np.float32), None, 25.0, "pair").audio
        heard_features = model.project_audio(at_times(sound.features, sound.times, times))
        lips = [
            model.project_lips(at_times(clips[c][0], clips[c][1], times)) for c in (first, second)
        ]
        truth = (times // SWITCH_EVERY).astype(int) % 2
        for second_start in range(int(times[-1])):
            middle = int(np.searchsorted(times, second_start + 0.5))
            for context in args.context:
                inside = (times >= second_start - context / 2) & (
                    times < second_start + 1 + context / 2
                )
                scores = [
                    SyncModel.synchrony(face[inside], heard_features[inside]) for face in lips
                ]
                right[context] += int(np.argmax(scores)) == truth[min(middle, frames - 1)]
            windows += 1
    pairs = len(tested) * (len(tested) - 1)
    print(f"{len(tested)} clips, {pairs} ordered pairs, {windows} windows of 1 s")
    print("| context around each 1 s window | speaking face chosen |")
    print("|---|---|")
    for context in args.context:
        print(f"| {context:g} s | {right[context] / windows:.1%} |")


if __name__ == "__main__":
    main()
