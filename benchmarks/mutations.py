"""Benchmark of the tests themselves: each planted bug must fail a fast test, within 2 minutes.

Each mutation below changes one line of vavl the way a real bug would (a loss cut from the
encoder, two columns swapped, a head left in eval mode...). For each, the working tree is copied
beside this one (so that ``../shared/data`` still resolves), the bug is planted in the copy, and
the tests that should catch it run there (``pytest -x``, the copy's ``src`` first on the path).
A mutation is caught when those tests fail (they must all pass first, in a copy with no bug);
the table gives the seconds each took.

    python benchmarks/mutations.py [--only NAME ...]

The last line reads ``mutations: N of M caught, slowest X s`` (all must be caught, each < 120 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 120.0


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository
    original: str  # must occur exactly once
    planted: str
    tests: tuple[str, ...]  # pytest node ids that must fail


MUTATIONS = (
    Mutation(
        "reconstruction cut from the encoder",
        "src/vavl/training/recipes.py",
        "reconstruction_head(embedding), features, mask",
        "reconstruction_head(embedding.detach()), features, mask",
        ("tests/test_training.py::test_reconstruction_trains_the_encoder_it_reconstructs_from",),
    ),
    Mutation(
        "fusion head in eval mode during its own step",
        "src/vavl/training/recipes.py",
        'for module in self.steps.step_modules("fusion"):\n            module.train()',
        'for module in self.steps.step_modules("fusion"):\n            module.eval()',
        (
            "tests/test_training.py::"
            "test_the_fusion_step_trains_its_head_in_training_mode_on_audio_then_visual",
        ),
    ),
    Mutation(
        "audio and visual swapped in the fusion step",
        "src/vavl/training/recipes.py",
        "fused = self.steps.fuse(audio, visual)",
        "fused = self.steps.fuse(visual, audio)",
        (
            "tests/test_training.py::"
            "test_the_fusion_step_trains_its_head_in_training_mode_on_audio_then_visual",
        ),
    ),
    Mutation(
        "modality dropout drops nothing",
        "src/vavl/training/recipes.py",
        "< self.training.modality_dropout",
        "< 0.0 * self.training.modality_dropout",
        ("tests/test_training.py::test_modality_dropout_is_off_by_default_and_trains_when_on",),
    ),
    Mutation(
        "CREMA-D label: the least voted class of the authors' soft label",
        "src/vavl/corpora/crema_d.py",
        "label = max(soft, key=soft.__getitem__)",
        "label = min(soft, key=soft.__getitem__)",
        ("tests/test_corpora.py::test_crema_d_adapter_on_the_sample_folder",),
    ),
    Mutation(
        "MSP-IMPROV valence and dominance columns swapped",
        "src/vavl/corpora/msp_improv.py",
        '"valence": "EmoVal", "dominance": "EmoDom"',
        '"valence": "EmoDom", "dominance": "EmoVal"',
        (
            "tests/test_corpora.py::"
            "test_msp_improv_partitions_are_session_independent_and_scaling_is_pure",
        ),
    ),
    Mutation(
        "CCC without the means' difference",
        "src/vavl/metrics.py",
        "true.var() + pred.var() + (true.mean() - pred.mean()) ** 2",
        "true.var() + pred.var()",
        ("tests/test_losses.py",),
    ),
    Mutation(
        "class weights not inverse to the counts",
        "src/vavl/losses.py",
        "(len(labels) / (n_classes * counts.clamp_min(1.0))) ** power",
        "(len(labels) / (n_classes * counts.clamp_min(1.0))) ** (power / 2)",
        ("tests/test_losses.py",),
    ),
    Mutation(
        "a long file's answer: its last window, not the mean",
        "src/vavl/answers.py",
        "self.sums[name] = self.sums.get(name, 0.0) + vector",
        "self.sums[name] = vector",
        ("tests/test_timeline.py::test_a_long_file_is_the_mean_of_its_windows_alone",),
    ),
    Mutation(
        "a span's features filed as the whole file's",
        "src/vavl/spans.py",
        "        if self.whole:\n            return content_hash\n",
        "        return content_hash\n",
        ("tests/test_spans.py",),
    ),
)


def _copy_tree(destination: Path) -> None:
    """The working tree as git sees it (tracked and new files, nothing ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = destination / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _plant(copy: Path, mutation: Mutation) -> None:
    path = copy / mutation.file
    text = path.read_text()
    found = text.count(mutation.original)
    if found != 1:
        raise SystemExit(f"{mutation.file}: '{mutation.original}' found {found} times, not once")
    path.write_text(text.replace(mutation.original, mutation.planted))


def run(tests: tuple[str, ...], mutation: Mutation | None) -> tuple[bool, float]:
    """(whether ``tests`` failed, seconds) in a copy with ``mutation`` planted (None: none)."""
    with tempfile.TemporaryDirectory(prefix="vavl-mutant-", dir=ROOT.parent) as folder:
        copy = Path(folder)
        _copy_tree(copy)
        if mutation is not None:
            _plant(copy, mutation)
        environment = os.environ | {
            "PYTHONPATH": str(copy / "src"),
            "VAVL_REQUIRE_SHARED_DATA": "1",  # a missing clip fails, never looks caught by a skip
        }
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        started = time.perf_counter()
        result = subprocess.run(
            [*command, *tests], cwd=copy, env=environment, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if result.returncode not in (0, 1):  # 1: tests failed; anything else: they did not run
            raise SystemExit(f"pytest exited {result.returncode}\n{result.stdout}")
        return result.returncode == 1, seconds


def _check_copies_import_their_own_source() -> None:
    with tempfile.TemporaryDirectory(prefix="vavl-mutant-", dir=ROOT.parent) as folder:
        (Path(folder) / "src" / "vavl").mkdir(parents=True)
        (Path(folder) / "src" / "vavl" / "__init__.py").write_text("")
        found = subprocess.run(
            [sys.executable, "-c", "import vavl; print(vavl.__file__)"],
            env=os.environ | {"PYTHONPATH": str(Path(folder) / "src")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not found.startswith(folder):
            raise SystemExit(f"a copy's tests would import {found}, not the copy's own vavl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run the mutations whose name contains these")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    _check_copies_import_their_own_source()
    every_test = tuple(dict.fromkeys(test for m in chosen for test in m.tests))
    failed, _ = run(every_test, None)
    if failed:
        raise SystemExit("the tests fail with no bug planted: a mutation would look caught")
    print(f"{'mutation':<66} {'caught':<7} seconds")
    outcomes = []
    for mutation in chosen:
        caught, seconds = run(mutation.tests, mutation)
        outcomes.append((caught, seconds))
        print(f"{mutation.name:<66} {'yes' if caught else 'NO':<7} {seconds:6.1f}", flush=True)
    caught_all = sum(caught for caught, _ in outcomes)
    slowest = max((seconds for _, seconds in outcomes), default=0.0)
    print(f"mutations: {caught_all} of {len(outcomes)} caught, slowest {slowest:.1f} s")
    if caught_all < len(outcomes) or slowest > LIMIT_S:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
