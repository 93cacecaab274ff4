"""Benchmark: what answers per person cost.

Two real videos are looped to ``--seconds`` (60): the shared two-person interview
(``visualvoice/interview.mp4``, two faces side by side) and a one-face clip
(``pyfeat/WolfgangLanger_Pexels.mp4``, a man talking). Each is predicted with the default model
over and over, alternating: ``face=0`` (the most prominent face: vavl's answer before it looked
for who speaks) and ``face="speaker"`` (FaceMesh on every face's crops, who speaks in each
second, an answer per person, the file's answer from the face that speaks). The ratio of the
median times is the cost; the target for two faces is at most 1.5.

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
from vavl.results import Prediction

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "face-video-samples"
VIDEOS = {
    "two faces": DATA / "visualvoice" / "interview.mp4",
    "one face": DATA / "pyfeat" / "WolfgangLanger_Pexels.mp4",
}


def timed(
    predictors: dict[str, Predictor], clip: Path, runs: int
) -> tuple[dict[str, float], Prediction]:
    """Each predictor's median seconds on ``clip`` (alternating), and the per-person answer."""
    times: dict[str, list[float]] = {name: [] for name in predictors}
    answers = {}
    for predictor in predictors.values():
        predictor.predict(clip)  # warm-up: weights loaded, caches filled
    for _ in range(runs):
        for name, predictor in predictors.items():
            started = time.perf_counter()
            answers[name] = predictor.predict(clip)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}, answers["per person"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    predictors = {"largest face": Predictor.load(face=0), "per person": Predictor.load()}
    print(f"{args.seconds:g} s videos, median of {args.runs} runs each, alternating\n")
    print("| video | answer | seconds | real-time factor | per person / largest face |")
    print("|---|---|---|---|---|")
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        for video, source in VIDEOS.items():
            clip = make_clip(source, args.seconds, Path(folder) / f"{source.stem}-looped.mp4")
            medians, found[video] = timed(predictors, clip, args.runs)
            ratio = medians["per person"] / medians["largest face"]
            for name, median in medians.items():
                shown = f"{ratio:.2f}x" if name == "per person" else ""
                factor = median / args.seconds
                print(f"| {video} | {name} | {median:.2f} | {factor:.3f} | {shown} |")
    print("\n(target for two faces: at most 1.5x)")
    for video, answer in found.items():
        spoke = answer.who_spoke() or "not listed (one person)"
        print(f"{video}: {len(answer.people)} persons listed; who speaks: {spoke}")


if __name__ == "__main__":
    main()
