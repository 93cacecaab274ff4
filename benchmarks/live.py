"""Benchmark: live mode's latency through a real `vavl serve`.

A real clip (a webcam talking face with speech, looped) is streamed at real time through the
WebSocket by vavl's live client, as a browser would: audio in 0.1 s messages, alone and then with
camera frames at 5 frames/s. The latency of an update runs from the moment the last audio message
of its window leaves the client to the moment its prediction arrives. The server is a separate
`vavl serve` process with the default model, on this machine's cores.

    python benchmarks/live.py [--seconds 30] [--clip FILE]

The last line reads ``live: N updates, latency p50 X ms, p95 Y ms`` (audio with video).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from vavl.serve.client import load_stream, stream

WEBCAM = Path("../shared/data/face-video-samples/liveportrait/d6.mp4")  # as benchmarks/predict.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=WEBCAM)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=5.0)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "vavl.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2].replace("http://", "ws://") + "api/live"
        cases = {"audio only": False, f"audio + video at {args.fps:g} frames/s": True}
        line = ""
        for name, video in cases.items():
            audio, frames = load_stream(args.clip, args.fps, video=video, seconds=args.seconds)
            run = stream(url, audio, frames)
            computed = [u["compute_ms"] for u in run.updates]
            line = (
                f"live: {len(run.updates)} updates, latency p50 {run.percentile(0.5):.0f} ms, "
                f"p95 {run.percentile(0.95):.0f} ms"
            )
            print(f"{name} ({args.seconds:g} s of {args.clip.name}, real time):")
            print(f"  server compute per update: median {sorted(computed)[len(computed) // 2]} ms")
            print(f"  {line}")
        print(line)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
