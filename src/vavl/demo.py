"""The README's first command: train and evaluate VAVL end to end in about a minute on a CPU.

Until the media pipeline lands, the demo trains on a generated feature set whose label is carried
by the audio frames and, independently, by the visual frames; one clip in ten lacks its audio and
one in ten its video, and the model still answers for every path it can.
"""

from __future__ import annotations

from pathlib import Path

from vavl.config import apply_overrides, load_config
from vavl.experiment import ExperimentResult, run_experiment

DEMO_CONFIG = "demo-synthetic"


def run_demo(out_dir: str | Path = "vavl-demo", progress: bool = True) -> ExperimentResult:
    """Train the demo model into ``out_dir`` (resuming if it is there) and score its test split."""
    config = apply_overrides(load_config(DEMO_CONFIG), [f"training.progress={progress}"])
    return run_experiment(config, out_dir)
