"""Benchmark: what answers per person cost.

The shared two-person interview (``visualvoice/interview.mp4``, 17.5 s, two faces side by side)
is looped to ``--seconds`` (60) and predicted with the default model twice over, alternating:
``face=0`` (the most prominent face: vavl's answer before it looked for who speaks) and
``face="speaker"`` (FaceMesh on every face's crops, who speaks in each second, an answer per
person, the file's answer from the face that speaks). The ratio of the median times is the
cost; the target is at most 1.5.

    python benchmarks/people.py [--seconds 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _clips import make_clip

from vavl.predict import Predictor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    predictors = {"largest face": Predictor.load(face=0), "per person": Predictor.load()}
    with tempfile.TemporaryDirectory() as folder:
        source = DATA / "face-video-samples" / "visualvoice" / "interview.mp4"
        clip = make_clip(source, args.seconds, Path(folder) / "interview-looped.mp4")
        times: dict[str, list[float]] = {name: [] for name in predictors}
        answers = {}
        for predictor in predictors.values():
            predictor.predict(clip)  # warm-up: weights loaded, caches filled
        for _ in range(args.runs):
            for name, predictor in predictors.items():
                started = time.perf_counter()
                answers[name] = predictor.predict(clip)
                times[name].append(time.perf_counter() - started)
    print(f"{args.seconds:g} s two-person video, median of {args.runs} runs each, alternating\n")
    print("| answer | seconds | real-time factor |")
    print("|---|---|---|")
    for name, taken in times.items():
        median = statistics.median(taken)
        print(f"| {name} | {median:.2f} | {median / args.seconds:.3f} |")
    ratio = statistics.median(times["per person"]) / statistics.median(times["largest face"])
    print(f"\nper person / largest face: {ratio:.2f}x (target: at most 1.5x)")
    people = answers["per person"]
    print(f"persons: {len(people.people)}; who speaks: {people.who_spoke()}")


if __name__ == "__main__":
    main()
