"""Benchmark: prediction with the default model, end to end and stage by stage, on the CPU.

For a real webcam clip (speech + face) cut to 3 s and looped to 60 s: seconds per clip split into
decoding, faces (detection, tracking, aligned crops), features (Whisper base, fer) and the model
(PyTorch and onnxruntime backends, each the mean of 50 runs, 3 for the long clip), plus the
end-to-end `Predictor.predict` time and its real-time factor. Then a timeline of a long generated
file (``--minutes``, a face and noise speech) with its peak memory, to show that memory stays
bounded.
Each case runs in its own process with one thread.

    python benchmarks/predict.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _clips import make_clip
from _memory import peak_rss_mib

from vavl.data import Item
from vavl.faces import aligned_crop, main_face_track
from vavl.media import SAMPLE_RATE, VideoReader, iter_audio
from vavl.predict import Predictor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def stages(clip: Path) -> dict[str, Any]:
    predictor = Predictor.load()
    pipeline = predictor.pipeline
    assert pipeline.audio is not None and pipeline.visual is not None
    predictor.predict(clip)  # warm-up
    timings: dict[str, float] = {}
    started = time.perf_counter()
    audio = list(iter_audio(clip, chunk_seconds=pipeline.audio.chunk_seconds))
    frames = list(
        VideoReader(clip, fps=pipeline.visual.frame_rate, max_side=pipeline.faces.max_side)
    )
    timings["decode"] = time.perf_counter() - started
    started = time.perf_counter()
    track = main_face_track([pipeline.detector("short").detect(f.image) for f in frames])
    crops = [
        aligned_crop(f.image, d, pipeline.faces.crop_size, pipeline.faces.margin)
        for f, d in zip(frames, track, strict=True)
        if d is not None
    ]
    timings["faces"] = time.perf_counter() - started
    started = time.perf_counter()
    audio_features = np.concatenate([pipeline.audio.extract(chunk) for chunk in audio])
    visual_features = pipeline.visual.extract(np.stack(crops))
    timings["features"] = time.perf_counter() - started
    item = Item("clip", audio=audio_features, visual=visual_features)
    onnx = Predictor.load(backend="onnx")
    onnx.predict_items([item])
    runs = 50 if len(frames) < 100 else 3  # long clips: a few runs are stable enough
    started = time.perf_counter()
    for _ in range(runs):
        onnx.predict_items([item])
    timings["model (onnx)"] = (time.perf_counter() - started) / runs
    started = time.perf_counter()
    for _ in range(runs):
        predictor.predict_items([item])
    timings["model (torch)"] = (time.perf_counter() - started) / runs
    started = time.perf_counter()
    prediction = predictor.predict(clip)
    timings["end to end"] = time.perf_counter() - started
    seconds = sum(len(chunk) for chunk in audio) / SAMPLE_RATE
    return {
        "timings": timings,
        "duration": seconds,
        "paths": sorted(prediction.paths),
        "peak_mib": peak_rss_mib(),
    }


def timeline_case(path: Path) -> dict[str, Any]:
    predictor = Predictor.load()
    started = time.perf_counter()
    timeline = predictor.timeline(path, window=3.0, hop=1.0)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "windows": len(timeline.windows),
        "duration": timeline.duration,
        "peak_mib": peak_rss_mib(),
    }


def write_long_video(path: Path, minutes: int) -> Path:
    """A long file: a real face (MEAD crop) on a grey frame at 5 frames/s, noise 'speech'."""
    import av

    face = next(
        iter(VideoReader(DATA / "mead-samples/front256/W009_front_happy_level3_001.mp4"))
    ).image
    frame = np.full((288, 352, 3), 90, np.uint8)
    frame[16:272, 48:304] = face
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=5)
        video.width, video.height, video.pix_fmt = 352, 288, "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        rng = np.random.default_rng(0)
        for second in range(minutes * 60):
            for _ in range(5):
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            samples = rng.normal(0, 0.05, SAMPLE_RATE).astype(np.float32)
            for start in range(0, SAMPLE_RATE, 1000):
                chunk = av.AudioFrame.from_ndarray(
                    samples[None, start : start + 1000], format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, second * SAMPLE_RATE + start
                for packet in sound.encode(chunk):
                    container.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode():
                container.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="length of the timeline test file")
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, path = args.case
        result = stages(Path(path)) if kind == "stages" else timeline_case(Path(path))
        print(json.dumps(result))
        return
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}

    def child(kind: str, path: Path) -> dict[str, Any]:
        output = subprocess.run(
            [sys.executable, __file__, "--case", kind, str(path)],
            check=True, capture_output=True, text=True, env=environment,
        ).stdout  # fmt: skip
        return dict(json.loads(output.strip().splitlines()[-1]))

    with tempfile.TemporaryDirectory() as folder:
        source = DATA / "face-video-samples/liveportrait/d6.mp4"
        print(f"machine: {os.cpu_count()} cores; one thread per process; default model")
        columns = ("decode", "faces", "features", "torch", "onnx", "total", "RTF", "peak MiB")
        print(f"{'clip':>5} " + " ".join(f"{name:>9}" for name in columns))
        for seconds in (3, 60):
            clip = make_clip(source, seconds, Path(folder) / f"clip{seconds}.mp4")
            result = child("stages", clip)
            t = result["timings"]
            cells = (
                f"{t['decode']:.2f} s",
                f"{t['faces']:.2f} s",
                f"{t['features']:.2f} s",
                f"{t['model (torch)'] * 1000:.1f} ms",
                f"{t['model (onnx)'] * 1000:.1f} ms",
                f"{t['end to end']:.2f} s",
                f"{t['end to end'] / result['duration']:.3f}",
                f"{result['peak_mib']:.0f}",
            )
            print(f"{seconds:>4}s " + " ".join(f"{cell:>9}" for cell in cells), flush=True)
        long = write_long_video(Path(folder) / "long.mp4", args.minutes)
        result = child("timeline", long)
        factor = result["seconds"] / result["duration"]
        print(
            f"timeline of a {args.minutes}-minute file (window 3 s, hop 1 s): "
            f"{result['windows']} windows in {result['seconds']:.0f} s (real-time factor "
            f"{factor:.3f}), peak memory {result['peak_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
