"""Benchmark: what each piece of VAVL does, on a synthetic task whose label only the audio carries.

The demo's generated feature set with ``data.informative=[audio]``: the video frames are noise
(with speaker offsets), so a visual path can only guess, and the audio-visual path must learn to
rely on the audio. VAVL and its ablations are cross-validated over the same speaker folds, then
compared with paired per-fold differences (``vavl compare``).

    python benchmarks/ablations.py [--folds 3] [--epochs 8] [--methods vavl vavl-no-shared ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vavl.comparison import compare_runs
from vavl.config_files import apply_overrides, load_config
from vavl.experiment import run_cv
from vavl.methods import METHODS, with_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["vavl", "vavl-no-shared", "vavl-no-reconstruction", "vavl-joint"],
        choices=sorted(METHODS),
    )
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()
    base = apply_overrides(
        load_config("demo-synthetic"),
        [
            "data.informative=[audio]",
            f"data.folds={args.folds}",
            f"training.epochs={args.epochs}",
            "training.progress=false",
            "data.missing_audio=0.1",
            "data.missing_visual=0.1",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        out = args.out or Path(folder)
        runs = []
        for method in args.methods:
            started = time.perf_counter()
            config = with_method(base, method)
            run_cv(config, out / method, progress=False)
            runs.append(out / method)
            print(f"{method}: {time.perf_counter() - started:.0f} s", flush=True)
        comparison = compare_runs(runs)
        print()
        print(comparison.markdown(), end="")
        if args.out:
            comparison.write(args.out / "comparison")


if __name__ == "__main__":
    main()
