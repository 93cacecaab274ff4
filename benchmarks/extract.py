"""Benchmark: feature extraction speed and memory, per extractor and for the default pipeline.

Clips: a real webcam talking-face video (../shared/data/face-video-samples/liveportrait/d6.mp4,
480x480, 30 frames/s, with speech) cut to 3 s and looped to 60 s. Each configuration runs in its
own process (one thread) so that its peak memory (max RSS, whole process) is its own; the real-time
factor is compute seconds per second of media (below 1: faster than real time), measured after
the models are loaded. Workers: the same batch of real clips extracted with 1 and 2 processes.

    python benchmarks/extract.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _clips import make_clip
from _memory import peak_rss_mib

from vavl.features import create_extractor
from vavl.features.extraction import ExtractionSettings, media_inputs, run_extraction
from vavl.features.pipeline import FeaturePipeline

CONFIGURATIONS: dict[
    str, tuple[tuple[str, dict[str, Any]] | None, tuple[str, dict[str, Any]] | None]
] = {
    "default (whisper-base + fer)": (("whisper-base", {}), ("fer", {})),
    "whisper-base (fit window)": (("whisper-base", {}), None),
    "whisper-base (full window)": (("whisper-base", {"window": "full"}), None),
    "logmel": (("logmel", {}), None),
    "fer (faces + features)": (None, ("fer", {})),
    "facemesh (faces + features)": (None, ("facemesh", {})),
    "face-pixels (faces only, almost)": (None, ("face-pixels", {})),
}


def measure(name: str, clip: Path) -> dict[str, Any]:
    audio_spec, visual_spec = CONFIGURATIONS[name]
    audio = create_extractor(audio_spec[0], **audio_spec[1]) if audio_spec else None
    visual = create_extractor(visual_spec[0], **visual_spec[1]) if visual_spec else None
    pipeline = FeaturePipeline(audio, visual)
    pipeline.extract(clip)  # warm-up: first calls allocate
    started = time.perf_counter()
    result = pipeline.extract(clip)
    seconds = time.perf_counter() - started
    duration = result.duration or 0.0
    return {
        "rtf": seconds / duration,
        "seconds": seconds,
        "duration": duration,
        "peak_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--measure", nargs=2, metavar=("NAME", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return

    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    source = args.data / "face-video-samples" / "liveportrait" / "d6.mp4"
    with tempfile.TemporaryDirectory() as folder:
        clips = {s: make_clip(source, s, Path(folder) / f"clip{s}.mp4") for s in (3, 60)}
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores; one thread per process")
        print(f"{'configuration':<34} {'clip':>5} {'RTF':>7} {'peak MiB':>9}")
        for name in CONFIGURATIONS:
            for seconds, clip in clips.items():
                output = subprocess.run(
                    [sys.executable, __file__, "--measure", name, str(clip)],
                    check=True, capture_output=True, text=True, env=environment,
                ).stdout  # fmt: skip
                result = json.loads(output.strip().splitlines()[-1])
                print(
                    f"{name:<34} {seconds:>4}s {result['rtf']:>7.3f} {result['peak_mib']:>9.0f}",
                    flush=True,
                )

        batch = media_inputs(args.data / "crema-d-samples" / "VideoFlash") + media_inputs(
            args.data / "mead-samples" / "front256"
        )
        walls = {}
        for workers in (1, 2):
            started = time.perf_counter()
            run_extraction(
                batch,
                Path(folder) / f"store{workers}",
                ExtractionSettings(),
                workers,
                progress=False,
            )
            walls[workers] = time.perf_counter() - started
        print(
            f"workers: {len(batch)} real clips, default pipeline: 1 process {walls[1]:.1f} s, "
            f"2 processes {walls[2]:.1f} s, speed-up {walls[1] / walls[2]:.2f}x"
        )


if __name__ == "__main__":
    main()
