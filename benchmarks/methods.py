"""Benchmark: training cost of every method at the sizes of compare-crema-d.yaml.

One training step (batch 32, 3 s clips: audio 1024-d at 50 frames/s, visual 1408-d at 30
frames/s, every clip with both) with each method's own recipe, each method in its own process.
The time per CREMA-D partition is estimated from it: the authors' partitions train on 63 of 91
actors (about 4,030 of 5,820 clips, 126 steps per epoch) for the config's 20 epochs, plus a
development pass per epoch (counted as a third of a training epoch's time).

    python benchmarks/methods.py [--device cuda] [--methods vavl auxformer ...]
                                 [--amp bfloat16|float16] [--compile]

Prints seconds per step, clips per second and peak memory (the process's resident set; on CUDA
also the GPU's peak allocation). ``--compile`` measures ``training.compile`` (torch.compile; the
first steps compile and are not timed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import torch
from _memory import peak_rss_mib

from vavl.config_files import apply_overrides, load_config
from vavl.data import Batch
from vavl.devices import compile_model
from vavl.methods import METHODS
from vavl.models import build_model
from vavl.training import build_recipe

STEPS_PER_EPOCH = 126
DEV_SHARE = 1 / 3


def time_method(method: str, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    extra = [f"training.compile={str(args.compile).lower()}"]
    if args.amp:
        extra.append(f"training.amp={args.amp}")
    config = apply_overrides(load_config("compare-crema-d"), [*METHODS[method], *extra])
    model = build_model(config.model, config.task.output_dim).to(device)
    if config.training.compile:
        compile_model(model)
    recipe = build_recipe(model, config, device, None)
    audio_frames, visual_frames = int(args.seconds * 50), int(args.seconds * 30)
    batch = Batch(
        ids=[str(i) for i in range(args.batch_size)],
        audio=torch.randn(args.batch_size, audio_frames, 1024),
        audio_mask=torch.ones(args.batch_size, audio_frames, dtype=torch.bool),
        visual=torch.randn(args.batch_size, visual_frames, 1408),
        visual_mask=torch.ones(args.batch_size, visual_frames, dtype=torch.bool),
        target=torch.randint(0, 6, (args.batch_size,)),
    ).to(device)
    for _ in range(3 if config.training.compile else 1):  # warm-up (and compilation)
        recipe.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        recipe.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    epochs = config.training.epochs
    return {
        "method": method,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_step": seconds,
        "clips_per_second": args.batch_size / seconds,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else None,
        "hours_per_partition": seconds * STEPS_PER_EPOCH * epochs * (1 + DEV_SHARE) / 3600,
        "epochs": epochs,
        "peak_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["vavl", "auxformer", "mult", "unimodal",
                        "late-fusion", "early-fusion"], choices=sorted(METHODS))  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["bfloat16", "float16"], help="mixed precision")
    parser.add_argument("--compile", action="store_true", help="training.compile (torch.compile)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_method(args.child, args)))
        return
    print(
        f"training step, batch {args.batch_size}, {args.seconds:g} s clips, {args.device}, "
        f"{torch.get_num_threads()} threads; partition = {STEPS_PER_EPOCH} steps x epochs x "
        f"{1 + DEV_SHARE:.2f}; amp {args.amp or 'off'}; compile {args.compile}"
    )
    print(
        f"{'method':<14} {'params':>8} {'s/step':>8} {'clips/s':>8} {'h/partition':>12} "
        f"{'peak MiB':>9} {'GPU MiB':>8}"
    )
    for method in args.methods:
        command = [sys.executable, __file__, "--child", method, *sys.argv[1:]]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        gpu = result["gpu_peak_mib"]
        print(
            f"{method:<14} {result['parameters'] / 1e6:>7.1f}M {result['seconds_per_step']:>8.2f} "
            f"{result['clips_per_second']:>8.1f} {result['hours_per_partition']:>12.1f} "
            f"{result['peak_mib']:>9.0f} {'-' if gpu is None else f'{gpu:.0f}':>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
