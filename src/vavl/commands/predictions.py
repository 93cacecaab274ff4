"""Commands that use a trained model: predict, export, info."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from vavl.commands.base import (
    Subcommands,
    add_checkpoint_option,
    face_choice,
    positive_seconds,
    seconds_into,
)
from vavl.errors import VavlError
from vavl.spans import Span

if TYPE_CHECKING:
    from vavl.features.store import FeatureStore
    from vavl.predict import Predictor


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... when this command already wrote one so called."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate)
    return candidate


def _checked_span(args: argparse.Namespace) -> Span:
    """The span of each file to predict, once the options are checked (before a model loads)."""
    if args.out is not None and args.out.is_dir():
        raise VavlError(
            f"--out {args.out}: is a folder; name a file in it, e.g. {args.out}/predictions.json"
        )
    span = Span(args.start, args.end)
    if args.end is not None and args.end <= args.start:
        raise VavlError(f"--end {args.end:g} must come after --start {args.start:g}")
    if args.timeline and not span.whole:
        raise VavlError("--timeline draws whole files: leave out --start and --end")
    if args.timeline and args.timeline_dir.exists() and not args.timeline_dir.is_dir():
        raise VavlError(f"--timeline-dir {args.timeline_dir}: is a file, not a folder")
    return span


def _command_predict(args: argparse.Namespace) -> int:
    span = _checked_span(args)
    if args.checkpoint is None:
        from vavl.model_card import preload_default_extractors

        preload_default_extractors()  # before torch is imported: the two overlap

    from vavl.containers import check_readable
    from vavl.features.store import FeatureStore
    from vavl.files import printable
    from vavl.model_card import DEFAULT_MODEL
    from vavl.predict import Predictor
    from vavl.results import prediction_summary, render_predictions

    predictions, failures = [], []
    unwritten = 0  # timelines that could not be written

    def failed(media: str, error: VavlError | OSError) -> None:
        message = _error_line(error, media)
        failures.append({"file": str(media), "error": message})
        print(f"vavl: {message}", file=sys.stderr)

    readable = []
    for media in args.media:  # files that cannot be opened fail before the model loads
        try:
            check_readable(media)
            readable.append(media)
        except VavlError as error:
            failed(media, error)
    predictor = None
    if readable:
        faces = {"detector": args.detector} if args.detector else None
        predictor = Predictor.load(
            args.checkpoint, args.device, backend=args.backend, onnx_dir=args.onnx_dir,
            faces=faces, face=args.face,
        )  # fmt: skip
    store = FeatureStore(args.store) if args.store else None
    names: set[str] = set()
    outcomes: Iterable[Any] = []
    if predictor is not None and len(readable) == 1:  # one file: its windows counted instead
        outcomes = [_one(predictor, readable[0], store, span)]
    elif predictor is not None:
        found = predictor.predict_files(readable, store, not args.each_alone, span)
        outcomes = tqdm(found, desc="predict", unit="file", total=len(readable))
    for media, outcome in zip(readable, outcomes, strict=True):
        if isinstance(outcome, VavlError | OSError):
            failed(media, outcome)
            continue
        predictions.append(outcome)
        if args.timeline:
            assert predictor is not None
            unwritten += not _write_timeline(
                predictor, media, args, _unique(Path(media).name, names)
            )
    empty = [p for p in predictions if not p.paths]
    for prediction in empty:
        print(f"vavl: {prediction.source}: {prediction.fallback}", file=sys.stderr)
    model = predictor.name if predictor else str(args.checkpoint or DEFAULT_MODEL)
    text = render_predictions(predictions, failures, args.format, model)
    if args.out:
        from vavl.files import write_text_atomically

        try:
            write_text_atomically(args.out, text + "\n")
        except OSError as error:  # what was computed is not lost: it goes to the screen
            print(f"vavl: {_os_error(error, args.out)}; the predictions follow", file=sys.stderr)
            print(printable(text))
    elif text:
        print(printable(text))
    summary = prediction_summary(predictions, len(failures), len(args.media), unwritten)
    print(summary, file=sys.stderr)
    return 0 if len(predictions) > len(empty) else 1


def _error_line(error: VavlError | OSError, media: str) -> str:
    """What went wrong with ``media``, in one line naming the file."""
    return str(error) if isinstance(error, VavlError) else _os_error(error, media)


def _write_timeline(predictor: Predictor, media: str, args: argparse.Namespace, name: str) -> bool:
    """Write ``media``'s timeline into ``--timeline-dir``; False (said in one line) when it
    cannot be: the file's prediction stands."""
    try:
        timeline = predictor.timeline(media, args.window, args.hop, progress=True)
        written = timeline.write(args.timeline_dir, name)
    except (VavlError, OSError) as error:
        print(f"vavl: {_error_line(error, media)}; its timeline is not written", file=sys.stderr)
        return False
    print(f"timeline: {', '.join(str(p) for p in written.values())}", file=sys.stderr)
    return True


def _one(predictor: Predictor, media: Path, store: FeatureStore | None, span: Span) -> Any:
    """One file's prediction (its long windows counted), or why it failed."""
    try:
        return predictor.predict(media, store=store, progress=True, span=span)
    except (VavlError, OSError) as error:
        return error


