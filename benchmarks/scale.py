"""Corpus-scale training: time from the command to the first training step, training clips/s and
peak memory, for N clips already in the feature store (features read lazily, or all in memory).

    python benchmarks/scale.py --clips 10000 100000 --work /tmp/vavl-scale
    python benchmarks/scale.py --clips 10000 --processes 2 --work /tmp/vavl-scale   # torchrun

Each N gets a corpus made once in ``--work``/N by
:func:`vavl.synthetic.write_synthetic_corpus`: N tiny WAV files in a manifest, their features
already in the store as if extracted (log-mel's 80 dimensions at 50 frames/s, 2 to 12 s long:
about 1.1 GB per 10k clips). Each case is a child process (its own peak RSS) that runs what
`vavl train` runs (prepare the data, build the trainer) and then ``--steps`` training steps of
a small VAVL on the audio. The first run over a new store is cold (every media file hashed,
every entry read once for the index); the figures are the rerun's, as a user's second
command, resumed run or next fold sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


SMALL_VAVL = [
    "model.visual_dim=16", "model.projection_dim=16", "model.model_dim=32", "model.heads=2",
    "model.audio_blocks=1", "model.visual_blocks=1", "model.shared_blocks=1",
    "model.head_hidden=[32]", "training.batch_size=32", "training.progress=false",
    "training.checkpoint_every=0",
]  # fmt: skip


def run_case(corpus: Path, load: str, steps: int) -> dict[str, float]:
    """In this process: what `vavl train` does up to ``steps`` training steps, timed."""
    started = float(os.environ.get("SCALE_STARTED", time.time()))
    from _memory import peak_rss_mib

    from vavl import distributed
    from vavl.config_files import apply_overrides, load_config
    from vavl.preparation import prepare
    from vavl.sampling import BucketBatchSampler
    from vavl.synthetic import synthetic_corpus_overrides
    from vavl.training import Trainer

    overrides = [*SMALL_VAVL, *synthetic_corpus_overrides(corpus, load)]
    config = apply_overrides(load_config("demo-synthetic"), overrides)
    distributed.initialize(config.training.device)
    with distributed.main_first():
        data = prepare(config, progress=False)
    prepared = time.time()
    splits = data.split(1)
    run_dir = corpus / f"run-{load}-{os.getpid()}"
    trainer = Trainer(config, splits["train"], splits["dev"], run_dir)
    items = trainer.train_items
    sampler = BucketBatchSampler(
        [item.length() for item in items], config.training.batch_size, seed=0,
        rank=distributed.rank(), world_size=distributed.world_size(),
    )  # fmt: skip
    first = 0.0
    clips = 0
    for step, batch in enumerate(trainer._loader(items, sampler)):
        trainer.recipe.step(batch.to(trainer.device))
        if step == 0:
            first, clips = time.time(), 0
        clips += len(batch)
        if step + 1 == steps:
            break
    finished = time.time()
    return {
        "clips": len(data.items),
        "prepare_s": prepared - started,
        "first_step_s": first - started,
        "clips_per_s": clips / max(finished - first, 1e-9) * distributed.world_size(),
        "peak_rss_mib": peak_rss_mib(),
    }


def measure(corpus: Path, load: str, steps: int, processes: int) -> dict[str, float]:
    """One case in a child process (or ``processes`` under torchrun)."""
    command = [sys.executable, __file__, "--case", str(corpus), load, str(steps)]
    if processes > 1:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", __file__, "--case", str(corpus), load, str(steps),
        ]  # fmt: skip
    environment = {**os.environ, "SCALE_STARTED": str(time.time()), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"case failed:\n{done.stderr[-3000:]}")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {
        name: max(r[name] for r in results) if name != "clips_per_s" else results[0][name]
        for name in results[0]
    }


def main() -> None:
    from vavl.synthetic import write_synthetic_corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vavl-scale"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--memory-up-to", type=int, default=10000,
                        help="also time the in-memory path up to this many clips")  # fmt: skip
    arguments = parser.parse_args()
    rows = []
    for clips in arguments.clips:
        corpus = arguments.work / str(clips)
        print(f"{clips} clips in {corpus}")
        if not (corpus / "manifest.csv").exists():
            started = time.perf_counter()
            write_synthetic_corpus(corpus, clips, sync=False)
            print(f"  written in {time.perf_counter() - started:.0f} s")
        shutil.rmtree(corpus / "store" / "index", ignore_errors=True)  # a store never read
        cold = measure(corpus, "lazy", arguments.steps, arguments.processes)
        print(f"  cold start (hashes every file, indexes every entry): {cold}")
        loads = ["lazy"] + (["memory"] if clips <= arguments.memory_up_to else [])
        for load in loads:
            figures = measure(corpus, load, arguments.steps, arguments.processes)
            print(f"  {load}: {figures}")
            rows.append({"clips": clips, "load": load, **figures})
    print("\n| clips | features | processes | command to first step | clips/s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['clips']:,} | {row['load']} | {arguments.processes} | "
            f"{row['first_step_s']:.1f} s | {row['clips_per_s']:.0f} | "
            f"{row['peak_rss_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(run_case(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    else:
        main()
