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
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from _memory import peak_rss_mib

from vavl.features import create_extractor
from vavl.features.extraction import ExtractionSettings, media_inputs, run_extraction
from vavl.features.pipeline import FeaturePipeline
from vavl.media import SAMPLE_RATE, VideoReader, read_audio

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


def make_clip(source: Path, seconds: float, target: Path) -> Path:
    """Re-encode ``source`` (looped as needed) to exactly ``seconds`` of H.264 + AAC."""

    def looped_frames() -> Any:
        while True:
            yield from (frame.image for frame in VideoReader(source))

    audio = read_audio(source)
    assert audio is not None
    rate = 30
    count = int(seconds * rate)
    with av.open(str(target), "w") as container:
        frames = looped_frames()
        first = next(frames)
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for index in range(count):
            image = first if index == 0 else next(frames)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = np.resize(audio, int(seconds * SAMPLE_RATE)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = (
                SAMPLE_RATE,
                start,
                Fraction(1, SAMPLE_RATE),
            )
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return target


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