def _os_error(error: OSError, fallback: object) -> str:
    """One line for a filesystem error: the path it concerns and what went wrong."""
    return f"{error.filename or fallback}: {error.strerror or error}"


def _command_export(args: argparse.Namespace) -> int:
    from vavl.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint
    from vavl.export import export_onnx
    from vavl.model_card import DEFAULT_MODEL

    if not args.onnx and args.release is None:
        raise VavlError("say what to export: --onnx and/or --release FILE")
    model = args.checkpoint or DEFAULT_MODEL
    if args.release is not None:
        released = save_checkpoint(release_checkpoint(load_checkpoint(model)), args.release)
        print(f"release: {released} ({released.stat().st_size / 2**20:.1f} MiB)")
    if args.onnx:
        for name, path in export_onnx(model, args.out).items():
            print(f"{name}: {path}")
    return 0


def _command_info(args: argparse.Namespace) -> int:
    from vavl.checkpoint import load_checkpoint
    from vavl.model_card import DEFAULT_MODEL, card_lines, default_model_card

    path = args.checkpoint or DEFAULT_MODEL
    lines = [f"checkpoint: {path}", *load_checkpoint(path).summary_lines()]
    if Path(path) == DEFAULT_MODEL:
        lines += card_lines(default_model_card())
    print("\n".join(lines))
    return 0


def _add_timeline_options(predict: argparse.ArgumentParser) -> None:
    predict.add_argument(
        "--timeline",
        action="store_true",
        help="also predict sliding windows: <file name>.timeline.csv/.json/.png per file, in "
        "--timeline-dir",
    )
    predict.add_argument(
        "--window", type=positive_seconds, default=3.0, help="timeline window, seconds"
    )
    predict.add_argument("--hop", type=positive_seconds, default=1.0, help="timeline hop, seconds")
    predict.add_argument(
        "--timeline-dir",
        type=Path,
        default=Path("timelines"),
        help="where timelines are written (default: ./timelines)",
    )


def _add_span_options(predict: argparse.ArgumentParser) -> None:
    predict.add_argument(
        "--start",
        type=seconds_into,
        default=0.0,
        metavar="S",
        help="predict each file from this second on only, as if it began there (a clip of a "
        "longer recording)",
    )
    predict.add_argument(
        "--end", type=positive_seconds, metavar="S", help="... and up to this second only"
    )


def add_parsers(commands: Subcommands, overrides: argparse.ArgumentParser) -> None:
    """Declare this group's subcommands (``overrides``: --set, --force, --model)."""
    predict = commands.add_parser(
        "predict",
        help="predict emotions of media files with a trained model",
        description="Predict every path each file allows (audio, visual, audio-visual); a file "
        "that cannot be read gets one line on stderr and the others go on.",
    )
    predict.add_argument("media", nargs="+", type=Path)
    add_checkpoint_option(
        predict,
        "a trained model (run/best.pt); default: vavl's default model (for non-commercial "
        "research use)",
    )
    predict.add_argument(
        "--store", type=Path, help="a feature store: reuse the features already extracted there"
    )
    predict.add_argument(
        "--each-alone",
        action="store_true",
        help="predict every file on its own; by default a model trained with source statistics "
        "standardises the clips predicted together by theirs (at least 16 clips)",
    )
    _add_span_options(predict)
    predict.add_argument("--format", choices=["table", "json", "csv"], default="table")
    predict.add_argument("--out", type=Path, help="write here instead of standard output")
    predict.add_argument("--device", default="auto")
    predict.add_argument(
        "--detector",
        choices=["auto", "short", "full", "none"],
        help="how faces are found (default: as the model was trained); 'none': the whole image "
        "is the face, for pre-cropped face photos",
    )
    predict.add_argument(
        "--face",
        type=face_choice,
        default="speaker",
        metavar="WHO",
        help="in videos with several faces: 'speaker' (default), the face whose lips follow the "
        "speech heard, with an answer for every person; 'all', every person listed even when "
        "alone; 'largest', the largest and most persistent face; N, the N-th most prominent "
        "(0: the largest)",
    )
    predict.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="run the model with PyTorch or onnxruntime (same features, same outputs)",
    )
    predict.add_argument(
        "--onnx-dir", type=Path, help="an export of `vavl export --onnx` (default: export once)"
    )
    _add_timeline_options(predict)
    predict.set_defaults(handler=_command_predict)

    export = commands.add_parser(
        "export",
        help="export a model's three paths to ONNX (dynamic batch and time axes)",
    )
    add_checkpoint_option(export, "a trained model (default: the default model)")
    export.add_argument("--onnx", action="store_true", help="write ONNX graphs")
    export.add_argument("--out", type=Path, default=Path("onnx"), help="ONNX output folder")
    export.add_argument(
        "--release",
        type=Path,
        metavar="FILE",
        help="write an inference-only checkpoint (float16 weights, no optimizer state)",
    )
    export.set_defaults(handler=_command_export)

    info = commands.add_parser("info", help="describe a checkpoint (default: the default model)")
    info.add_argument("checkpoint", type=Path, nargs="?")
    info.set_defaults(handler=_command_info)
