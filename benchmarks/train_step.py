"""Benchmark: one training step of the three-step recipe, ours versus the reference's way.

ours       cached features in (audio 1024-d at 50 frames/s, visual 1408-d at 30 frames/s), the
           visual, acoustic and fusion steps of the paper-sized VAVL.
reference  the same three steps, but the acoustic features come from a wav2vec2-large-sized encoder
           (12 transformer layers, randomly initialised) run on the raw 16 kHz audio inside the
           step, twice (acoustic step and fusion step), with autograd enabled: its weights are not
           updated, yet the acoustic loss back-propagates into it and the fusion step builds its
           graph, as the reference does.

Each variant runs in its own process so that its peak memory (peak RSS on CPU, max allocated on
CUDA) is its own; the ratio is measured in one run of this script. Needs ``transformers``
(``pip install -e '.[dev]'``).

    python benchmarks/train_step.py                 # batch 32, 3 s clips, CPU
    python benchmarks/train_step.py --device cuda --steps 10
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from typing import Any

import torch
from _memory import peak_rss_mib

from vavl.config import ExperimentConfig
from vavl.data import Batch
from vavl.models import VAVL
from vavl.training import ThreeStepRecipe

AUDIO_RATE, VISUAL_RATE, SAMPLE_RATE = 50, 30, 16_000


def make_batch(batch_size: int, seconds: float, device: torch.device) -> tuple[Batch, torch.Tensor]:
    audio_frames, visual_frames = int(seconds * AUDIO_RATE), int(seconds * VISUAL_RATE)
    batch = Batch(
        ids=[str(i) for i in range(batch_size)],
        audio=torch.randn(batch_size, audio_frames, 1024),
        audio_mask=torch.ones(batch_size, audio_frames, dtype=torch.bool),
        visual=torch.randn(batch_size, visual_frames, 1408),
        visual_mask=torch.ones(batch_size, visual_frames, dtype=torch.bool),
        target=torch.randint(0, 6, (batch_size,)),
    ).to(device)
    waveform = torch.randn(batch_size, int(seconds * SAMPLE_RATE), device=device)
    return batch, waveform


def wav2vec2_large_pruned() -> torch.nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=12,  # wav2vec2-large-robust with its top 12 of 24 layers removed
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
    )
    return Wav2Vec2Model(config).eval()


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = ExperimentConfig()
    model = VAVL(config.model, 6).to(device)
    recipe = ThreeStepRecipe(model, config, device, None)
    batch, waveform = make_batch(args.batch_size, args.seconds, device)
    encoder = wav2vec2_large_pruned().to(device) if variant == "reference" else None

    def reference_features() -> Batch:
        assert encoder is not None
        features = encoder(waveform).last_hidden_state
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        return Batch(batch.ids, features, mask, batch.visual, batch.visual_mask, batch.target)

    def step() -> None:
        if encoder is None:
            recipe.train_step(batch)
            return
        recipe.unimodal_step("visual", batch)
        recipe.unimodal_step("audio", reference_features())
        recipe.fusion_step(reference_features())

    def synchronise() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    synchronise()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronise()
    seconds = (time.perf_counter() - start) / args.steps
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = peak_rss_mib()
    return {
        "variant": variant,
        "seconds_per_step": seconds,
        "clips_per_second": args.batch_size / seconds,
        "peak_memory_mib": peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process: measure one variant, print JSON
        print(json.dumps(run_variant(args.variant, args)))
        return

    results = {}
    for variant in ("ours", "reference"):
        command = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    )
    print(
        f"train step, batch {args.batch_size}, {args.seconds:g} s clips, {args.device} "
        f"({device or platform.machine()}, {torch.get_num_threads()} threads), "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    print(f"{'variant':<10} {'s/step':>8} {'clips/s':>8} {'peak MiB':>9}")
    for result in results.values():
        print(
            f"{result['variant']:<10} {result['seconds_per_step']:>8.2f} "
            f"{result['clips_per_second']:>8.2f} {result['peak_memory_mib']:>9.0f}"
        )
    ratio = results["reference"]["seconds_per_step"] / results["ours"]["seconds_per_step"]
    memory = results["reference"]["peak_memory_mib"] / results["ours"]["peak_memory_mib"]
    print(f"ours is {ratio:.1f}x faster per step and uses {memory:.1f}x less peak memory")


if __name__ == "__main__":
    main()
