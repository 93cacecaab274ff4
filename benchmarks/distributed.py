"""Benchmark: training throughput with 1 and 2 processes (torchrun, gloo on CPU or nccl on GPU).

The demo's VAVL on its generated feature set (320 training clips, batch 32), 2 epochs, one
thread per process; each process count is launched with ``torchrun --standalone`` in one run of
this script. Scaling efficiency = throughput with N processes / (N x throughput with one).

    python benchmarks/distributed.py [--processes 1 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch


def child(epochs: int) -> None:
    from vavl import distributed
    from vavl.config_files import apply_overrides, load_config
    from vavl.preparation import prepare
    from vavl.training import Trainer

    torch.set_num_threads(1)
    distributed.initialize()
    config = apply_overrides(
        load_config("demo-synthetic"),
        [f"training.epochs={epochs}", "training.batch_size=32", "training.progress=false",
         "training.checkpoint_every=0"],
    )  # fmt: skip
    splits = prepare(config).split(1)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = distributed.all_gather_objects(folder)[0]  # the main process's folder
        trainer = Trainer(config, splits["train"], splits["dev"], run_dir)
        distributed.barrier()
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started
        distributed.barrier()
    if distributed.is_main():
        clips = len(splits["train"]) * epochs
        print(json.dumps({"seconds": seconds, "clips_per_second": clips / seconds}))
    distributed.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.epochs)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"VAVL demo model, 320 clips x {args.epochs} epochs, {device}, 1 thread per process")
    print(f"{'processes':>9} {'seconds':>8} {'clips/s':>8} {'efficiency':>10}")
    base = None
    for count in args.processes:
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *(f"--nproc_per_node={count}", __file__, "--child", "--epochs", str(args.epochs)),
        ]
        environment = os.environ | {"OMP_NUM_THREADS": "1"}
        output = subprocess.run(
            command, check=True, capture_output=True, text=True, env=environment
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        base = base or result["clips_per_second"]
        efficiency = result["clips_per_second"] / (count * base)
        print(
            f"{count:>9} {result['seconds']:>8.1f} {result['clips_per_second']:>8.1f} "
            f"{efficiency:>10.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
