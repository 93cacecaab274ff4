"""Commands about features: extract (media to a feature store) and extractors (the registry)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vavl.commands.base import Subcommands
from vavl.errors import VavlError


def _options(pairs: Sequence[str], flag: str) -> dict[str, object]:
    from vavl.config_files import parse_value

    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise VavlError(f"{flag} {pair}: expected KEY=VALUE, e.g. {flag} threads=2")
        options[key] = parse_value(value, f"{flag} {pair}")
    return options


def _command_extract(args: argparse.Namespace) -> int:
    from vavl.config import FaceSettings
    from vavl.distributed import environment
    from vavl.features.extraction import (
        ExtractionSettings,
        ExtractorSpec,
        media_inputs,
        run_extraction,
    )
    from vavl.features.extraction_report import parse_shard, row_source

    def spec(name: str, pairs: Sequence[str], flag: str) -> ExtractorSpec | None:
        return None if name == "none" else ExtractorSpec(name, _options(pairs, flag))

    settings = ExtractionSettings(
        audio=spec(args.audio, args.audio_option, "--audio-option"),
        visual=spec(args.visual, args.visual_option, "--visual-option"),
        faces=FaceSettings(detector=args.detector),
    )
    if settings.audio is None and settings.visual is None:
        raise VavlError("nothing to extract: --audio none and --visual none")
    if args.out.exists() and not args.out.is_dir():
        raise VavlError(f"--out {args.out}: is a file; a feature store is a folder")
    inputs = media_inputs(args.input)
    if not inputs:
        raise VavlError(f"{args.input}: no media files found")
    # Under torchrun, each process is one shard.
    shard = parse_shard(args.shard) if args.shard else environment().shard
    report = run_extraction(
        inputs, args.out, settings, args.workers, progress=not args.quiet, shard=shard
    )
    for row in report.rows:
        if row["status"] == "failed":
            print(f"{row_source(row)}: {row['error']}", file=sys.stderr)
    print(report.summary())
    return 0 if report.counts["failed"] < len(report.rows) else 1


def _command_extractors(args: argparse.Namespace) -> int:
    from vavl.features import EXTRACTORS

    for name, registration in sorted(EXTRACTORS.items()):
        print(f"{name:<14} {registration.modality:<7} {registration.description}")
    return 0


def add_parsers(commands: Subcommands, overrides: argparse.ArgumentParser) -> None:
    """Declare this group's subcommands (``overrides``: --set, --force, --model)."""
    extract = commands.add_parser(
        "extract",
        help="extract features of media files into a feature store (resumable)",
        description="Extract frame-level features of INPUT (a media file, a folder searched "
        "recursively, or a manifest CSV with a 'path' column) into the store STORE. Files "
        "already in the store are skipped; every file gets a row in STORE/report.csv.",
    )
    extract.add_argument("input", type=Path)
    extract.add_argument("--out", type=Path, required=True, metavar="STORE")
    extract.add_argument("--audio", default="whisper-base", help="audio extractor, or none")
    extract.add_argument("--visual", default="fer", help="visual extractor, or none")
    extract.add_argument("--audio-option", action="append", default=[], metavar="KEY=VALUE")
    extract.add_argument("--visual-option", action="append", default=[], metavar="KEY=VALUE")
    extract.add_argument(
        "--detector",
        choices=["auto", "short", "full", "none"],
        default="auto",
        help="face detector; 'none': the whole image is the face (pre-cropped face datasets)",
    )
    extract.add_argument("--workers", type=int, default=1, help="parallel processes")
    extract.add_argument(
        "--shard",
        metavar="I/N",
        help="do only the I-th of N interleaved shares of the inputs (batch jobs); under "
        "torchrun each process takes its rank's share",
    )
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.set_defaults(handler=_command_extract)

    extractors = commands.add_parser("extractors", help="list the feature extractors")
    extractors.set_defaults(handler=_command_extractors)
